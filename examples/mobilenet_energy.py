"""torchvision MobileNetV2 (random init, 10 classes, 32x32 inputs): per-layer fault
sensitivity of its 4-bit WCAT-quantized weights (depthwise convs included) and, with
--energy, its energy per inference on the Eyeriss-derived arch.

    .venv/bin/python examples/mobilenet_energy.py              (~40 s: sensitivity only)
    .venv/bin/python examples/mobilenet_energy.py --energy     (first run ~5 min: AccelForge
                                                                maps 31 new layer shapes)

The network is untrained, so sensitivity is measured against its own fault-free
predictions: the fraction of 16 random images whose predicted class survives the bit errors
of one layer. CI runs it without --energy (see docs/api.md).
"""
import argparse

import torch
import torchvision

from hwsim import api as hw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--energy", action="store_true",
                    help="also compute the energy (maps uncached layer shapes: ~5 min once)")
    ap.add_argument("--ber", type=float, default=1e-2, help="bit error rate (default 1e-2)")
    ap.add_argument("--realizations", type=int, default=2, help="per layer (default 2)")
    ap.add_argument("--images", type=int, default=16, help="random inputs (default 16)")
    ap.add_argument("--top", type=int, default=10, help="layers to print (default 10)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    net = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    hw.quantize(net, "wcat", bits=4)  # 52 convs (17 depthwise) + the classifier
    x = torch.randn(args.images, 3, 32, 32)
    y = net.eval()(x).argmax(1)  # agreement with the fault-free network
    t = hw.layer_sensitivity(net, (x, y), ber=args.ber, realizations=args.realizations)
    print(f"MobileNetV2, 4-bit WCAT, BER {args.ber:g}: predictions kept when only one "
          f"layer's bits flip ({len(t)} layers, most sensitive first)")
    print(t.head(args.top).to_string(index=False))
    if args.energy:
        e = hw.energy(net, arch="eyeriss_sram", input_shape=(3, 32, 32), progress=True)
        print(f"energy per inference {e.total_uJ:.2f} uJ, weight memory "
              f"{e.weight_memory_uJ:.2f} uJ ({e.weight_share:.1%}), {e.macs:,} MACs")
        for layer in e.layers[:args.top]:
            print(f"  {layer.name:<28} groups {layer.shape.groups:>4}  {layer.total_uJ:8.4f} uJ")


if __name__ == "__main__":
    main()
