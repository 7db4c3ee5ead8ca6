"""The table of final_eval.sh: for each `hwsim eval --paired-with` JSON (A = a study
checkpoint, B = the 300-epoch WCAT+BFN) clean and BER 1% accuracy of both sides, B - A paired,
and issue 21 item 3's targets for B: clean >= 90.5%, drop at BER 1% <= 4 points, ahead of
PLClip at BER 1% (paired 95% CI above 0).
Usage: python final_table.py A-vs-B.json ... > table.md"""
from __future__ import annotations

import json
import sys

CLEAN_TARGET, DROP_TARGET = 0.905, 0.04


def row(doc: dict) -> str:
    a, b, d = doc, doc["paired_with"], doc["paired_difference"]
    trained = b.get("epochs_trained")
    epochs = f" ({trained} of {b.get('epochs_planned')} epochs)" if trained else ""
    return (f"| {a['method']} vs scratch {b['method']}{epochs} | {a['clean'] * 100:.2f} / "
            f"{b['clean'] * 100:.2f} | {a['mean'] * 100:.2f} ± {a['std'] * 100:.2f} | "
            f"{b['mean'] * 100:.2f} ± {b['std'] * 100:.2f} | {d['mean'] * 100:+.2f} ± "
            f"{d['ci95'] * 100:.2f} | {d['wilcoxon_p']:.2g} | "
            f"{'yes' if d.get('same_patterns') else 'NO'} |")


def targets(docs: list[dict]) -> list[str]:
    b = docs[0]["paired_with"]
    drop = b["clean"] - b["mean"]
    out = [f"- clean >= {CLEAN_TARGET * 100:.1f}%: {b['clean'] * 100:.2f}% -> "
           f"{'met' if b['clean'] >= CLEAN_TARGET else 'not met'}",
           f"- drop at BER 1% <= {DROP_TARGET * 100:.0f} points: {drop * 100:.2f} -> "
           f"{'met' if drop <= DROP_TARGET else 'not met'}"]
    for doc in docs:
        if doc["method"].startswith("plclip"):
            d = doc["paired_difference"]
            low = d["mean"] - d["ci95"]
            verdict = ("met" if low > 0 else "not met" if d["mean"] + d["ci95"] < 0
                       else "not shown (the CI contains 0)")
            out.append(f"- ahead of {doc['method']} at BER 1%: {d['mean'] * 100:+.2f} ± "
                       f"{d['ci95'] * 100:.2f} points -> {verdict}")
    return out


def main(paths: list[str]) -> str:
    docs = [json.loads(open(p).read()) for p in paths]
    if not docs:
        raise SystemExit("final_table.py: give the JSON files of final_eval.sh")
    lines = ["| pair (A vs B) | clean % A / B | BER 1% A (mean ± std) | BER 1% B | B − A, "
             "points (95% CI) | Wilcoxon p | same flips |", "|---|---|---|---|---|---|---|"]
    lines += [row(d) for d in docs]
    return "\n".join(lines + ["", "Targets (issue 21 item 3) for B:"] + targets(docs)) + "\n"


if __name__ == "__main__":
    print(main(sys.argv[1:]), end="")
