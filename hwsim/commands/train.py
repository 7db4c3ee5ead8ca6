"""`hwsim train`: train a (quantized) network; resumable, seeded."""
from __future__ import annotations

from pathlib import Path

from hwsim.models.data import DATASETS
from hwsim.models.device import TRAIN_PRECISIONS
from hwsim.models.networks import NETWORKS
from hwsim.models.quant import QUANTIZERS
from hwsim.models.train import TrainConfig, train
from hwsim.models.errors import ConfigError
from hwsim.models.usercode import is_spec

from .common import (add_device, add_seed, add_threads, apply_threads, number, out_file,
                     parse_params)

# paper App. B.2 for CIFAR; a short recipe that reaches >98% on digits in seconds
DEFAULTS = {"digits": dict(epochs=15, batch_size=64, lr=0.05),
            "cifar10": dict(epochs=200, batch_size=128, lr=0.1)}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a network (float or quantized, optional BFN)",
                       description="Train a network; writes OUT after every epoch (resumable) "
                                   "and appends one JSON line per epoch to OUT.log.")
    p.add_argument("--model", default="small_cnn", metavar="MODEL",
                   help=f"{', '.join(NETWORKS.names())} (default small_cnn), "
                        "path/to/file.py:factory (imports and runs that file: your own code; "
                        "the checkpoint records the file, which must stay there to reload it), "
                        "torchvision:NAME or timm:NAME (random init)")
    p.add_argument("--data", default="digits", metavar="DATA",
                   help=f"{', '.join(DATASETS)} (default digits) or path/to/file.py:factory "
                        "returning (train, test) data sets (DataLoaders, Datasets of (x, y) "
                        "or (x, y) tensor pairs; used as given, unnormalised)")
    p.add_argument("--data-root", help="CIFAR-10 folder or .tar.gz (not needed for digits)")
    p.add_argument("--quantizer", default="float", choices=["float"] + QUANTIZERS.names())
    p.add_argument("--bits", type=number(int, 2, 8), default=4,
                   help="weight bits, 2..8 (default 4)")
    p.add_argument("--layer-bits", metavar="LAYER=BITS,...",
                   help="per-layer weight bits overriding --bits (mixed precision), module "
                        "paths, e.g. features.0=8,fc=8; recorded in the checkpoint")
    p.add_argument("--bfn-rate", type=number(float, 0, 0.5), default=0.0,
                   help="bit-flip noise training rate p_o (paper: 5e-3; default off)")
    p.add_argument("--act-bfn-rate", type=number(float, 0, 0.5), default=0.0,
                   help="bit-flip noise on the 8-bit activations at the inputs of quantized "
                        "layers while training (companion of activation faults; default off)")
    p.add_argument("--adv-flips", type=number(int, 1),
                   help="adversarial training with BFA in the loop (paper App. E): K bits "
                        "flipped by BFA on each batch once the loss is below "
                        "--adv-start-loss, the faulty pass's gradients (clipped to "
                        "+/- --adv-clip) added to the clean ones (paper: K = 2, 5, 10; "
                        "default off)")
    p.add_argument("--adv-start-loss", type=number(float, 0, lo_open=True), default=1.75,
                   help="running training loss below which --adv-flips starts (default 1.75)")
    p.add_argument("--adv-clip", type=number(float, 0, lo_open=True), default=0.05,
                   help="elementwise clip of the faulty pass's gradients (default 0.05)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="quantizer hyper-parameter, e.g. c=0.1 (plclip), weight_decay_a=0.01 "
                        "or init=ber_mse, grad_scale=1, estimator=pwl|mad (wcat); repeatable")
    p.add_argument("--epochs", type=number(int, 1),
                   help="default: 15 digits and user data, 200 cifar10")
    p.add_argument("--batch-size", type=number(int, 1),
                   help="default: 64 digits and user data, 128 cifar10")
    p.add_argument("--lr", type=number(float, 0, lo_open=True),
                   help="initial lr of the cosine schedule (default: 0.05 digits and user "
                        "data, 0.1 cifar10)")
    p.add_argument("--momentum", type=number(float, 0, 1), default=0.9,
                   help="SGD momentum in [0, 1] (default 0.9)")
    p.add_argument("--no-nesterov", action="store_true", help="plain momentum, not Nesterov")
    p.add_argument("--weight-decay", type=number(float, 0), default=5e-4,
                   help="L2 weight decay (default 5e-4)")
    add_seed(p)
    p.add_argument("--init-from", help="checkpoint whose weights start training (fine-tuning)")
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--resume", action="store_true", help="continue OUT if it exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step: ~1.2x faster for float ResNets on "
                        "CPU after ~20 s of compilation; not with --bfn-rate")
    p.add_argument("--precision", choices=tuple(TRAIN_PRECISIONS), default="fp32",
                   help="bf16: forward pass under bfloat16 autocast (weights, optimizer and "
                        "evaluation stay float32); ~1.5-1.8x faster ResNet-20 steps on CPUs "
                        "with AVX512-BF16 (default fp32)")
    add_threads(p)
    add_device(p)
    p.set_defaults(func=run)


def parse_layer_bits(text: str | None) -> dict | None:
    """'conv1=8,fc=8' -> {'conv1': 8, 'fc': 8} (None when not given)."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, eq, bits = item.strip().partition("=")
        if not eq or not name or not bits.strip().isdigit() or not 2 <= int(bits) <= 8:
            raise ConfigError(f"--layer-bits {item.strip()!r}: expected LAYER=BITS with bits "
                              "2..8, e.g. features.0=8,fc=8")
        out[name.strip()] = int(bits)
    return out


def run(args) -> int:
    apply_threads(args)
    if args.model not in NETWORKS and not is_spec(args.model):
        raise ConfigError(f"--model {args.model!r}: valid: {', '.join(NETWORKS.names())}, "
                          "path/to/file.py:factory, torchvision:NAME, timm:NAME")
    if args.data not in DATASETS and not is_spec(args.data):
        raise ConfigError(f"--data {args.data!r}: valid: {', '.join(DATASETS)}, "
                          "path/to/file.py:factory")
    d = DEFAULTS.get(args.data, DEFAULTS["digits"])  # user data: the short recipe
    out_file(args.out)
    pick = lambda given, key: d[key] if given is None else given  # 0 is refused, not replaced
    cfg = TrainConfig(
        model=args.model, data=args.data, data_root=args.data_root,
        quantizer=None if args.quantizer == "float" else args.quantizer, bits=args.bits,
        bfn_rate=args.bfn_rate, quantizer_params=parse_params(args.param),
        epochs=pick(args.epochs, "epochs"), batch_size=pick(args.batch_size, "batch_size"),
        lr=pick(args.lr, "lr"), momentum=args.momentum, nesterov=not args.no_nesterov,
        weight_decay=args.weight_decay, seed=args.seed, init_from=args.init_from,
        layer_bits=parse_layer_bits(args.layer_bits), act_bfn_rate=args.act_bfn_rate,
        adv_flips=args.adv_flips or 0, adv_start_loss=args.adv_start_loss,
        adv_clip=args.adv_clip)
    log_path = Path(args.out + ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    ck = train(cfg, args.out, resume=args.resume, progress=not args.no_progress, log=log,
               compile=args.compile, device=args.device, precision=args.precision)
    last = ck["history"][-1] if ck and ck["history"] else {}
    print(f"checkpoint: {args.out}  test accuracy: {last.get('test_acc', float('nan')):.4f}")
    return 0
