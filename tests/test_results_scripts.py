"""Scripts beside committed results that later sessions run on finished trainings."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "studies/results/resnet20_scratch"
PAIRED = ROOT / "studies/results/resnet20_cifar10/paired/plclip_bfn-vs-wcat_bfn.ber0.01.json"


def _final_table():
    spec = importlib.util.spec_from_file_location("final_table", SCRATCH / "final_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_final_table_reports_the_paired_numbers_and_the_targets(tmp_path):
    """On the study's PLClip+BFN vs WCAT+BFN fine-tune pair (paired/README.md: -1.27 +/- 0.52
    points, drop 5.20) every target reads 'not met'; a pair where B is ahead by more than its
    CI reads 'met', one whose CI holds 0 'not shown'."""
    doc = json.loads(PAIRED.read_text())
    text = _final_table().main([str(PAIRED)])
    assert "| plclip+bfn vs scratch wcat+bfn | 86.16 / 87.02 | 83.09 ± 0.92 | 81.82 ± 1.70 " \
           "| -1.27 ± 0.52 |" in text
    assert "clean >= 90.5%: 87.02% -> not met" in text
    assert "drop at BER 1% <= 4 points: 5.20 -> not met" in text
    assert "ahead of plclip+bfn at BER 1%: -1.27 ± 0.52 points -> not met" in text
    for mean, verdict in ((0.01, "-> met"), (0.002, "-> not shown (the CI contains 0)")):
        doc["paired_difference"]["mean"] = mean
        p = tmp_path / f"{mean}.json"
        p.write_text(json.dumps(doc))
        assert verdict in _final_table().main([str(p)]).splitlines()[-1]


def test_final_eval_refuses_an_unfinished_run(tmp_path):
    here = tmp_path / "studies/results/resnet20_scratch"
    here.mkdir(parents=True)
    shutil.copy(SCRATCH / "final_eval.sh", here)
    (here / "wcat_bfn.pt.log").write_text('{"epoch": 150, "lr": 0.05}\n')
    r = subprocess.run(["bash", str(here / "final_eval.sh")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "HWSIM": "false"})
    assert r.returncode == 2
    assert "wcat_bfn.pt has 150 of 300 epochs" in r.stderr
    assert not (here / "final").exists()
