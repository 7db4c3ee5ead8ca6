"""Persistent-fault options shared by `hwsim sweep` (and `hwsim chip`)."""
from __future__ import annotations

from hwsim.chips import FAULT_MODELS, Faults
from models.chips import MODES

from .common import number


def add_fault_args(p) -> None:
    """--fault-model transient|persistent and the persistent chips' settings."""
    g = p.add_argument_group("persistent faults (chips)")
    g.add_argument("--fault-model", choices=FAULT_MODELS, default="transient",
                   help="transient: fresh random flips per realization (default); persistent: "
                        "fixed chips whose faulty cells grow as the voltage falls")
    g.add_argument("--chips", type=number(int, 1), default=100,
                   help="persistent: number of chips (default 100)")
    g.add_argument("--fault-mode", choices=MODES, default="flip",
                   help="persistent: what a faulty cell reads (default flip)")
    g.add_argument("--stuck-q", type=number(float, 0, 1), default=0.5,
                   help="stuck-at: probability that a faulty cell is stuck at 1 (default 0.5)")
    g.add_argument("--p01-scale", type=number(float, 0), default=1.0,
                   help="asymmetric: 0->1 error rate = this x BER (default 1)")
    g.add_argument("--p10-scale", type=number(float, 0), default=1.0,
                   help="asymmetric: 1->0 error rate = this x BER (default 1)")
    g.add_argument("--yield-drop", type=number(float, 0, 1), default=0.01,
                   help="a chip yields when its accuracy is within this of clean "
                        "(default 0.01 = 1 point)")


def faults_from_args(args) -> Faults:
    return Faults(args.fault_model, args.fault_mode, args.chips, args.stuck_q, args.p01_scale,
                  args.p10_scale, args.yield_drop).check()
