"""`hwsim energy`: energy per image of a network on an AccelForge architecture.

    hwsim energy --arch arch/eyeriss_sram.yaml --model resnet20 [--weight-bits 4]
                 [--voltage 0.6 [--ber-model FILE]] [--json]
    hwsim energy --arch arch/eyeriss_sram_domains.yaml --model resnet20 \
                 --domain weights=0.5 --domain activations=0.6 [--protection secded]
    hwsim energy --fill-cache [--arch arch/eyeriss_sram.yaml]   # regenerate arch/cache
    --workers N maps up to N uncached layer shapes at once, in separate processes
    (default: one per core, at most 4; 1 maps in this process).
"""
from __future__ import annotations

import sys
from pathlib import Path

from hwsim.ber import check_voltage
from hwsim.paths import DEFAULT_ARCH, resolve_arch
from hwsim.models.errors import ConfigError

from .ber import add_ber_model
from .common import number, print_json, shape_arg

# networks x weight bits whose energies are committed in arch/cache (see arch/README.md)
SHIPPED_NETWORKS = ["small_cnn", "mlp", "resnet20", "resnet32", "resnet44", "resnet56"]
SHIPPED_BITS = [4, 8]


def register(sub) -> None:
    p = sub.add_parser(
        "energy", help="energy per image of a network on an AccelForge architecture",
        description="Maps every distinct conv/linear layer shape onto the architecture with "
                    "AccelForge (minimum energy, batch 1; results cached in arch/cache or "
                    "~/.cache/hwsim/energy) and prints per-layer and total energy and the "
                    "weight-memory share. With --voltage, the weight memory is scaled as "
                    "(V/V_nominal)^2 and the bit error rate at V is shown.")
    p.add_argument("--arch", default=DEFAULT_ARCH,
                   help=f"architecture YAML with an hwsim: section, or the name of a shipped one "
                        f"(default {DEFAULT_ARCH})")
    p.add_argument("--model", help="registered network name (e.g. resnet20), checkpoint "
                   "path, path/to/file.py:factory (imports and runs that file: your own "
                   "code), torchvision:NAME or timm:NAME (random init)")
    p.add_argument("--input-shape", type=shape_arg, metavar="C,H,W",
                   help="input shape of a user model (default: its input_shape attribute)")
    p.add_argument("--num-classes", type=number(int, 1), default=10,
                   help="classes of a user model (passed to its factory when it takes "
                        "num_classes; default 10)")
    p.add_argument("--weight-bits", type=int, default=None,
                   help="bits per stored weight (default: the checkpoint's quantizer bits, "
                        "else 8)")
    p.add_argument("--act-bits", type=int, default=8, help="bits per activation (default 8)")
    p.add_argument("--voltage", type=float, default=None,
                   help="weight-memory supply voltage in V (nominal: the arch's v_nominal)")
    add_ber_model(p)
    p.add_argument("--domain", action="append", metavar="NAME=V", type=domain_arg,
                   help="supply of one voltage domain of the arch's hwsim: section "
                        "(repeatable; unnamed domains stay at nominal); prints the per-domain "
                        "table and the savings vs nominal and vs the error-free voltage")
    p.add_argument("--protection", metavar="SPEC",
                   help="protection of the scaled domains: none, secded ((72,64) ECC) or "
                        "msb:K (top K bits of each value at nominal voltage); default none")
    p.add_argument("--errorfree-ber", type=number(float, 0, 0.5, lo_open=True), default=1e-9,
                   metavar="BER", help="BER below which a voltage counts as error-free, for "
                   "the second saving baseline (default 1e-9)")
    p.add_argument("--fill-cache", action="store_true",
                   help="map the shipped networks (" + ", ".join(SHIPPED_NETWORKS) +
                        ") at 4 and 8 weight bits onto --arch, filling its cache")
    p.add_argument("--workers", type=number(int, 1), default=None, metavar="N",
                   help="map up to N uncached layer shapes at once, in N processes that "
                        "share the CPU cores (default: one per core, at most 4; 1: one "
                        "shape at a time, AccelForge spreading it over all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def domain_arg(text: str) -> tuple[str, float]:
    """An argparse `type` for --domain NAME=V."""
    import argparse
    name, sep, v = text.partition("=")
    try:
        volts = float(v)
    except ValueError:
        volts = None
    if not sep or not name.strip() or volts is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VOLTS, e.g. weights=0.5")
    return name.strip(), volts


def resolve_model(spec: str, weight_bits: int | None, input_shape=None, num_classes: int = 10):
    """(display name, model, (C, H, W), weight bits) for a registry name, a checkpoint or a
    user model spec (file.py:factory, torchvision:NAME, timm:NAME)."""
    from hwsim import models
    from hwsim.models.usercode import build_user_model, is_spec, model_entry

    if is_spec(spec):
        model = build_user_model(model_entry(spec, num_classes), "--model")
        shape = input_shape or getattr(model, "input_shape", None)
        if shape is None:
            raise ConfigError(f"--model {spec}: pass --input-shape C,H,W (the model has no "
                              "input_shape attribute)")
        return spec, model, tuple(shape), weight_bits if weight_bits is not None else 8
    if spec.endswith(".py"):
        raise ConfigError(f"--model {spec!r}: name the factory in that file, e.g. "
                          f"{spec}:MyNet")
    if Path(spec).is_file() or spec.endswith((".pt", ".pth")):
        model, config = models.load_checkpoint(spec)
        q = config.get("quantizer") or {}
        bits = weight_bits if weight_bits is not None else int(q.get("bits") or 8)
        shape = list(models.input_shape(model))
        in_ch = (config.get("model") or {}).get("in_channels")
        if in_ch:
            shape[0] = int(in_ch)
        return Path(spec).name, model, tuple(input_shape or shape), bits
    if spec not in models.NETWORKS:
        raise ConfigError(f"--model {spec!r}: not a checkpoint file and not a registered "
                          f"network; valid names: {', '.join(models.NETWORKS.names())}")
    model = models.create_model(spec, num_classes=10)
    return spec, model, tuple(input_shape or models.input_shape(spec)), \
        (weight_bits if weight_bits is not None else 8)


def layers_of(model_spec: str, weight_bits: int | None, act_bits: int, input_shape=None,
              num_classes: int = 10):
    """(name, weight bits, LayerShapes) that `hwsim energy` prices for `model_spec` (a
    registry name or a checkpoint); a mixed-precision checkpoint's other-width layers keep
    their width unless `weight_bits` sets every layer's."""
    from hwsim.models.quant import layer_widths
    from hwsim.workload import extract_layers

    if weight_bits is not None and not 1 <= weight_bits <= 32:
        raise ConfigError(f"--weight-bits {weight_bits}: must be in 1..32")
    if not 1 <= act_bits <= 32:
        raise ConfigError(f"--act-bits {act_bits}: must be in 1..32")
    name, model, shape, bits = resolve_model(model_spec, weight_bits, input_shape, num_classes)
    mixed = {} if weight_bits is not None else \
        {n: b for n, b in layer_widths(model).items() if b != bits}
    return name, bits, extract_layers(model, shape, weight_bits=bits, act_bits=act_bits,
                                      layer_bits=mixed)


def compute(arch: str, model_spec: str, weight_bits: int | None, act_bits: int,
            progress: bool = True, workers: int | None = None, input_shape=None,
            num_classes: int = 10):
    from hwsim.energy import network_energy

    name, bits, layers = layers_of(model_spec, weight_bits, act_bits, input_shape, num_classes)
    return name, bits, network_energy(arch, layers, progress=progress, workers=workers)


def fill_cache(arch: str, progress: bool = True, workers: int | None = None) -> list[dict]:
    rows = []
    for net in SHIPPED_NETWORKS:
        for bits in SHIPPED_BITS:
            _, _, ne = compute(arch, net, bits, 8, progress, workers)
            rows.append({"model": net, "weight_bits": bits, "total_uJ": ne.total_uJ,
                         "weight_memory_uJ": ne.weight_memory_uJ,
                         "weight_share": ne.weight_share})
    from hwsim.energy import fill_access
    fill_access(arch)  # SECDED's per-access energies, so pricing needs no CACTI later
    return rows


def run(args) -> int:
    progress = not (args.json or args.no_progress) and sys.stderr.isatty()
    args.arch = resolve_arch(args.arch)
    if args.fill_cache:
        rows = fill_cache(args.arch, progress, args.workers)
        if args.json:
            print_json(rows)
        else:
            print(f"cache filled for {args.arch}")
            for r in rows:
                print(f"  {r['model']:<10} {r['weight_bits']}-bit  {r['total_uJ']:9.3f} uJ  "
                      f"weight memory {r['weight_memory_uJ']:8.3f} uJ "
                      f"({r['weight_share'] * 100:.1f}%)")
        return 0
    if not args.model:
        raise ConfigError("--model is required (a network name such as resnet20, or a "
                          "checkpoint path); or use --fill-cache")
    if args.voltage is not None:
        from hwsim.accelforge_backend import load_arch
        check_voltage(args.voltage, "--voltage", load_arch(args.arch, False)[1].v_nominal)
    priced = bool(args.domain) or args.protection is not None
    if priced:
        if args.ber_model:
            raise ConfigError("--ber-model: with --domain/--protection each domain uses the "
                              "ber_model of its hwsim: entry in the arch file")
        from hwsim.domain_energy import parse_protection
        parse_protection(args.protection, "--protection")  # before any mapping
        volts, node = _domain_voltages(args)
        if not volts:
            raise ConfigError(f"--protection {args.protection}: protects the scaled domains; "
                              "give --domain NAME=V (or --voltage for the weight domains)")

    name, bits, ne = compute(args.arch, args.model, args.weight_bits, args.act_bits, progress,
                             args.workers, args.input_shape, args.num_classes)
    out = ne.to_dict()
    out.update(model=name, weight_bits=bits, act_bits=args.act_bits)
    if priced:
        return _print_priced(args, name, bits, ne, out, volts, node)
    if args.voltage is not None:
        from hwsim.ber import BerModel
        from hwsim.energy import scaled_energy, scaled_weight_memory

        ber_model = BerModel.load(args.ber_model)
        out["scaled"] = {
            "voltage": args.voltage, "v_nominal": ne.v_nominal,
            "total_uJ": scaled_energy(ne, args.voltage),
            "weight_memory_uJ": scaled_weight_memory(ne, args.voltage),
            "rest_uJ": ne.rest_uJ,
            "ber": ber_model.ber(args.voltage), "ber_model": ber_model.source,
        }
    if args.json:
        print_json(out)
        return 0

    comps = list(ne.components_uJ)
    wm = set(ne.weight_memory)
    print(f"{name}: {bits}-bit weights, {args.act_bits}-bit activations on {args.arch} "
          f"(energy per image, uJ; weight memory = {', '.join(ne.weight_memory)})")
    cw = {c: max(12, len(c)) for c in comps}  # full component names, numbers aligned
    head = f"{'layer':<22} {'MACs':>10} " + " ".join(f"{c:>{cw[c]}}" for c in comps) + \
           f" {'total':>10}"
    print(head)
    print("-" * len(head))
    for layer in ne.layers:
        print(f"{layer.name[:22]:<22} {layer.macs:>10,} " +
              " ".join(f"{layer.components_uJ.get(c, 0.0):>{cw[c]}.4f}" for c in comps) +
              f" {layer.total_uJ:>10.4f}")
    print("-" * len(head))
    tot = ne.components_uJ
    print(f"{'total':<22} {ne.macs:>10,} " + " ".join(f"{tot[c]:>{cw[c]}.4f}" for c in comps) +
          f" {ne.total_uJ:>10.4f}")
    print(f"total energy        {ne.total_uJ:.3f} uJ/image "
          f"({ne.total_uJ * 1e6 / ne.macs:.3f} pJ/MAC)")
    print(f"weight memory       {ne.weight_memory_uJ:.3f} uJ ({ne.weight_share * 100:.1f}% "
          f"of total) at {ne.v_nominal:g} V  [{', '.join(c for c in comps if c in wm)}]")
    if "scaled" in out:
        s = out["scaled"]
        print(f"at {s['voltage']:g} V       weight memory {s['weight_memory_uJ']:.3f} uJ, "
              f"total {s['total_uJ']:.3f} uJ ({(1 - s['total_uJ'] / ne.total_uJ) * 100:.1f}% "
              f"saving), BER {s['ber']:.3g}")
    return 0


def _domain_voltages(args) -> tuple[dict, float | None]:
    """({domain: V}, arch tech_node) from --domain (and --voltage for every weight-holding
    domain), each domain named once and its voltage checked against that domain's range."""
    from hwsim.accelforge_backend import load_arch
    info = load_arch(args.arch, False)[1]
    doms = {d.name: d for d in info.domains}
    volts = {}
    if args.voltage is not None:
        volts = {n: args.voltage for n, d in doms.items() if "weight" in d.holds}
    for name, v in args.domain or []:
        if name not in doms:
            raise ConfigError(f"--domain {name}={v:g}: no domain {name!r} in {args.arch}; "
                              f"valid: {', '.join(doms)}")
        if name in volts:
            raise ConfigError(f"--domain {name}={v:g}: domain {name!r} is given twice "
                              "(--domain, or --voltage for the weight domains)")
        volts[name] = doms[name].check(v, f"--domain {name}")
    return volts, info.tech_node


def _print_priced(args, name, bits, ne, out, volts, node) -> int:
    """The per-domain table and both savings (--domain / --protection)."""
    from hwsim.domain_energy import price
    from hwsim.domains import warn_tech_node

    r = price(ne, volts, args.protection, ber_target=args.errorfree_ber)
    out["priced"] = r
    if args.json:
        print_json(out)
        return 0
    warn_tech_node(node, [d for d in ne.domains if d.name in volts])
    print(f"{name}: {bits}-bit weights, {args.act_bits}-bit activations on {args.arch} "
          f"(energy per image, uJ)")
    head = (f"{'domain':<14} {'V':>6} {'V_nom':>6} {'BER':>9} {'protection':>10} "
            f"{'nominal':>10} {'scaled':>10} {'codec':>8}  components")
    print(head)
    print("-" * len(head))
    for dname, d in r["domains"].items():
        print(f"{dname[:14]:<14} {d['voltage']:>6.3f} {d['v_nominal']:>6.3f} {d['ber']:>9.3g} "
              f"{d['protection']:>10} {d['nominal_uJ']:>10.4f} {d['uJ']:>10.4f} "
              f"{d['codec_uJ']:>8.4f}  {', '.join(d['components'])}")
    print(f"{'outside domains':<14} {'':>6} {'':>6} {'':>9} {'':>10} {r['rest_uJ']:>10.4f} "
          f"{r['rest_uJ']:>10.4f}")
    print("-" * len(head))
    print(f"total energy        {r['total_uJ']:.3f} uJ/image (nominal {r['nominal_uJ']:.3f})")
    print(f"saving vs nominal   {r['saving_vs_nominal'] * 100:.2f}%")
    ef = ", ".join(f"{n} {r['domains'][n]['errorfree_voltage']:.3f} V" for n in volts)
    print(f"saving vs error-free {r['saving_vs_errorfree'] * 100:.2f}% (baseline "
          f"{r['errorfree_uJ']:.3f} uJ: BER <= {args.errorfree_ber:g} at {ef or 'nominal'})")
    return 0
