"""Where does WCAT lose more than PLClip at BER 1%? Per layer of two checkpoints of the
ResNet-20 study (default: PLClip+BFN and WCAT+BFN, 4-bit): the accuracy when only that
layer's stored bits flip at rate BER (hwsim.api.layer_sensitivity: the same flipped bit
positions for both checkpoints, since their layers have the same sizes and widths), and the
layer's noise-to-signal ratio under those flips, computed from its stored integers
(hwsim.api.layer_noise: expected flip error power, BER * step^2 * (4^b - 1) / 3, over the
stored weights' mean square), and how tight the range sits: over the RMS of the stored
weights (what the NSR follows) and over the std of the float weights (which WCAT keeps
unclamped: its outliers beyond the range inflate that std).

    .venv/bin/python studies/results/resnet20_cifar10/sensitivity/sensitivity.py \
        [--methods plclip_bfn,wcat_bfn] [--ber 0.01] [--realizations 5] [--seed 0] \
        > studies/results/resnet20_cifar10/sensitivity/table.md

Writes sensitivity.A-vs-B.json (every number) beside this file; a rerun with the same
settings reuses its accuracies (the expensive part: ~12 min per checkpoint on 2 cores) and
recomputes the layer statistics. All 10,000 test images of CIFAR-10 (JPEG q75 copy)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
sys.path.insert(0, str(ROOT))
from hwsim import api as hw  # noqa: E402
from hwsim.models import load_dataset  # noqa: E402
from hwsim.models.checkpoint import load_checkpoint  # noqa: E402
from hwsim.models.evaluate import StoredWeights  # noqa: E402

CHECKPOINTS = HERE.parent / "checkpoints"
DATA = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def measure(methods: list[str], ber: float, realizations: int, seed: int) -> dict:
    _, test = load_dataset("cifar10", str(DATA))
    result = {"settings": {"methods": methods, "ber": ber, "realizations": realizations,
                           "seed": seed, "test_images": len(test)}, "methods": {}}
    for m in methods:
        model, _ = load_checkpoint(CHECKPOINTS / f"{m}.pt")
        print(f"{m}: {len(StoredWeights(model).names)} layers", file=sys.stderr, flush=True)
        sens = hw.layer_sensitivity(model, test, ber=ber, realizations=realizations, seed=seed,
                                    progress=True)
        layers = {r["layer"]: {"acc_mean": r["acc_mean"], "acc_std": r["acc_std"]}
                  for r in sens.to_dict("records")}
        result["methods"][m] = {"clean": hw.accuracy(model, test), "layers": layers}
    return result


def with_stats(result: dict) -> dict:
    """`result` with every layer's hwsim.api.layer_noise (from the checkpoints: cheap)."""
    for m, entry in result["methods"].items():
        model, _ = load_checkpoint(CHECKPOINTS / f"{m}.pt")
        stats = hw.layer_noise(model, result["settings"]["ber"]).set_index("layer")
        entry["layers"] = {name: {**stats.loc[name].to_dict(), **entry["layers"][name]}
                           for name in stats.index}
    return result


def table(result: dict) -> str:
    a, b = result["settings"]["methods"]
    la, lb = result["methods"][a]["layers"], result["methods"][b]["layers"]
    ca, cb = result["methods"][a]["clean"], result["methods"][b]["clean"]
    s = result["settings"]
    lines = [f"BER {s['ber']} in one layer at a time, {s['realizations']} realizations (mean; "
             f"the same flipped positions for both), seed {s['seed']}, {s['test_images']} "
             f"test images. Drop = clean − accuracy, points. NSR: expected flip error power "
             f"over stored-weight power.", "",
             f"| layer | weights | {a} range/RMS | {b} range/RMS | {a} range/std(W) | "
             f"{b} range/std(W) | {a} NSR | {b} NSR | {a} drop | {b} drop | {b} − {a} drop |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    tot_a = tot_b = 0.0
    for name in la:  # network order
        da, db = 100 * (ca - la[name]["acc_mean"]), 100 * (cb - lb[name]["acc_mean"])
        tot_a, tot_b = tot_a + da, tot_b + db
        lines.append(f"| {name} | {la[name]['weights']} | {la[name]['range_over_rms']:.2f} | "
                     f"{lb[name]['range_over_rms']:.2f} | {la[name]['range_over_std']:.2f} | "
                     f"{lb[name]['range_over_std']:.2f} | {la[name]['nsr']:.4f} | "
                     f"{lb[name]['nsr']:.4f} | {da:.2f} | {db:.2f} | {db - da:+.2f} |")
    se = [100 * sum(la_[n]["acc_std"] ** 2 / s["realizations"] for n in la_) ** 0.5
          for la_ in (la, lb)]
    lines.append(f"| sum over layers (± 1 SE) | | | | | | | | {tot_a:.2f} ± {se[0]:.2f} | "
                 f"{tot_b:.2f} ± {se[1]:.2f} | {tot_b - tot_a:+.2f} |")
    lines.append(f"\nclean: {a} {100 * ca:.2f}%, {b} {100 * cb:.2f}%")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="plclip_bfn,wcat_bfn",
                    help="two checkpoint names in ../checkpoints (default plclip_bfn,wcat_bfn)")
    ap.add_argument("--ber", type=float, default=0.01)
    ap.add_argument("--realizations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    methods = args.methods.split(",")
    if len(methods) != 2:
        ap.error(f"--methods {args.methods!r}: give exactly two names, comma-separated")
    torch.set_num_threads(args.threads)
    path = HERE / f"sensitivity.{'-vs-'.join(methods)}.json"
    settings = {"methods": methods, "ber": args.ber, "realizations": args.realizations,
                "seed": args.seed}
    old = json.loads(path.read_text()) if path.exists() else {}
    if {k: old.get("settings", {}).get(k) for k in settings} == settings:
        result = old
    else:
        result = measure(methods, args.ber, args.realizations, args.seed)
    result = with_stats(result)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    print(table(result))


if __name__ == "__main__":
    main()
