"""`hwsim clip-range`: the optimal clipping range vs bit error rate (WCAT paper App. A, Fig. 10).

  hwsim clip-range --out studies/results/fig10_alpha [--bits 4] [--seed 0] [--realizations 50]

Writes into --out: alpha_star.csv (alpha* of eq. 10 vs BER for N(0,1), U(-1,1), Laplace(0,1),
von Mises(0,4) and the digits MLP's own weights; the MLP's Monte Carlo optima), mlp_mc.csv
(the MLP's accuracy and loss for every shared range and BER), mlp_float.pt (the float MLP,
trained here, seeded), report.html (plotly, loading the plotly.min.js of the folder above
when it matches, as study reports do) and README.md (the command, seed and versions).
"""
from __future__ import annotations

import html
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.models.errors import ConfigError

from .common import add_seed, add_threads, apply_threads, number

DIST_BERS = [0.0] + [float(f"{b:.3g}") for b in np.logspace(-5, -1, 17)]
MLP_BERS = [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
MLP_ALPHAS = [float(a) for a in np.arange(0.5, 6.001, 0.25)]  # units of each layer's std
RECIPE = dict(model="mlp", data="digits", epochs=15, batch_size=64, lr=0.05)  # digits_mlp.yaml


def register(sub) -> None:
    p = sub.add_parser("clip-range", help="optimal clipping range vs bit error rate (paper "
                                          "App. A, Fig. 10): CSV + HTML report",
                       description="alpha* of eq. 10 (expected MSE under bit errors) vs BER "
                                   "for four weight densities, and the digits MLP's best "
                                   "shared range by Monte Carlo.")
    p.add_argument("--out", required=True, help="output folder (e.g. studies/results/fig10_alpha)")
    p.add_argument("--bits", type=number(int, 2, 8), default=4, help="weight bits (default 4)")
    p.add_argument("--realizations", type=number(int, 1), default=50,
                   help="bit-error realizations per MLP point (default 50)")
    add_seed(p, help="seed of the MLP's training and of the flips, an integer >= 0 (default 0)")
    add_threads(p)
    p.set_defaults(func=run)


def distribution_rows(bits: int, bers=None) -> list[dict]:
    """alpha* of eq. 10 for each shipped density and BER (default DIST_BERS)."""
    from hwsim.models.clipping import DISTRIBUTIONS, optimal_alpha
    rows = []
    for d in DISTRIBUTIONS.values():
        for b in DIST_BERS if bers is None else bers:
            a, mse = optimal_alpha(d, bits, b)
            rows.append({"source": d.name, "label": d.label, "criterion": "expected_mse",
                         "ber": b, "alpha_star": a, "alpha_star_over_std": a / d.std,
                         "value": mse})
    return rows


def mlp_rows(model, test, bits: int, realizations: int, seed: int):
    """(alpha* rows of the MLP: eq. 10 on its pooled std-normalized weights, and the Monte
    Carlo optima by loss and by accuracy; the Monte Carlo grid as a DataFrame)."""
    from hwsim.models.clipping import optimal_range, pooled_normalized_weights, shared_range_mc
    w = pooled_normalized_weights(model)
    rows = []
    for b in DIST_BERS:
        a, mse = optimal_range(w, bits, b)
        rows.append({"source": "mlp", "label": "digits MLP weights (eq. 10)",
                     "criterion": "expected_mse", "ber": b, "alpha_star": a,
                     "alpha_star_over_std": a, "value": mse})
    grid = pd.DataFrame(shared_range_mc(model, test, bits, MLP_BERS, MLP_ALPHAS, realizations,
                                        seed))
    for b, g in grid.groupby("ber", sort=True):
        lo = g.loc[g["loss_mean"].idxmin()]
        hi = g[g["acc_mean"] == g["acc_mean"].max()]  # ties: the middle of the best alphas
        rows.append({"source": "mlp", "label": "digits MLP, Monte Carlo (min loss)",
                     "criterion": "mc_loss", "ber": b, "alpha_star": lo["alpha"],
                     "alpha_star_over_std": lo["alpha"], "value": lo["loss_mean"]})
        rows.append({"source": "mlp", "label": "digits MLP, Monte Carlo (max accuracy)",
                     "criterion": "mc_accuracy", "ber": b,
                     "alpha_star": float(hi["alpha"].median()),
                     "alpha_star_over_std": float(hi["alpha"].median()),
                     "value": float(hi["acc_mean"].iloc[0])})
    return rows, grid


def figures(stars: pd.DataFrame, grid: pd.DataFrame, bits: int) -> list:
    """alpha* vs BER of the densities; the MLP's (std units); its accuracy vs alpha per BER."""
    import plotly.graph_objects as go
    pos = stars[stars["ber"] > 0]
    f1 = go.Figure()
    for label, g in pos[pos["source"] != "mlp"].groupby("label", sort=False):
        f1.add_trace(go.Scatter(x=g["ber"], y=g["alpha_star"], mode="lines+markers", name=label))
    f1.update_layout(title=f"alpha* of eq. 10 vs bit error rate, {bits}-bit (paper Fig. 10)",
                     xaxis_title="bit error rate", yaxis_title="alpha* (optimal range)")
    f2 = go.Figure()
    for label, g in pos[pos["label"].isin(["N(0,1)"]) | (pos["source"] == "mlp")].groupby(
            "label", sort=False):
        mc = g["criterion"].iloc[0] != "expected_mse"
        f2.add_trace(go.Scatter(x=g["ber"], y=g["alpha_star_over_std"], name=label,
                                mode="markers" if mc else "lines",
                                marker=dict(size=9) if mc else None))
    f2.update_layout(title="digits MLP: best shared range (alpha x each layer's std) vs BER",
                     xaxis_title="bit error rate", yaxis_title="alpha* / std")
    f3 = go.Figure()
    for b, g in grid.groupby("ber", sort=True):
        f3.add_trace(go.Scatter(x=g["alpha"], y=100 * g["acc_mean"], mode="lines+markers",
                                name=f"BER {b:g}"))
    f3.update_layout(title="digits MLP: accuracy vs shared range (Monte Carlo mean)",
                     xaxis_title="alpha (units of each layer's weight std)",
                     yaxis_title="accuracy (%)")
    for f in (f1, f2):
        f.update_xaxes(type="log")
    return [f1, f2, f3]


def write_outputs(out: Path, stars: pd.DataFrame, grid: pd.DataFrame, bits: int,
                  command: str, notes: str) -> None:
    """alpha_star.csv, mlp_mc.csv, report.html, README.md (atomically, each)."""
    from hwsim.files import write_text_atomic
    from hwsim.report import plotly_js_src
    from hwsim.study import _versions
    write_text_atomic(out / "alpha_star.csv", stars.to_csv(index=False))
    write_text_atomic(out / "mlp_mc.csv", grid.to_csv(index=False))
    parts = [f"<h1>Optimal clipping range vs bit error rate ({bits}-bit)</h1>",
             f"<p>{html.escape(notes)}</p>", f"<p><code>{html.escape(command)}</code></p>"]
    for i, fig in enumerate(figures(stars, grid, bits)):
        fig.update_layout(template="plotly_white", height=480)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig{i}"))
    zero = stars[stars["ber"] == 0][["label", "criterion", "alpha_star", "alpha_star_over_std"]]
    parts.append("<h2>BER 0 (not on the log axes)</h2>" + zero.to_html(index=False, border=0))
    src = html.escape(plotly_js_src(out / "report.html", out.parent))
    write_text_atomic(out / "report.html", (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>hwsim clip-range</title>"
        f"<script src=\"{src}\" charset=\"utf-8\"></script><style>body{{font-family:"
        "sans-serif;margin:2em}</style></head><body>" + "\n".join(parts) + "</body></html>"))
    from hwsim.models.clipping import DISTRIBUTIONS
    stds = ", ".join(f"{d.label}: std {d.std:.3f}" for d in DISTRIBUTIONS.values())
    show = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
    table = stars[stars["ber"].isin(show)].pivot_table(
        index="label", columns="ber", values="alpha_star_over_std", sort=False)
    lines = ["| alpha* / std | " + " | ".join(f"BER {b:g}" for b in table.columns) + " |",
             "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {lab} | " + " | ".join(f"{v:.3f}" for v in row) + " |"
              for lab, row in table.iterrows()]
    write_text_atomic(out / "README.md", f"""# Optimal clipping range vs bit error rate (App. A, Fig. 10)

- Command: `{command}`
- Versions: {_versions()}
- {notes}

alpha* in units of the weights' standard deviation ({stds}; the MLP: each layer's own;
absolute values in alpha_star.csv):

{chr(10).join(lines)}

Files: alpha_star.csv (every BER), mlp_mc.csv (the Monte Carlo grid), report.html,
mlp_float.pt (the float MLP).
""")


def run(args) -> int:
    apply_threads(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out!r} is a file; give a folder")
    from hwsim.models.checkpoint import load_checkpoint
    from hwsim.models.data import load_dataset
    from hwsim.models.train import TrainConfig, train
    data = load_dataset("digits", None)
    out.mkdir(parents=True, exist_ok=True)
    ck = out / "mlp_float.pt"
    train(TrainConfig(seed=args.seed, **RECIPE), ck, resume=True, progress=False,
          log=lambda s: None, data=data)
    model, _ = load_checkpoint(ck)
    print("alpha* of eq. 10 for the four densities ...", file=sys.stderr)
    rows = distribution_rows(args.bits)
    print("digits MLP: eq. 10 and Monte Carlo ...", file=sys.stderr)
    mlp, grid = mlp_rows(model, data[1], args.bits, args.realizations, args.seed)
    stars = pd.DataFrame(rows + mlp)
    command = (f"hwsim clip-range --out {shlex.quote(str(out))} --bits {args.bits} --seed "
               f"{args.seed} --realizations {args.realizations}")
    notes = (f"{args.bits}-bit symmetric quantizer (Q = {2 ** (args.bits - 1) - 1}), i.i.d. "
             f"bit flips of the stored two's-complement integers. Densities: expectation by "
             f"midpoint quadrature, alpha* by grid search refined by bounded Brent. digits "
             f"MLP (64-100-10, float, {RECIPE['epochs']} epochs, seed {args.seed}, clean "
             f"accuracy {100 * float(grid[grid.ber == 0]['acc_mean'].max()):.2f}% at best "
             f"alpha): every layer's range = alpha x its weight std; {args.realizations} "
             f"realizations per BER > 0, the same flips for every alpha (seed {args.seed}).")
    write_outputs(out, stars, grid, args.bits, command, notes)
    for src, g in stars[stars["ber"].isin([0.0, 1e-3, 1e-2, 1e-1])].groupby("label", sort=False):
        print(f"{src:<40} " + "  ".join(f"BER {b:g}: {a:.3f}" for b, a in
                                         zip(g["ber"], g["alpha_star"])))
    print(f"wrote {out}/alpha_star.csv, mlp_mc.csv, report.html, README.md")
    return 0
