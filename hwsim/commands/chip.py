"""`hwsim chip import FILE`: a measured chip profile -> a chip file; and the persistent-fault
options of `hwsim sweep`."""
from __future__ import annotations

from pathlib import Path

from hwsim.chips import FAULT_MODELS, Faults
from hwsim.models.chips import MODES

from .common import number, out_file


def register(sub) -> None:
    p = sub.add_parser("chip", help="import a measured chip profile (chip import FILE)",
                       description="Check a measured per-cell failure profile (CSV or NPZ: "
                                   "address, voltage or rank, optional stuck; see README "
                                   "'Chips') and write a chip file for sweep --chip-file or "
                                   "a study's faults: {chip_files: [...]}. Nothing is written "
                                   "when a row is bad.")
    p.add_argument("action", choices=["import"])
    p.add_argument("file", help="measured profile, .csv or .npz")
    p.add_argument("--out", help="chip file to write (default: FILE with suffix .chip.npz)")
    p.add_argument("--arch", default=None,
                   help="architecture whose weight memory was measured: addresses must be "
                        "below its size in bits (default arch/eyeriss_sram.yaml)")
    p.add_argument("--cells", type=number(int, 1), default=None,
                   help="number of cells in the measured memory (default: the --arch weight "
                        "memory's size); the rank form's rank / cells is a cell's BER")
    p.add_argument("--v-low", type=float, default=None,
                   help="voltage form: the lowest voltage measured (default: the lowest "
                        "failure voltage in FILE); sweeps may not go below it")
    p.set_defaults(func=run)


def run(args) -> int:
    from hwsim.chip_import import read_profile, write_chip_file
    out = out_file(args.out or str(Path(args.file).with_suffix(".chip.npz")))
    cells = args.cells
    if cells is None:
        from hwsim.chips import memory_geometry
        from hwsim.paths import DEFAULT_ARCH, resolve_arch
        cells = memory_geometry(resolve_arch(args.arch or DEFAULT_ARCH))[1]
    arrays = read_profile(args.file, cells, args.v_low)
    write_chip_file(arrays, out)
    form = str(arrays["kind"])
    print(f"{out}: {len(arrays['address'])} weak cells ({form} form"
          + (", with stuck values" if (arrays["stuck"] >= 0).all() else "") + f"), {cells} cells")
    return 0


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
    g.add_argument("--chip-file", action="append", default=[], metavar="NPZ",
                   help="persistent: a measured chip from `hwsim chip import` instead of a "
                        "synthetic one; repeat for several chips (--chips is then their number)")
    g.add_argument("--yield-drop", type=number(float, 0, 1), default=0.01,
                   help="a chip yields when its accuracy is within this of clean "
                        "(default 0.01 = 1 point)")


def faults_from_args(args) -> Faults:
    files = tuple(args.chip_file)
    model = "persistent" if files else args.fault_model
    chips = len(files) if files else args.chips
    return Faults(model, args.fault_mode, chips, args.stuck_q, args.p01_scale,
                  args.p10_scale, args.yield_drop, files).check()
