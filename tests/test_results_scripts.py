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


def _script(name: str, here: Path = SCRATCH):
    spec = importlib.util.spec_from_file_location(name, here / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _final_table():
    return _script("final_table")


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


def _log(path: Path, rows: list[tuple]) -> None:
    path.write_text("".join(json.dumps(dict(
        {"epoch": e, "test_acc": acc, "train_acc": acc + 0.05, "seconds": s},
        **({"precision": p} if p else {}))) + "\n" for e, acc, s, p in rows))


def test_budget_table_final_and_running_rows_and_seconds_per_precision(tmp_path, capsys):
    mod = _script("budget")
    mod.HERE, mod.STUDY_FLOAT = tmp_path, tmp_path / "study" / "float.pt.log"
    mod.STUDY_FLOAT.parent.mkdir()
    _log(mod.STUDY_FLOAT, [(39, 0.80, 100, None), (40, 0.8751, 90, None)])
    _log(tmp_path / "float.e100.pt.log", [(1, 0.45, 110, "bf16"), (2, 0.60, 72, "bf16"),
                                          (3, 0.65, 75, "bf16")])
    _log(tmp_path / "wcat_bfn.pt.log", [(1, 0.3, 166, None), (2, 0.4, 170, None),
                                        (299, 0.86, 68, "bf16"), (300, 0.8702, 66, "bf16")])
    (tmp_path / "notes.log").write_text("not a run\n")
    mod.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:] == [
        "| float | 40 | 40 | 87.51 | 92.51 | 100 |",  # median of [90, 100]: the upper one
        "| float | 100 | 3 (running) | 65.00 | 70.00 | 75 |",
        "| wcat_bfn | 300 | 300 | 87.02 | 92.02 | 170 (fp32), 68 (bf16) |",
        "| float (paper) | 300 | 300 | 92.60 | | |"]


def test_scratch_run_picks_fp32_on_a_cpu_without_native_bfloat16():
    """run.sh's default precision: bf16 where the CPU has it (PYTHON's check exits 0), fp32
    with a note where it does not (emulated bf16 was 11x slower); PRECISION and a GPU win."""
    def run(**env):
        r = subprocess.run(["bash", str(SCRATCH / "run.sh"), "float"], capture_output=True,
                           text=True, env={"PATH": "/usr/bin:/bin", "HWSIM": "echo", **env})
        assert r.returncode == 0, r.stderr
        return r.stdout, r.stderr
    out, err = run(PYTHON="false")
    assert "--precision fp32" in out and "--compile" in out
    assert "no native bfloat16 on this CPU: PRECISION=fp32" in err
    assert "--precision bf16" in run(PYTHON="true")[0]
    assert "--precision bf16" in run(PYTHON="false", PRECISION="bf16")[0]
    out, err = run(PYTHON="false", DEVICE="cuda")
    assert "--device cuda" in out and "--precision bf16" in out and "--compile" not in out
    assert err == ""


SENSITIVITY = ROOT / "studies/results/resnet20_cifar10/sensitivity"


def test_sensitivity_tables_are_what_their_scripts_make_of_the_committed_results():
    """table.md from the committed JSON (sensitivity.py's table), clamp.md from the paired
    JSONs and the three checkpoints (clamp_table.py): no hand edits, no drift."""
    doc = json.loads((SENSITIVITY / "sensitivity.plclip_bfn-vs-wcat_bfn.json").read_text())
    table = _script("sensitivity", SENSITIVITY).table(doc)
    assert table == (SENSITIVITY / "table.md").read_text().rstrip("\n")
    assert "| sum over layers (± 1 SE) | | | | | | | | 0.52 ± 0.32 | 4.21 ± 0.34 | +3.69 |" \
        in table
    clamp = _script("clamp_table", SENSITIVITY).main()
    assert clamp == (SENSITIVITY / "clamp.md").read_text().rstrip("\n")
    assert "| wcat+bfn | 87.02 / 86.48 | 81.82 ± 1.70 | 82.64 ± 1.66 | +0.82 ± 0.53 | 0.009 |" \
        in clamp


def test_ablation_table_is_what_its_script_makes_of_the_committed_results(capsys):
    """resnet20_ablation/table.md from at_ber.json, results.csv and the rows' checkpoints, with
    Table 1's grid (grad scale x lambda, BER 1% ± CI (clean)); a row not run reads '-'."""
    here = ROOT / "studies/results/resnet20_ablation"
    mod = _script("table", here)
    mod.main()
    out = capsys.readouterr().out
    assert out.rstrip("\n") == (here / "table.md").read_text().rstrip("\n")
    assert "| 1/√N | 56.86 ± 3.75 (86.81) | 59.20 ± 4.10 (87.30) | " \
        "81.24 ± 0.89 (87.02) |" in out
    assert "| gs1-l0.01 | 4 | 87.04 | 85.92 ± 0.35 (10) | 64.52 ± 6.92 (20) (±3.24) | 22.52 " \
        "| 0.46 | fp32 | 3.60 | 0.255 |" in out
    one = {"gs1-l0.0005": {"0.01": {"mean": 0.5, "ci95": 0.01, "clean": 0.9}}}
    assert mod.grid(one).splitlines()[2:] == ["| 1 | 50.00 ± 1.00 (90.00) | - | - |",
                                              "| 1/√N | - | - | - |"]


def test_8bit_bfa_comparisons_are_what_their_script_makes_of_the_committed_attacks(capsys):
    """resnet20_8bit/compare.md from attacks.json and the 4-bit protocol run's files: each
    8-bit method against normal 8-bit and against itself at 4 bits (same seeds)."""
    here = ROOT / "studies/results/resnet20_8bit"
    _script("compare", here).main()
    out = capsys.readouterr().out
    assert out.rstrip("\n") == (here / "compare.md").read_text().rstrip("\n")
    assert "does normal 8-bit raise N_flip over normal 4-bit: 11.9 +/- 4.8 -> 11.6 +/- 4.3 " \
        "(10 vs 10 seeds)" in out


def test_8bit_table_is_what_its_script_makes_of_the_committed_results(capsys):
    """resnet20_8bit/table.md (the README's table) from the committed results of both widths:
    each 8-bit row run so far, then the same methods at 4 bits with V_min read on the 8-bit
    study's 0.04 V grid (normal+bfn 4-bit: 0.44 V on its own 0.02 V grid, 0.46 V on this)."""
    here = ROOT / "studies/results/resnet20_8bit"
    _script("table", here).main()
    out = capsys.readouterr().out
    assert out.rstrip("\n") == (here / "table.md").read_text().rstrip("\n")
    assert out.rstrip("\n") in (here / "README.md").read_text()  # the README shows this table
    assert "| normal | 8 | 87.79 | 82.93 ± 2.71 (20) | 25.44 ± 7.99 (20) (±3.74) | 62.35 | 0.46 " \
        "| 12.07 | 0.425 | 11.6 ± 4.3 |" in out
    assert "| *normal+bfn, 4-bit* | 4 | 86.66 | 84.79 ± 0.78 (10) | 49.57 ± 9.76 (20) (±4.57) " \
        "| 37.09 | 0.46 | 20.79 | 0.497 | 17.3 ± 4.8 |" in out
