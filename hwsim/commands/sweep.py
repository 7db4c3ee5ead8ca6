"""`hwsim sweep`: accuracy and energy per inference over a weight-memory voltage grid."""
from __future__ import annotations

import contextlib

from hwsim.ber import BerModel
from hwsim.executor import add_executor_args, executor_from_args
from hwsim.paths import DEFAULT_ARCH, resolve_arch
from hwsim.chips import chips_sidecar
from hwsim.models.errors import ConfigError
from hwsim.scenario import Scenario
from hwsim.sweep import sweep, voltage_grid

from .ber import add_ber_model
from .chip import add_fault_args, faults_from_args
from .common import (add_device, add_precision, add_seed, add_threads,
                     apply_threads, number, out_file)


def register(sub) -> None:
    p = sub.add_parser("sweep", help="accuracy + energy over a voltage grid (resumable CSV)",
                       description="For each voltage: BER, accuracy under random bit errors "
                                   "(mean, std, 95% CI; variance-reduced Monte Carlo), energy "
                                   "per inference. Each point is written as soon as it is done.")
    p.add_argument("--checkpoint", required=True, help="quantized checkpoint (.pt) to sweep")
    p.add_argument("--arch", default=DEFAULT_ARCH,
                   help=f"architecture YAML, or the name of a shipped one (default {DEFAULT_ARCH})")
    p.add_argument("--vmin", type=float, default=None,
                   help="lowest weight-memory voltage in V (default 0.35)")
    p.add_argument("--vmax", type=float, default=None,
                   help="highest voltage in V (default 0.8; at most 1.25 x nominal)")
    p.add_argument("--step", type=number(float, 0, lo_open=True), default=None,
                   help="grid step in V (default 0.01)")
    p.add_argument("--assignment", metavar="FILE",
                   help="instead of a grid: one point with each layer's weights at the voltage "
                        "of this per-layer assignment (`hwsim optimize-voltages --out`), label "
                        "'<method> [per-layer]', priced in every weight-holding domain")
    p.add_argument("--realizations", type=number(int, 1), default=50,
                   help="max realizations per point (default 50)")
    p.add_argument("--ci-target", type=number(float, 0, lo_open=True), default=None,
                   help="stop a point once its 95%% CI half-width is below this, as a fraction "
                        "(e.g. 0.005 = 0.5 points; default: run all realizations)")
    p.add_argument("--act-bits", type=number(int, 1, 32), default=8,
                   help="bits per activation in the energy model (default 8)")
    add_seed(p)
    p.add_argument("--label", help="name of this checkpoint in plots (default: its method)")
    p.add_argument("--data-root", help="override the checkpoint's data root")
    p.add_argument("--out", required=True, help="results CSV (points are appended)")
    p.add_argument("--resume", action="store_true", help="skip points already in --out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--domains", default=None,
                   help="comma-separated voltage domains of the arch file that run at the swept "
                        "voltage (default: every domain holding weights); a domain holding "
                        "activations adds transient 8-bit activation faults")
    p.add_argument("--protection", default=None,
                   help="protection of the weights in the swept domains: none (default), "
                        "secded ((72,64) ECC) or msb:K (top K bits in robust cells)")
    add_ber_model(p)
    add_threads(p)
    add_device(p)
    add_precision(p)
    add_fault_args(p)
    add_executor_args(p)
    p.set_defaults(func=run)


GRID = {"vmin": 0.35, "vmax": 0.8, "step": 0.01}


def run(args) -> int:
    apply_threads(args)
    out_file(args.out)
    args.arch = resolve_arch(args.arch)
    if args.assignment is not None:
        return run_assignment(args)
    grid = voltage_grid(*(GRID[k] if getattr(args, k) is None else getattr(args, k)
                          for k in GRID))
    scenario = Scenario.of(args.domains, args.protection)
    faults = faults_from_args(args)
    executor = executor_from_args(args, progress=not args.no_progress)
    if faults.model == "persistent":
        if not scenario.is_default:
            raise ConfigError("--domains/--protection: persistent chips are swept on the weight "
                              "memory without protection only")
        from hwsim.chips import chip_sweep
        with executor or contextlib.nullcontext():
            rows = chip_sweep(args.checkpoint, args.arch, grid, args.out, faults,
                              act_bits=args.act_bits, ber_model=BerModel.load(args.ber_model),
                              seed=args.seed, resume=args.resume, label=args.label,
                              data_root=args.data_root, progress=not args.no_progress,
                              device=args.device, executor=executor)
        print(f"{args.out}: {len(rows)} points; per chip: {chips_sidecar(args.out)}")
        return 0
    with executor or contextlib.nullcontext():
        rows = sweep(args.checkpoint, args.arch, grid, args.out, act_bits=args.act_bits,
                     ber_model=BerModel.load(args.ber_model), realizations=args.realizations,
                     ci_target=args.ci_target, seed=args.seed, resume=args.resume,
                     label=args.label, data_root=args.data_root,
                     progress=not args.no_progress, device=args.device, executor=executor,
                     scenario=scenario)
    print(f"{args.out}: {len(rows)} points")
    return 0


def run_assignment(args) -> int:
    from hwsim.assignments import assignment_point
    persistent = faults_from_args(args).model == "persistent"
    given = [f"--{k}" for k in GRID if getattr(args, k) is not None] + [
        flag for flag, on in (("--domains", args.domains), ("--protection", args.protection),
                              ("--fault-model persistent", persistent),
                              ("--executor ray", args.executor == "ray"))
        if on]
    if given:
        raise ConfigError(f"--assignment with {', '.join(given)}: an assignment is one point "
                          "with every weight-holding domain at its per-layer voltages, "
                          "evaluated here")
    row = assignment_point(args.checkpoint, args.assignment, args.arch, args.out,
                           label=args.label, seed=args.seed, realizations=args.realizations,
                           ci_target=args.ci_target, ber_model=BerModel.load(args.ber_model),
                           act_bits=args.act_bits, data_root=args.data_root,
                           device=args.device, progress=not args.no_progress,
                           resume=args.resume)
    print(f"{args.out}: {row['label']}: accuracy {row['acc_mean'] * 100:.2f}% +/- "
          f"{row['acc_ci95'] * 100:.2f} (clean {row['acc_clean'] * 100:.2f}%), energy "
          f"{row['energy_uJ']:.4g} uJ (saving {row['saving_vs_nominal'] * 100:.1f}% vs nominal)")
    return 0
