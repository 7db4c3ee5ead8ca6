"""`hwsim optimize-voltages`: per-layer weight-memory voltages at an accuracy target."""
from __future__ import annotations

import shlex

from hwsim.ber import BerModel
from hwsim.paths import DEFAULT_ARCH, resolve_arch

from .ber import add_ber_model
from .common import (add_device, add_precision, add_seed, add_threads,
                     apply_threads, number, out_file)


def register(sub) -> None:
    p = sub.add_parser(
        "optimize-voltages", help="per-layer weight-memory voltages within an accuracy drop",
        description="Per-layer sensitivity (accuracy vs BER with one layer faulty), a greedy "
                    "search for the per-layer voltages minimising the weight-domain energy "
                    "sum_l E_l (V_l/V_nom)^2 with accuracy >= clean - max-drop, Monte Carlo "
                    "verification of the joint assignment (95% CI; the budget is tightened "
                    "and the search repeated if it fails), and the saving against the best "
                    "uniform voltage meeting the same target. See hwsim/voltages.py.")
    p.add_argument("--checkpoint", required=True, help="quantized checkpoint (.pt)")
    p.add_argument("--arch", default=DEFAULT_ARCH,
                   help=f"architecture YAML or a shipped name (default {DEFAULT_ARCH})")
    p.add_argument("--max-drop", type=number(float, 0, 100, lo_open=True), default=1.0,
                   help="allowed accuracy drop from clean, in points (default 1.0)")
    p.add_argument("--grid", default="0.36:0.80:0.01", metavar="VMIN:VMAX:STEP",
                   help="per-layer voltage grid in V (default 0.36:0.80:0.01)")
    p.add_argument("--realizations", type=number(int, 2), default=50,
                   help="Monte Carlo realizations to verify an assignment and for the uniform "
                        "baseline (default 50, as `hwsim sweep`)")
    p.add_argument("--sens-realizations", type=number(int, 2), default=10,
                   help="realizations per per-layer sensitivity point (default 10; where "
                        "a layer sees <= 6 expected flips the stratified estimator's pilot "
                        "takes 2 per stratum, up to 26, whatever this says)")
    p.add_argument("--sens-images", type=number(int, 1), default=None, metavar="N",
                   help="run the sensitivity step on N test images drawn by --seed (default: "
                        "all); verification and the uniform baseline always use all")
    p.add_argument("--sens-model", choices=["measured", "flips"], default="measured",
                   help="per-layer drop curves for the search: measured (each made monotone "
                        "in V; default) or flips (drop = c_l x the layer's expected flipped "
                        "bits, one coefficient per layer fitted to all its points: less "
                        "swayed by one noisy point); see hwsim/voltages.py")
    p.add_argument("--sensitivity-from", metavar="FILE",
                   help="reuse the per-layer sensitivity recorded in an assignment this "
                        "command wrote (same checkpoint, grid, BER model; max drop at least "
                        "this one): only the search, verification and uniform baseline run")
    p.add_argument("--ci-target", type=number(float, 0, lo_open=True), default=None,
                   help="stop a verification once its 95%% CI half-width is below this "
                        "fraction (default: all realizations)")
    p.add_argument("--act-bits", type=number(int, 1, 32), default=8,
                   help="bits per activation in the energy model (default 8)")
    add_seed(p)
    p.add_argument("--data-root", help="override the checkpoint's data root")
    p.add_argument("--out", help="write the assignment YAML here (atomically); the sensitivity "
                   "is saved per layer in OUT.sensitivity.partial.json meanwhile, and a rerun "
                   "with the same arguments resumes from it")
    p.add_argument("--no-progress", action="store_true")
    add_ber_model(p)
    add_threads(p)
    add_device(p)
    add_precision(p)
    p.set_defaults(func=run)


def command_line(args) -> str:
    """The command that reproduces this run (every setting that changes the result)."""
    parts = ["hwsim", "optimize-voltages", "--checkpoint", args.checkpoint, "--arch", args.arch,
             "--max-drop", f"{args.max_drop:g}", "--grid", args.grid, "--realizations",
             str(args.realizations), "--sens-realizations", str(args.sens_realizations),
             "--seed", str(args.seed)]
    for flag, value in (("--ci-target", args.ci_target), ("--ber-model", args.ber_model),
                        ("--sens-images", args.sens_images),
                        ("--sens-model", None if args.sens_model == "measured"
                         else args.sens_model),
                        ("--sensitivity-from", args.sensitivity_from),
                        ("--act-bits", None if args.act_bits == 8 else args.act_bits)):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def run(args) -> int:
    from hwsim.assignments import optimize_voltages
    from hwsim.voltages import parse_grid
    apply_threads(args)
    if args.out:
        out_file(args.out)
    grid = parse_grid(args.grid)
    doc = optimize_voltages(
        args.checkpoint, resolve_arch(args.arch), args.max_drop, grid, out=args.out,
        seed=args.seed, realizations=args.realizations,
        sens_realizations=args.sens_realizations, ci_target=args.ci_target,
        sens_images=args.sens_images, act_bits=args.act_bits, sens_model=args.sens_model,
        sensitivity_from=args.sensitivity_from,
        ber_model=BerModel.load(args.ber_model),
        data_root=args.data_root, device=args.device, progress=not args.no_progress,
        command=command_line(args))
    acc, uni = doc["accuracy"], doc["uniform"]
    for name, layer in doc["layers"].items():
        print(f"{name:<24} {layer['voltage']:.3f} V  BER {layer['ber']:.3g}  "
              f"{layer['energy_uJ']:.4g} uJ (nominal {layer['energy_nominal_uJ']:.4g})")
    print(f"weight-domain energy {doc['energy_weight_domain_uJ']:.4g} uJ "
          f"(nominal {doc['energy_weight_domain_nominal_uJ']:.4g}); accuracy "
          f"{acc['mean'] * 100:.2f}% +/- {acc['ci95'] * 100:.2f} (95% CI; clean "
          f"{acc['clean'] * 100:.2f}%), from the {doc['result_from']} search")
    print(f"best uniform: {uni['voltage']:.3f} V, {uni['energy_weight_domain_uJ']:.4g} uJ, "
          f"{uni['accuracy']['mean'] * 100:.2f}% +/- {uni['accuracy']['ci95'] * 100:.2f}; "
          f"saving vs uniform {doc['saving_vs_uniform'] * 100:.1f}%")
    ceil = doc.get("ceiling_flips_model")
    if ceil:
        print(f"ceiling (flips model, continuous voltages): "
              f"{ceil['saving_vs_uniform'] * 100:.1f}% vs uniform "
              f"(layers {ceil['layer_voltages'][0]:.3f}-{ceil['layer_voltages'][1]:.3f} V)")
    if args.out:
        print(f"wrote {args.out}")
    return 0
