"""`hwsim eval`: clean accuracy and accuracy under random bit errors at one rate."""
from __future__ import annotations

from hwsim.models.checkpoint import load_checkpoint, method_name
from hwsim.models.data import load_dataset
from hwsim.models.device import resolve_device
from hwsim.models.evaluate import evaluate_under_bit_errors

from .common import add_device, add_seed, add_threads, apply_threads, number, print_json


def register(sub) -> None:
    p = sub.add_parser("eval", help="accuracy of a checkpoint under random bit errors",
                       description="Clean test accuracy, then mean/std/95% CI over R "
                                   "independent bit-error realizations at rate P.")
    p.add_argument("--checkpoint", required=True, help="checkpoint (.pt) to evaluate")
    p.add_argument("--ber", type=number(float, 0, 0.5), default=0.0,
                   help="bit error rate p in [0, 0.5] (default 0)")
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
