"""`hwsim eval`: clean accuracy and accuracy under random bit errors at one rate, or with
each layer's weights at the voltage of a per-layer assignment (`hwsim optimize-voltages`)."""
from __future__ import annotations

import sys

from hwsim.ber import BerModel
from hwsim.models.checkpoint import load_checkpoint, method_name
from hwsim.models.errors import ConfigError
from hwsim.models.data import load_dataset
from hwsim.models.device import resolve_device
from hwsim.models.evaluate import evaluate_under_bit_errors

from hwsim.paths import resolve_arch

from .ber import add_ber_model
from .common import add_device, add_seed, add_threads, apply_threads, number, print_json


def register(sub) -> None:
    p = sub.add_parser("eval", help="accuracy of a checkpoint under random bit errors",
                       description="Clean test accuracy, then mean/std/95% CI over R "
                                   "independent bit-error realizations at rate P; or, with "
                                   "--assignment, with each layer's weights at its own "
                                   "voltage (seeded as optimize-voltages verifies).")
    p.add_argument("--checkpoint", required=True, help="checkpoint (.pt) to evaluate")
    p.add_argument("--ber", type=number(float, 0, 0.5), default=None,
                   help="bit error rate p in [0, 0.5] (default 0)")
    p.add_argument("--assignment", metavar="FILE",
                   help="per-layer voltages (YAML, as `hwsim optimize-voltages --out` writes, "
                        "or `layers: {name: V}`) instead of --ber")
    p.add_argument("--arch", help="with --assignment: also price its weight-domain energy on "
                                  "this architecture YAML or shipped name")
    p.add_argument("--ci-target", type=number(float, 0, lo_open=True),
                   help="with --assignment: stop once the 95%% CI half-width is below this "
                        "fraction (default: all realizations)")
    add_ber_model(p)
    p.add_argument("--realizations", type=number(int, 1), default=50,
                   help="default 50 (the paper's)")
    add_seed(p)
    p.add_argument("--data-root", help="override the data root stored in the checkpoint")
    p.add_argument("--json", action="store_true")
    add_threads(p)
    add_device(p)
    p.set_defaults(func=run)


def load_eval_data(config: dict, data_root: str | None):
    d = config["data"]
    return load_dataset(d["name"], data_root or d.get("root"))[1]


def run(args) -> int:
    apply_threads(args)
    if args.assignment is not None:
        return run_assignment(args)
    for flag, value in (("--arch", args.arch), ("--ci-target", args.ci_target),
                        ("--ber-model", args.ber_model)):
        if value is not None:
            raise ConfigError(f"{flag} needs --assignment (it prices or samples per-layer "
                              "voltages)")
    args.ber = 0.0 if args.ber is None else args.ber
    dev = resolve_device(args.device)
    model, config = load_checkpoint(args.checkpoint)
    model.to(dev)
    test = load_eval_data(config, args.data_root)
    r = evaluate_under_bit_errors(model, test, args.ber, args.realizations, args.seed,
                                  progress=not args.json)
    out = dict(r.as_dict(), checkpoint=args.checkpoint, method=method_name(config),
               bits=(config.get("quantizer") or {}).get("bits"), seed=args.seed,
               test_images=len(test), device=str(dev))
    if args.json:
        print_json(out)
    else:
        print(f"{args.checkpoint}: {out['method']}, {out['bits']}-bit, {len(test)} test images")
        print(f"clean accuracy      {r.clean * 100:.2f}%")
        print(f"BER {args.ber:<10.3g}      {r.mean * 100:.2f}% +/- {r.std * 100:.2f} (std), "
              f"95% CI +/- {r.ci95 * 100:.2f}, {r.realizations} realizations")
    return 0


def run_assignment(args) -> int:
    from hwsim.voltages import assignment_warning, evaluate_assignment
    if args.ber is not None:
        raise ConfigError("--ber and --assignment: give one (the assignment's voltages set "
                          "each layer's bit error rate)")
    if args.realizations < 2:
        raise ConfigError(f"--realizations {args.realizations}: an assignment's estimate needs "
                          "at least 2 for a CI")
    arch = resolve_arch(args.arch) if args.arch else None
    note = assignment_warning(args.assignment, args.checkpoint)
    if note:
        print(f"hwsim: warning: {note}", file=sys.stderr)
    r = evaluate_assignment(args.assignment, args.checkpoint, seed=args.seed,
                            realizations=args.realizations, ci_target=args.ci_target,
                            ber_model=BerModel.load(args.ber_model), data_root=args.data_root,
                            device=args.device, arch=arch, progress=not args.json)
    est, energy = (r if arch else (r, {}))
    out = dict(est.as_dict(), checkpoint=args.checkpoint, assignment=args.assignment,
               seed=args.seed, **energy, **({"arch": arch} if arch else {}))
    if args.json:
        print_json(out)
        return 0
    print(f"{args.checkpoint} at the per-layer voltages of {args.assignment}")
    print(f"clean accuracy      {est.clean * 100:.2f}%")
    print(f"assignment          {est.mean * 100:.2f}% +/- {est.std * 100:.2f} (std), 95% CI "
          f"+/- {est.ci95 * 100:.2f}, {est.realizations} realizations ({est.estimator}), "
          f"{est.expected_flips:.3g} expected flips")
    if energy:
        e, en = energy["energy_weight_domain_uJ"], energy["energy_weight_domain_nominal_uJ"]
        print(f"weight-domain energy {e:.4g} uJ (nominal {en:.4g} uJ, saving "
              f"{(1 - e / en) * 100:.1f}%) on {args.arch}")
    return 0
