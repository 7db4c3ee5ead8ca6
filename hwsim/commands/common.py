"""Argument helpers shared by subcommands."""
from __future__ import annotations

import json
import sys

import torch
import yaml

from models.errors import ConfigError


def parse_params(items: list[str] | None) -> dict:
    """KEY=VALUE pairs (values parsed as YAML scalars: 0.1 -> float, max -> str)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE, e.g. c=0.1")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def comma_list(value: str | None) -> list[str] | None:
    """'a, b,,c' -> ['a', 'b', 'c'] (options like --only, --methods); None/'' -> None."""
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or None


def add_threads(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")


def add_device(p) -> None:
    p.add_argument("--device", default="cpu",
                   help="cpu (default), cuda, cuda:N, or auto (cuda when torch sees one)")


def apply_threads(args) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
