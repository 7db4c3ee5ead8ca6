"""The `hwsim` command line. Each subcommand lives in its own module under hwsim/commands/
and exposes `register(subparsers)`; the module list below is the whole wiring."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from hwsim import __version__
from hwsim.models.errors import ConfigError

# module name under hwsim.commands -> loaded lazily so `hwsim --help` stays fast
COMMANDS = ["train", "eval", "ber", "energy", "sweep", "pareto", "study", "attack", "chip",
            "optimize_voltages", "arch", "clip_range"]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `hwsim sweep: error: argument --seed: ...`, exit 2
    (argparse's default prints the whole usage block first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hwsim",
        description="Accuracy under SRAM bit errors vs. weight-memory energy (WCAT co-design).")
    parser.add_argument("--version", action="version", version=f"hwsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"hwsim.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"hwsim.commands.{name}":
                continue  # subcommand not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from hwsim.models.device import get_inference_precision, precision_scope
    try:  # --precision of eval, sweep, ...: for this command, then as before
        with precision_scope(getattr(args, "inference_precision", None)
                             or get_inference_precision()):
            return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"hwsim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hwsim ... --json | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
