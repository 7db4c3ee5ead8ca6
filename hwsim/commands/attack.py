"""`hwsim attack`: adversarial bit-flip attacks on a checkpoint's stored weight integers.

  hwsim attack bfa    --checkpoint C [--attack-batch 64] [--seeds 10] [--max-flips 500]
                      [--stop-rule lt11|le10.1] [--out FILE (resumable per seed)]
  hwsim attack tbfa   --checkpoint C --source S --target T [--out FILE] | --all-pairs
  hwsim attack random --checkpoint C          (random-flip baseline, same split and goal)
  hwsim attack compare A B    (does B raise N_flip over A? A, B: `bfa --json` outputs or
                               a study's attacks.json:METHOD)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from hwsim.attack_records import partial_file, resumable
from hwsim.files import file_sha256, write_json_atomic
from hwsim.models.attacks import (DEFAULT_ATTACK_BATCH, DEFAULT_STOP_RULE, STOP_RULES,
                                  bfa_nflip, compare_nflip, comparison_line, random_nflip)
from hwsim.models.tbfa import TBFA_PROTOCOLS, tbfa, tbfa_all_pairs
from hwsim.models.checkpoint import load_checkpoint, method_name
from hwsim.models.data import CIFAR10_CLASSES, load_dataset
from hwsim.models.device import model_device, resolve_device
from hwsim.models.errors import ConfigError

from .common import add_device, add_seed, add_threads, apply_threads, comma_list, number, print_json


def _common(p, max_flips: int = 500, attack_batch: int = DEFAULT_ATTACK_BATCH,
            rule: bool = True) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint (.pt) of a quantized model")
    p.add_argument("--data-root", help="data folder (default: the checkpoint's data root)")
    p.add_argument("--attack-batch", type=number(int, 1), default=attack_batch,
                   help=f"test images the attacker sees (default {attack_batch}); accuracy is "
                        f"measured on the rest of the test set")
    if rule:
        p.add_argument("--stop-rule", choices=list(STOP_RULES), default=DEFAULT_STOP_RULE,
                       help="when the network counts as crushed: lt11 = held-out accuracy "
                            "< 1.1x random guess (11%%, the paper's text; default), le10.1 = "
                            "<= 1.01x (10.1%%, the authors' code; also reports lt11)")
    p.add_argument("--seeds", type=number(int, 1), default=10,
                   help="attack runs, each with its own attack batch (default 10)")
    add_seed(p, help="first seed, an integer >= 0 (default 0)")
    p.add_argument("--max-flips", type=number(int, 0), default=max_flips,
                   help=f"flip budget per run (default {max_flips})")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-progress", action="store_true")
    add_threads(p)
    add_device(p)


def _search(p) -> None:
    p.add_argument("--topk", type=number(int, 1), default=1,
                   help="candidate bits per layer evaluated in the in-layer search (default 1)")


def _out(p) -> None:
    p.add_argument("--out", help="write the JSON results to this file; finished seeds are "
                                 "kept in OUT.partial.json meanwhile, so a rerun with the same "
                                 "settings continues where an interrupted one stopped")


def register(sub) -> None:
    p = sub.add_parser("attack", help="adversarial bit-flip attacks (BFA, stealthy T-BFA)",
                       description="Adversarial bit-flip attacks on the stored weight integers.")
    asub = p.add_subparsers(dest="attack", metavar="ATTACK")

    b = asub.add_parser("bfa", help="untargeted BFA: flips to random-guess accuracy",
                        description="Progressive bit search (Rakin et al. 2019) until the "
                                    "held-out accuracy is below 1.1/classes (11% for 10).")
    _common(b)
    _search(b)
    _out(b)
    b.set_defaults(func=run_bfa)

    t = asub.add_parser("tbfa", help="stealthy targeted BFA: source class -> target class",
                        description="Stealthy T-BFA (Rakin et al. 2021): inputs of class SOURCE "
                                    "are classified as TARGET, other classes keep accuracy.")
    _common(t, attack_batch=128, rule=False)
    _search(t)
    t.add_argument("--source", help="source class (index, or CIFAR-10 name)")
    t.add_argument("--target", help="target class (index, or CIFAR-10 name)")
    t.add_argument("--all-pairs", action="store_true",
                   help="every ordered source/target pair (paper Fig. 13)")
    t.add_argument("--classes", help="with --all-pairs: comma-separated classes (default all)")
    t.add_argument("--protocol", choices=TBFA_PROTOCOLS, default="heldout",
                   help="heldout (default): the attack sees --attack-batch images and stops "
                        "when the held-out ASR reaches --target-asr; paper: as the WCAT "
                        "authors' T-BFA code, the attack sees --source-images of the source "
                        "class and --aux-images of the others and stops when the ASR on "
                        "either the attacked or the held-out source images reaches it")
    t.add_argument("--source-images", type=number(int, 1),
                   help="with --protocol paper: source-class images the attacker uses "
                        "(default half the class: 500 on CIFAR-10)")
    t.add_argument("--aux-images", type=number(int, 1),
                   help="with --protocol paper: images of the other classes the attacker "
                        "uses (default: as many as --source-images)")
    t.add_argument("--target-asr", type=number(float, 0, 1, lo_open=True),
                   help="stop when the attack success rate reaches this (default 0.99; "
                        "1.0 with --protocol paper, the authors' > 99.9% on 500 images)")
    _out(t)
    t.set_defaults(func=run_tbfa)

    r = asub.add_parser("random", help="baseline: random bit flips to random-guess accuracy")
    _common(r, max_flips=100000)
    r.add_argument("--step", type=number(int, 1), default=10,
                   help="flips added between accuracy checks (N_flip resolution, default 10)")
    r.set_defaults(func=run_random)

    c = asub.add_parser("compare", help="does B raise N_flip over A? (significance test)",
                        description="One-sided Mann-Whitney U and Welch t on per-seed N_flip. "
                                    "A and B: JSON files of `hwsim attack bfa --json`, or a "
                                    "study's attacks.json:METHOD.")
    c.add_argument("a", help="baseline results (FILE or FILE:METHOD)")
    c.add_argument("b", help="results tested for more flips (FILE or FILE:METHOD)")
    c.add_argument("--counts", choices=["n_flips", "n_flips_lt11"], default="n_flips",
                   help="which per-seed counts: n_flips (the run's own stop rule, default) or "
                        "n_flips_lt11 (the < 11%% counts a --stop-rule le10.1 run also gives)")
    c.add_argument("--json", action="store_true", help="print the test as JSON")
    c.set_defaults(func=run_compare)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def _load(args):
    apply_threads(args)
    dev = resolve_device(args.device)
    model, config = load_checkpoint(args.checkpoint)
    model.to(dev)
    if not config.get("quantizer"):
        raise ConfigError(f"{args.checkpoint}: a float model has no stored integers to attack; "
                          f"use a quantized checkpoint")
    d = config.get("data") or {}
    _, test = load_dataset(d.get("name", "digits"), args.data_root or d.get("root"))
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: must be >= 1")
    if args.max_flips < 0:
        raise ConfigError(f"--max-flips {args.max_flips}: must be >= 0")
    return model, config, test


def _class(value, name: str, data_name: str, num_classes: int) -> int:
    if value is None:
        raise ConfigError(f"--{name} is required (or use --all-pairs)")
    if data_name == "cifar10" and value in CIFAR10_CLASSES:
        return CIFAR10_CLASSES.index(value)
    try:
        c = int(value)
    except ValueError:
        c = -1
    if not 0 <= c < num_classes:
        names = f" or one of {', '.join(CIFAR10_CLASSES)}" if data_name == "cifar10" else ""
        raise ConfigError(f"--{name} {value!r}: must be a class index 0..{num_classes - 1}{names}")
    return c


def _fmt(v: float, nd: int = 1) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _header(args, config) -> str:
    return f"{args.checkpoint} ({config['model']['name']}, {method_name(config)}, " \
           f"{config['quantizer']['bits']}-bit)"


def _printed_json(res: dict, args, config) -> bool:
    """Label the result with its checkpoint and method; write it to --out (and remove the
    finished seeds kept beside it); print it as JSON if asked."""
    res["checkpoint"], res["method"] = args.checkpoint, method_name(config)
    if getattr(args, "out", None):
        write_json_atomic(args.out, res)
        partial_file(args.out).unlink(missing_ok=True)
    if args.json:
        print_json(res)
    return bool(args.json)


def _resumable(args, model, test, **attack) -> dict:
    """bfa_nflip / tbfa keyword arguments that resume from, and save each new run to,
    partial_file(args.out), valid for runs of the same checkpoint (sha256), test set, device
    type and attack settings (`attack` adds those of one attack)."""
    if not args.out:
        return {}
    settings = {"checkpoint_sha256": file_sha256(args.checkpoint), "test_images": len(test),
                "device": model_device(model).type, "attack_batch": args.attack_batch,
                "max_flips": args.max_flips, "topk": args.topk} | attack
    log = None if args.no_progress else (lambda m: print(m, file=sys.stderr))
    return resumable(partial_file(args.out), settings, model, log)


def run_bfa(args) -> int:
    model, config, test = _load(args)
    res = bfa_nflip(model, test, seeds=args.seeds, attack_batch=args.attack_batch,
                    max_flips=args.max_flips, seed=args.seed, topk=args.topk,
                    progress=not args.no_progress, rule=args.stop_rule,
                    **_resumable(args, model, test, stop_rule=args.stop_rule))
    if _printed_json(res, args, config):
        return 0
    print(f"BFA on {_header(args, config)}, attack batch {args.attack_batch}")
    rel = "<=" if STOP_RULES[args.stop_rule].inclusive else "<"
    print(f"  N_flip to accuracy {rel} {100 * res['threshold']:.2f}%: "
          f"{_fmt(res['n_flip_mean'])} +/- {_fmt(res['n_flip_std'])}  over {args.seeds} seeds "
          f"(runs: {', '.join(map(str, res['n_flips']))})")
    if "n_flips_lt11" in res:
        print(f"  N_flip to accuracy < {100 * STOP_RULES['lt11'].threshold(test.num_classes):.2f}"
              f"% (same runs): {_fmt(res['n_flip_lt11_mean'])} +/- "
              f"{_fmt(res['n_flip_lt11_std'])}  (runs: {', '.join(map(str, res['n_flips_lt11']))})")
    missed = res["reached"].count(False)
    if missed:
        print(f"  {missed} run(s) spent the budget of {args.max_flips} flips without reaching "
              f"the goal (counted as {args.max_flips})")
    print(f"  held-out accuracy: {100 * res['clean_accuracy_mean']:.2f}% -> "
          f"{100 * res['final_accuracy_mean']:.2f}%   "
          f"iteration: {1000 * res['iteration_seconds']:.1f} ms")
    total = sum(res["layer_histogram"].values()) or 1
    print("  attacked layers (all runs):")
    width = max(len(k) for k in res["layer_histogram"])
    for k, v in res["layer_histogram"].items():
        print(f"    {k:<{width}}  {v:5d}  {'#' * round(40 * v / total)}")
    return 0


def run_tbfa(args) -> int:
    model, config, test = _load(args)
    data_name = (config.get("data") or {}).get("name", "digits")
    paper = args.protocol == "paper"
    if not paper and (args.source_images is not None or args.aux_images is not None):
        raise ConfigError("--source-images/--aux-images apply to --protocol paper only")
    if args.target_asr is None:
        args.target_asr = 1.0 if paper else 0.99
    kw = dict(seeds=args.seeds, attack_batch=args.attack_batch, max_flips=args.max_flips,
              seed=args.seed, topk=args.topk, target_asr=args.target_asr,
              progress=not args.no_progress, protocol=args.protocol,
              source_images=args.source_images, aux_images=args.aux_images)
    if args.all_pairs:
        if args.source is not None or args.target is not None:
            raise ConfigError("--all-pairs runs every pair; drop --source/--target")
        if args.out:
            raise ConfigError("--out resumes one source/target pair; with --all-pairs use "
                              "--json > FILE")
        classes = None
        if args.classes:
            classes = [_class(c, "classes", data_name, test.num_classes)
                       for c in comma_list(args.classes) or []]
            if len(set(classes)) < 2:
                raise ConfigError(f"--classes {args.classes!r}: need at least two classes")
        res = tbfa_all_pairs(model, test, classes=classes, **kw)
    else:
        if args.classes:
            raise ConfigError("--classes only applies to --all-pairs")
        s = _class(args.source, "source", data_name, test.num_classes)
        t = _class(args.target, "target", data_name, test.num_classes)
        res = tbfa(model, test, s, t, **kw, **_resumable(
            args, model, test, source=s, target=t, protocol=args.protocol,
            source_images=args.source_images, aux_images=args.aux_images,
            target_asr=args.target_asr))
    if _printed_json(res, args, config):
        return 0
    print(f"stealthy T-BFA on {_header(args, config)}")
    if args.all_pairs:
        print(f"  all {len(res['pairs'])} pairs, {args.seeds} seeds each: N_flip "
              f"{_fmt(res['n_flip_mean'], 2)}, ASR {100 * res['asr_mean']:.1f}%, "
              f"other-class accuracy {100 * res['other_accuracy_mean']:.1f}%")
        print("  mean N_flip (rows: source, columns: target):")
        for c, row in zip(res["classes"], res["n_flip_matrix"]):
            print(f"    {c:>3} " + " ".join(f"{'-' if v is None else _fmt(v):>6}" for v in row))
        return 0
    print(f"  {res['source']} -> {res['target']}, {args.seeds} seeds: N_flip "
          f"{_fmt(res['n_flip_mean'], 2)} +/- {_fmt(res['n_flip_std'], 2)} "
          f"(runs: {', '.join(map(str, res['n_flips']))})")
    print(f"  attack success rate (held-out source images): {100 * res['clean_asr_mean']:.1f}%"
          f" -> {100 * res['asr_mean']:.1f}%")
    if res.get("attack_asrs"):
        print(f"  on the attacked source images: "
              f"{100 * sum(res['attack_asrs']) / len(res['attack_asrs']):.1f}%")
    print(f"  other classes' accuracy: {100 * res['clean_other_accuracy_mean']:.2f}% -> "
          f"{100 * res['other_accuracy_mean']:.2f}%")
    missed = res["reached"].count(False)
    if missed:
        print(f"  {missed} run(s) did not reach ASR {100 * args.target_asr:.0f}% within "
              f"{args.max_flips} flips")
    return 0


def run_random(args) -> int:
    model, config, test = _load(args)
    if args.step < 1:
        raise ConfigError(f"--step {args.step}: must be >= 1")
    res = random_nflip(model, test, seeds=args.seeds, attack_batch=args.attack_batch,
                       max_flips=args.max_flips, seed=args.seed, step=args.step,
                       rule=args.stop_rule)
    if _printed_json(res, args, config):
        return 0
    print(f"random bit flips on {_header(args, config)}")
    rel = "<=" if STOP_RULES[args.stop_rule].inclusive else "<"
    print(f"  N_flip to accuracy {rel} {100 * res['threshold']:.2f}%: {_fmt(res['n_flip_mean'])} "
          f"+/- {_fmt(res['n_flip_std'])} (resolution {args.step}; runs: "
          f"{', '.join(map(str, res['n_flips']))})")
    return 0


def _nflips(spec: str, field: str = "n_flips") -> tuple[str, list]:
    """(label, per-seed N_flips) of FILE (a `bfa --json` output) or FILE:METHOD (an entry of
    a study's attacks.json). JSON only: nothing in the file is run."""
    path, method = spec, None
    if not Path(spec).is_file() and ":" in spec:
        path, method = spec.rsplit(":", 1)
    try:
        d = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not JSON ({e})") from None
    if method is not None:
        if not isinstance(d, dict) or method not in d:
            have = ", ".join(d) if isinstance(d, dict) else "none"
            raise ConfigError(f"{path}: no method {method!r}; valid: {have}")
        d = d[method]
    n = d.get(field) if isinstance(d, dict) else None
    if not (isinstance(n, list) and n and all(isinstance(v, (int, float)) and
                                              not isinstance(v, bool) for v in n)):
        what = " (only runs with --stop-rule le10.1 have it)" if field != "n_flips" else ""
        raise ConfigError(f"{spec}: field {field}: expected a list of per-seed flip counts "
                          f"(the output of `hwsim attack bfa --json`, or attacks.json:METHOD)"
                          f"{what}")
    label = method or d.get("method") or Path(path).stem
    return label, n


def run_compare(args) -> int:
    (la, a), (lb, b) = _nflips(args.a, args.counts), _nflips(args.b, args.counts)
    if la == lb:
        la, lb = f"A ({la})", f"B ({lb})"
    res = compare_nflip(a, b, la, lb)
    if args.json:
        print_json(res)
    else:
        print(comparison_line(res))
    return 0
