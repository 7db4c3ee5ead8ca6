"""`hwsim study FILE.yaml`: run a declarative experiment end to end."""
from __future__ import annotations

import contextlib
from dataclasses import replace

from hwsim.models.device import check_device_name

from hwsim.executor import add_executor_args, executor_from_args
from hwsim.study import format_table, run_study, select_methods
from hwsim.study_spec import load_study

from .common import add_device, add_precision, add_threads, apply_threads, comma_list


def register(sub) -> None:
    p = sub.add_parser("study", help="run a declarative study (train, sweep, report)",
                       description="Trains missing checkpoints, sweeps voltages, writes "
                                   "studies/results/NAME/{results.csv, frontier.csv, "
                                   "report.html, summary.md}. Re-running skips finished work.")
    p.add_argument("file", help="study YAML, e.g. studies/digits_quickstart.yaml")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--only", metavar="M1,M2",
                   help="run only these methods (comma-separated names) to get their results "
                        "first; the report and summary wait for a full run")
    p.add_argument("--status", action="store_true",
                   help="only print what is finished and what a run would still compute")
    add_threads(p, help="torch CPU threads, for training too: overrides the study file's "
                        "training.threads (default: the file's, else torch's choice)")
    add_device(p, default=None, help="cpu, cuda, cuda:N or auto: where training and evaluation "
                                     "run (default: the study file's device:, else cpu)")
    add_precision(p, default=None, dest="precision",
                  help="auto, fp32 or bf16: training and inference precision (default: the "
                       "study file's precision:, else auto; bf16 ~1.5-2x faster on CPUs with "
                       "AVX512-BF16)")
    add_executor_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    apply_threads(args)
    study = load_study(args.file)
    if args.device is not None:  # the flag overrides the study file's device:
        study = replace(study, device=check_device_name(args.device))
    if args.precision is not None:  # and --precision its precision:
        study = replace(study, precision=args.precision)
    if args.threads:  # and --threads its training.threads: (not part of any recipe)
        study = replace(study, training=replace(study.training, threads=args.threads))
    only = comma_list(args.only)
    if args.status:
        from hwsim.study_status import baseline_status, study_status
        table = study_status(select_methods(study, only))
        print(f"study {study.name} ({study.out_dir}/): done/wanted")
        baseline = baseline_status(study)
        if baseline:
            print(baseline)
        print(format_table(table))
        return 0
    executor = executor_from_args(args, progress=not args.no_progress,
                                  device=study.device)
    with executor or contextlib.nullcontext():
        table = run_study(study, progress=not args.no_progress, only=only, executor=executor)
    if table is None:
        print(f"\nstudy {study.name}: methods {', '.join(only)} brought up to date; run "
              f"without --only for the report and summary (--status shows what is left)")
        return 0
    out = study.out_dir
    print(f"\nstudy {study.name}: results in {out}/")
    print(f"  report:   {out / 'report.html'}\n  summary:  {out / 'summary.md'}")
    print(f"  points:   {out / 'results.csv'}\n  frontier: {out / 'frontier.csv'}\n")
    print("lowest-energy voltage within 1 point of each method's clean accuracy:")
    print(format_table(table))
    return 0
