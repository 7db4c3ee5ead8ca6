"""`hwsim ber`: voltage <-> bit error rate, and `hwsim ber fit FILE.csv`."""
from __future__ import annotations

from hwsim.ber import BerModel, check_voltage, fit_ber, read_ber_csv
from hwsim.models.errors import ConfigError

from .common import out_file, print_json


def add_ber_model(p) -> None:
    p.add_argument("--ber-model", metavar="FILE",
                   help="BER model YAML from `hwsim ber fit` (default: paper eq. 11)")


def register(sub) -> None:
    p = sub.add_parser("ber", help="voltage <-> bit error rate; `ber fit FILE.csv`",
                       description="eps(V) = min(exp(a + bV + cV^2), 0.5). Give --voltage or "
                                   "--rate, or `hwsim ber fit FILE.csv [--out model.yaml]`.")
    p.add_argument("action", nargs="?", choices=["fit"], help="fit a model to measurements")
    p.add_argument("csv", nargs="?", help="with fit: CSV with columns voltage, ber")
    p.add_argument("--voltage", type=float, help="supply voltage in V -> bit error rate")
    p.add_argument("--rate", type=float, help="bit error rate -> supply voltage")
    p.add_argument("--linear", action="store_true", help="with fit: force c = 0")
    p.add_argument("--out", default="ber_model.yaml", help="with fit: YAML to write")
    add_ber_model(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.action == "fit":
        if not args.csv:
            raise ConfigError("usage: hwsim ber fit FILE.csv [--out model.yaml]")
        out_file(args.out)
        v, e = read_ber_csv(args.csv)
        model, stats = fit_ber(v, e, quadratic=not args.linear)
        model.save(args.out, fit=dict(stats, data=str(args.csv)))
        if args.json:
            print_json({"a": model.a, "b": model.b, "c": model.c, **stats, "out": args.out})
        else:
            print(f"fit: a = {model.a:.6g}, b = {model.b:.6g}, c = {model.c:.6g}")
            print(f"points used {stats['points_used']} (saturated, ignored: "
                  f"{stats['points_saturated']}); RMSE of log(ber) {stats['rmse_log']:.4g}, "
                  f"R^2 {stats['r2_log']:.4f}")
            print(f"wrote {args.out}  (use it with --ber-model {args.out})")
        return 0
    if (args.voltage is None) == (args.rate is None):
        raise ConfigError("give exactly one of --voltage V or --rate P (or `fit FILE.csv`)")
    model = BerModel.load(args.ber_model)
    if args.voltage is not None:
        check_voltage(args.voltage, "--voltage")
        out = {"voltage": args.voltage, "ber": model.ber(args.voltage)}
    else:
        out = {"ber": args.rate, "voltage": model.voltage(args.rate)}
    if args.json:
        print_json(out)
    else:
        print(f"V = {out['voltage']:.4f} V  <->  BER = {out['ber']:.4g}")
    return 0
