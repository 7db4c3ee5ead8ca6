"""BFA N_flip comparisons of this folder's attacks.json (stop < 11%): each method against normal,
WCAT+BFN against each other method but normal, and each method against itself at 4 bits (the
4-bit checkpoints under the same protocol: ../resnet20_bfa_protocol/, seeds 0-9, their count
at < 11%). hwsim.models.attacks.compare_nflip: one-sided Mann-Whitney U and Welch t.
Reads result files only.  Usage: python compare.py"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from hwsim.models.attacks import compare_nflip, comparison_line  # noqa: E402

FOUR_BIT = HERE.parent / "resnet20_bfa_protocol"


def main() -> None:
    eight = json.loads((HERE / "attacks.json").read_text())
    four = {m: json.loads((FOUR_BIT / f"{m.replace('+', '_')}.json").read_text())
            for m in eight}
    pairs = [("normal", m) for m in eight if m != "normal"] if "normal" in eight else []
    if "wcat+bfn" in eight:  # the paper's method against each other quantizer
        pairs += [(m, "wcat+bfn") for m in eight if m not in ("normal", "wcat+bfn")]
    for a, b in pairs:
        print(comparison_line(compare_nflip(eight[a]["n_flips"], eight[b]["n_flips"],
                                            f"{a} 8-bit", f"{b} 8-bit")))
    for m, r in eight.items():
        assert four[m]["seeds"] == r["seeds"], "4- and 8-bit attacks on different seeds"
        print(comparison_line(compare_nflip(four[m]["n_flips_lt11"], r["n_flips"],
                                            f"{m} 4-bit", f"{m} 8-bit")))


if __name__ == "__main__":
    main()
