"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import yaml

from hwsim.models.errors import ConfigError
from hwsim.models.device import INFERENCE_PRECISIONS


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


def number(kind=int, lo=None, hi=None, lo_open: bool = False):
    """An argparse `type` that accepts a `kind` (int or float) in [lo, hi] ((lo, hi] with
    lo_open) and otherwise says, in one line, what is valid."""
    if hi is None:
        rng = f"> {lo:g}" if lo_open else f">= {lo:g}"
    else:
        rng = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    what = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} {rng}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} {rng}")
        return v
    parse.__name__ = what  # argparse names the type in its messages
    return parse


def shape_arg(text: str) -> tuple[int, ...]:
    """An argparse `type` for an input shape 'C,H,W' (three integers >= 1)."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not C,H,W (three integers >= 1, "
                                         "e.g. 3,32,32)")
    return shape


SEED_HELP = "random seed, an integer >= 0 (default 0)"


def add_seed(p, help: str = SEED_HELP) -> None:
    """--seed: the one rule for seeds everywhere (CLI and study files): an integer >= 0."""
    p.add_argument("--seed", type=number(int, 0), default=0, help=help)


def out_file(path: str, flag: str = "--out") -> Path:
    """An output file path: not a folder (its parent folders are created when written)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {path!r} is a folder; give a file name, e.g. "
                          f"{str(p / 'results.csv')!r}")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{flag} {path!r}: {str(parent)!r} is a file, not a folder")
    return p


def add_threads(p, help: str = "torch CPU threads (default: torch's choice)") -> None:
    p.add_argument("--threads", type=number(int, 1), default=None, help=help)


def add_device(p, default: str | None = "cpu",
               help: str = "cpu (default), cuda, cuda:N, or auto (cuda when torch sees one)"
               ) -> None:
    p.add_argument("--device", default=default, help=help)


def apply_threads(args) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def add_precision(p, default: str | None = "auto", dest: str = "inference_precision",
                  help: str = "") -> None:
    """--precision: by default the inference precision, which hwsim.cli.main applies for the
    whole command (models/device.py); `hwsim study` keeps its own (training too)."""
    p.add_argument("--precision", choices=INFERENCE_PRECISIONS, default=default, dest=dest,
                   help=help or "inference precision: auto (default: float32 on the CPU, "
                                "float16 autocast on a GPU), fp32, or bf16 (bfloat16 autocast: "
                                "~2x faster on CPUs with AVX512-BF16, accuracies within ~0.15 "
                                "points of float32)")


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
