"""`hwsim pareto`: Pareto frontier and the HTML report from sweep CSVs."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd

from hwsim.files import write_text_atomic
from hwsim.pareto import DEFAULT_TITLE
from hwsim.sweep import REPORT_COLUMNS, energy_sidecar, read_rows
from hwsim.models.errors import ConfigError

from .common import comma_list, out_file


def register(sub) -> None:
    p = sub.add_parser("pareto", help="Pareto frontier + HTML report",
                       description="Reads sweep CSVs, writes the report and the frontier as "
                                   "CSV. The report loads plotly.js from a plotly.min.js "
                                   "written next to it, or an identical one already there or "
                                   "in the folder above (works offline).")
    p.add_argument("csv", nargs="+",
                   help="results CSVs from `hwsim sweep`, or any CSV with the columns "
                        + ", ".join(REPORT_COLUMNS))
    p.add_argument("--out", default="report.html")
    p.add_argument("--frontier", help="frontier CSV (default: next to --out)")
    p.add_argument("--title", default=DEFAULT_TITLE)
    p.add_argument("--methods", metavar="M1,M2",
                   help="only these methods (sweep labels) of every CSV, e.g. normal,wcat+bfn "
                        "to compare networks without the other six methods")
    p.set_defaults(func=run)


def load_results(paths: list[str], methods: list[str] | None = None
                 ) -> tuple[pd.DataFrame, dict]:
    frames, layers = [], {}
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"{path!r} does not exist")
        df = read_rows(Path(path), REPORT_COLUMNS)
        frames.append(df)
        side = energy_sidecar(path)
        if side.exists():
            try:
                for k, v in json.loads(side.read_text()).items():
                    layers.setdefault(k, v["layers"])
            except (ValueError, UnicodeDecodeError, TypeError, KeyError, AttributeError):
                raise ConfigError(f"{side}: not an energy sidecar written by hwsim sweep "
                                  "(delete it to draw the report without per-layer energies)"
                                  ) from None
    if methods:
        frames = _only(frames, methods)
    _disambiguate(frames, [Path(p) for p in paths])
    df = pd.concat(frames, ignore_index=True)
    if df.empty:
        raise ConfigError("no points in the given CSVs")
    return df, layers


def _only(frames: list[pd.DataFrame], methods: list[str]) -> list[pd.DataFrame]:
    have = {lab for f in frames for lab in f["label"].astype(str)}
    bad = [m for m in methods if m not in have]
    if bad:
        raise ConfigError(f"--methods {','.join(bad)}: in none of the CSVs; valid: "
                          f"{', '.join(sorted(have))}")
    return [f[f["label"].astype(str).isin(methods)] for f in frames]


def _disambiguate(frames: list[pd.DataFrame], paths: list[Path]) -> None:
    """Several studies (e.g. ResNet-20 and ResNet-56, each with a `wcat` method) share method
    labels: prefix every label with its study folder (or, if those repeat, its CSV path) so
    the report keeps them apart."""
    labels = [set(f["label"]) for f in frames]
    if not any(a & b for i, a in enumerate(labels) for b in labels[i + 1:]):
        return
    names = [p.parent.name for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    for f, name in zip(frames, names):
        f["label"] = name + "/" + f["label"].astype(str)


def _command(args) -> str:
    """The command line that rebuilds this report, recorded in it."""
    parts = ["hwsim", "pareto", *args.csv]
    for flag, value in (("--methods", args.methods), ("--title", args.title),
                        ("--out", args.out), ("--frontier", args.frontier)):
        if value is not None and not (flag == "--title" and value == DEFAULT_TITLE):
            parts += [flag, value]
    return shlex.join(map(str, parts))


def run(args) -> int:
    from hwsim.report import write_report  # plotly: only when a report is drawn
    out_file(args.out)
    if args.frontier:
        out_file(args.frontier, "--frontier")
    df, layers = load_results(args.csv, comma_list(args.methods))
    first = dict(list(layers.items())[:1])
    front = write_report(df, args.out, title=args.title, energy_layers=first,
                         notes=f"Made by: {_command(args)}")
    fpath = Path(args.frontier or Path(args.out).with_name(Path(args.out).stem + "_frontier.csv"))
    write_text_atomic(fpath, front.to_csv(index=False))
    print(f"{len(df)} points, {len(front)} on the frontier")
    print(f"report: {args.out}\nfrontier: {fpath}")
    return 0
