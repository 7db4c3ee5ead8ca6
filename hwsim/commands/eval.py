"""`hwsim eval`: clean accuracy and accuracy under random bit errors at one rate, or with
each layer's weights at the voltage of a per-layer assignment (`hwsim optimize-voltages`)."""
from __future__ import annotations

import sys

from hwsim.ber import BerModel
from hwsim.models.checkpoint import (epochs_trained, method_name, model_from_checkpoint,
                                     read_checkpoint)
from hwsim.models.errors import ConfigError
from hwsim.models.data import load_dataset
from hwsim.models.device import resolve_device
from hwsim.models.evaluate import evaluate_under_bit_errors, paired_difference, precision_name

from hwsim.paths import resolve_arch

from .ber import add_ber_model
from .common import (add_device, add_precision, add_seed, add_threads,
                     apply_threads, number, print_json)


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
    p.add_argument("--paired-with", metavar="B.pt",
                   help="also evaluate checkpoint B under the very same bit-error patterns "
                        "(same seed; same flips where the layer sizes and widths match) and "
                        "report B - A per realization: mean, 95%% CI, Wilcoxon p")
    add_ber_model(p)
    p.add_argument("--realizations", type=number(int, 1), default=50,
                   help="default 50 (the paper's)")
    add_seed(p)
    p.add_argument("--data-root", help="override the data root stored in the checkpoint")
    p.add_argument("--json", action="store_true")
    add_threads(p)
    add_device(p)
    add_precision(p)
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
    if args.paired_with is not None and not (args.ber > 0 and args.realizations >= 2):
        raise ConfigError("--paired-with compares accuracy under bit errors: give --ber > 0 "
                          "and --realizations >= 2")
    dev = resolve_device(args.device)
    paths = [args.checkpoint] + ([args.paired_with] if args.paired_with else [])
    read = [read_checkpoint(path) for path in paths]  # every file checked before any work
    loaded = [model_from_checkpoint(ck, path) for ck, path in zip(read, paths)]
    epochs = [epochs_trained(ck) for ck in read]
    for path, (done, wanted) in zip(paths, epochs):
        if done < wanted:  # e.g. a long run checked part-way; a half-trained baseline by mistake
            print(f"hwsim: note: {path} is trained for {done} of its {wanted} epochs "
                  "(still training, or stopped early)", file=sys.stderr)
    data = [config["data"]["name"] for _, config in loaded]
    if data[-1] != data[0]:
        raise ConfigError(f"--paired-with {paths[-1]}: trained on {data[-1]!r}, "
                          f"{paths[0]} on {data[0]!r}; a paired comparison needs one test set")
    test = load_eval_data(loaded[0][1], args.data_root)
    outs, results = [], []
    for path, (model, config), (done, wanted) in zip(paths, loaded, epochs):
        r = evaluate_under_bit_errors(model.to(dev), test, args.ber, args.realizations,
                                      args.seed, progress=not args.json)
        results.append(r)
        outs.append(dict(r.as_dict(), checkpoint=path, method=method_name(config),
                         bits=(config.get("quantizer") or {}).get("bits"), seed=args.seed,
                         test_images=len(test), device=str(dev),
                         precision=precision_name(dev), epochs_trained=done,
                         epochs_planned=wanted))
    out = outs[0]
    if args.paired_with:
        d = paired_difference(*results)
        out.update(paired_with=outs[1], paired_difference=d.as_dict())
    if args.json:
        print_json(out)
        return 0
    for o in outs:
        part = ("" if o["epochs_trained"] == o["epochs_planned"] else
                f", trained {o['epochs_trained']} of {o['epochs_planned']} epochs")
        print(f"{o['checkpoint']}: {o['method']}, {o['bits']}-bit, {len(test)} test images{part}")
        print(f"clean accuracy      {o['clean'] * 100:.2f}%")
        print(f"BER {args.ber:<10.3g}      {o['mean'] * 100:.2f}% +/- {o['std'] * 100:.2f} "
              f"(std), 95% CI +/- {o['ci95'] * 100:.2f}, {o['realizations']} realizations")
    if args.paired_with:
        print(f"paired B - A        {d.mean * 100:+.2f} points, 95% CI +/- {d.ci95 * 100:.2f} "
              f"(std of the differences {d.std * 100:.2f}), Wilcoxon p = {d.wilcoxon_p:.3g}")
        print(f"                    B ahead in {d.b_ahead}, A in {d.a_ahead} of "
              f"{d.realizations} realizations; "
              f"{'the same' if d.same_patterns else 'NOT the same'} flipped bits on both sides")
    return 0


def run_assignment(args) -> int:
    from hwsim.assignments import assignment_warning, evaluate_assignment
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
