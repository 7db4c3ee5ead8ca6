"""`hwsim sweep`: accuracy and energy per inference over a weight-memory voltage grid."""
from __future__ import annotations

from hwsim.ber import BerModel
from hwsim.sweep import sweep, voltage_grid

from .ber import add_ber_model
from .common import add_threads, apply_threads


def register(sub) -> None:
    p = sub.add_parser("sweep", help="accuracy + energy over a voltage grid (resumable CSV)",
                       description="For each voltage: BER, accuracy under random bit errors "
                                   "(mean, std, 95%% CI; variance-reduced Monte Carlo), energy "
                                   "per inference. Each point is written as soon as it is done.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--arch", default="arch/eyeriss_sram.yaml")
    p.add_argument("--vmin", type=float, default=0.35)
    p.add_argument("--vmax", type=float, default=0.8)
    p.add_argument("--step", type=float, default=0.01)
    p.add_argument("--realizations", type=int, default=50,
                   help="max realizations per point (default 50)")
    p.add_argument("--ci-target", type=float, default=None,
                   help="stop a point once its 95%% CI half-width is below this (e.g. 0.005)")
    p.add_argument("--act-bits", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", help="name of this checkpoint in plots (default: its method)")
    p.add_argument("--data-root", help="override the checkpoint's data root")
    p.add_argument("--out", required=True, help="results CSV (points are appended)")
    p.add_argument("--resume", action="store_true", help="skip points already in --out")
    p.add_argument("--no-progress", action="store_true")
    add_ber_model(p)
    add_threads(p)
    p.set_defaults(func=run)


def run(args) -> int:
    apply_threads(args)
    grid = voltage_grid(args.vmin, args.vmax, args.step)
    rows = sweep(args.checkpoint, args.arch, grid, args.out, act_bits=args.act_bits,
                 ber_model=BerModel.load(args.ber_model), realizations=args.realizations,
                 ci_target=args.ci_target, seed=args.seed, resume=args.resume,
                 label=args.label, data_root=args.data_root, progress=not args.no_progress)
    print(f"{args.out}: {len(rows)} points")
    return 0
