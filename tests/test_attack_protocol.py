"""BFA as the WCAT paper states it: attack batch 64, both stop rules, N_flip significance test;
committed study results keep loading with their recorded settings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwsim.cli import main
from hwsim.models import load_checkpoint
from hwsim.models.attacks import (DEFAULT_ATTACK_BATCH, STOP_RULES, bfa_nflip, bfa_run,
                                  compare_nflip, comparison_line, random_nflip, stop_rule)
from hwsim.models.errors import ConfigError
from hwsim.study import _bfa_line, _bfn_md, bfn_comparisons
from hwsim.study_spec import load_study

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "studies" / "results" / "digits_quickstart"


@pytest.fixture(scope="module")
def normal(digits):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_checkpoint(QUICK / "checkpoints" / "normal.pt")[0]
    torch.set_num_threads(n)


def test_stop_rules_count_exactly():
    lt, le = STOP_RULES["lt11"], STOP_RULES["le10.1"]
    for n in (10, 99, 100, 111, 1000, 1733, 9936):
        for correct in range(0, n // 5):
            acc = correct / n
            assert (correct < lt.need(n, 10)) == (acc < 0.11), (n, correct)
            assert (correct < le.need(n, 10)) == (acc <= 0.101 + 1e-12), (n, correct)
    assert le.need(1000, 10) == 102  # 101 correct of 1000 is 10.1%: met
    assert lt.need(1000, 10) == 110 and lt.need(100, 10) == 11  # 11% is not < 11%
    with pytest.raises(ConfigError, match="valid: lt11, le10.1"):
        stop_rule("le10")


def test_compare_nflip_known_values():
    c = compare_nflip([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], "a", "b")
    assert c["p_mannwhitney"] == pytest.approx(1 / 252)  # exact: 1 of C(10,5) orderings
    assert c["mannwhitney_u"] == 25 and c["mean_b"] == 8 and c["std_a"] == pytest.approx(1.5811,
                                                                                        abs=1e-4)
    assert c["p_welch"] < 1e-3
    back = compare_nflip([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])
    assert back["p_mannwhitney"] > 0.99 and back["p_welch"] > 0.99
    same = compare_nflip([3, 3, 3], [3, 3, 3])
    assert same["p_welch"] == 1.0 and same["p_mannwhitney"] > 0.4
    assert "does b raise N_flip over a: 3.0 +/- 1.6 -> 8.0 +/- 1.6" in comparison_line(c)
    with pytest.raises(ConfigError, match=">= 2 seeds"):
        compare_nflip([1], [2, 3])


def test_le101_run_also_gives_the_lt11_count(normal, digits):
    test = digits[1]
    for seed in (0, 1):
        strict = bfa_run(normal, test, seed=seed, rule="le10.1")
        loose = bfa_run(normal, test, seed=seed)
        assert loose.extra["stop_rule"] == "lt11" and "n_flip_lt11" not in loose.extra
        assert strict.reached and loose.reached
        # the same search: the strict run passes the lt11 point at the same flip
        assert strict.extra["n_flip_lt11"] == loose.n_flip
        assert [f.index for f in strict.flips[:loose.n_flip]] == [f.index for f in loose.flips]
        assert strict.n_flip >= loose.n_flip
        assert strict.final_accuracy <= 0.101 + 1e-9 and loose.final_accuracy < 0.11
    assert DEFAULT_ATTACK_BATCH == 64  # the paper's App. B.4


def test_bfa_nflip_defaults_and_summary(normal, digits):
    r = bfa_nflip(normal, digits[1], seeds=2, rule="le10.1")
    assert r["attack_batch"] == 64 and r["stop_rule"] == "le10.1"
    assert r["threshold"] == pytest.approx(0.101)
    assert all(a >= b for a, b in zip(r["n_flips"], r["n_flips_lt11"]))
    assert r["n_flip_lt11_mean"] == pytest.approx(np.mean(r["n_flips_lt11"]))
    json.dumps(r)
    rand = random_nflip(normal, digits[1], seeds=1, step=200, rule="le10.1")
    assert rand["stop_rule"] == "le10.1" and rand["attack_batch"] == 64 and rand["reached"][0]


@pytest.mark.parametrize("attack", ["bfa", "tbfa"])
def test_cli_attack_out_resumes_per_seed(attack, tmp_path, capsys, monkeypatch):
    """`hwsim attack bfa|tbfa --out F` keeps finished seeds in F.partial.json: a run killed
    after two seeds, rerun, attacks only the third and writes what an uninterrupted run
    writes; partial files of other settings, or not such files, are started over."""
    import hwsim.models.attacks
    import hwsim.models.tbfa
    attacks = hwsim.models.attacks if attack == "bfa" else hwsim.models.tbfa
    ck = str(QUICK / "checkpoints" / "normal.pt")
    base = ["attack", attack, "--checkpoint", ck, "--seeds", "3", "--threads", "1",
            "--no-progress"] + (["--stop-rule", "le10.1"] if attack == "bfa" else
                                ["--source", "3", "--target", "8", "--max-flips", "40"])
    whole = tmp_path / "whole.json"
    assert main(base + ["--out", str(whole)]) == 0
    assert "N_flip" in capsys.readouterr().out
    ran, name = [], f"{attack}_run"
    real = getattr(attacks, name)

    def killed_at(seed):
        def run(*a, **k):
            ran.append(k["seed"])
            if k["seed"] == seed:
                raise KeyboardInterrupt
            return real(*a, **k)
        return run
    out = tmp_path / "out.json"
    monkeypatch.setattr(attacks, name, killed_at(2))
    assert main(base + ["--out", str(out)]) == 130  # interrupted
    part = json.loads((tmp_path / "out.json.partial.json").read_text())
    assert sorted(part["runs"]) == ["0", "1"] and not out.exists()
    ran.clear()
    monkeypatch.setattr(attacks, name, killed_at(None))
    assert main(base + ["--out", str(out), "--json"]) == 0
    assert ran == [2]
    printed, a, b = (json.loads(capsys.readouterr().out), json.loads(out.read_text()),
                     json.loads(whole.read_text()))
    assert printed == a and not (tmp_path / "out.json.partial.json").exists()
    same = {k for k in b if "seconds" not in k}
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert len(a["n_flips"]) == 3 and sum(a["layer_histogram"].values()) == sum(a["n_flips"])
    # other settings (a budget of 5 flips), a foreign file or records naming layers this
    # model does not have: every seed attacked again
    (tmp_path / "o.json.partial.json").write_text(json.dumps(part))
    (tmp_path / "g.json.partial.json").write_text('{"settings": 1}')
    part["runs"]["0"]["flips"][0]["layer"] = "nope"
    (tmp_path / "l.json.partial.json").write_text(json.dumps(part))
    for f, extra in (("o.json", ["--max-flips", "5"]), ("g.json", []), ("l.json", [])):
        ran.clear()
        assert main(base + ["--out", str(tmp_path / f), "--seeds", "1"] + extra) == 0
        assert ran == [0], f


def test_study_attack_settings_keep_committed_results(tmp_path):
    study = load_study(ROOT / "studies" / "digits_quickstart.yaml")
    done = json.loads((QUICK / "attacks.json").read_text())
    a = study.attacks
    assert a.attack_batch == 128 and a.stop_rule == "lt11"  # stated in the file: kept
    assert all(done[m.name]["settings"] == a.settings(study.seed) for m in study.methods)
    cmp = {c["b"]: c for c in bfn_comparisons(study, done)}
    assert sorted(cmp) == ["lsq+bfn", "normal+bfn", "plclip+bfn", "wcat+bfn"]
    assert cmp["normal+bfn"]["mean_a"] == pytest.approx(np.mean(done["normal"]["n_flips"]))
    assert cmp["normal+bfn"]["p_mannwhitney"] < 0.01  # 9-13 flips vs 15-25 flips
    md = _bfn_md(study, done)  # the summary.md section
    assert md.count("\n- does ") == 4
    assert "does normal+bfn raise N_flip over normal: 11.4 +/- 1.5 -> 18.2 +/- 4.1" in md
    assert "attack batch 128, N_flip until held-out accuracy < 1.1x random guess," \
        in _bfa_line(study)
    text = (ROOT / "studies" / "digits_quickstart.yaml").read_text()
    f = tmp_path / "s.yaml"
    f.write_text(text.replace("attacks: {bfa_seeds: 5, attack_batch: 128, max_flips: 500}",
                              "attacks: {bfa_seeds: 10, stop_rule: le10.1}")
                 .replace("../arch", str(ROOT / "arch")))
    b = load_study(f).attacks
    assert (b.attack_batch, b.bfa_seeds, b.stop_rule) == (64, 10, "le10.1")
    assert b.settings(0)["stop_rule"] == "le10.1" and b.kwargs()["rule"] == "le10.1"
    assert "<= 1.01x random guess (and, from the same runs, < 1.1x)" in _bfa_line(load_study(f))
    f.write_text(f.read_text().replace("le10.1", "le10"))
    with pytest.raises(ConfigError, match="attacks.stop_rule: 'le10' is not valid; valid: lt11"):
        load_study(f)


def test_cli_compare(tmp_path, capsys):
    spec = f"{QUICK / 'attacks.json'}"
    assert main(["attack", "compare", spec + ":wcat", spec + ":wcat+bfn", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["a"], out["b"], out["mean_a"], out["mean_b"]) == ("wcat", "wcat+bfn", 18.4, 24.2)
    assert 0 < out["p_mannwhitney"] < 0.05
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"n_flips": [3, 4, 5], "method": "normal"}))
    assert main(["attack", "compare", str(one), spec + ":normal"]) == 0
    assert capsys.readouterr().out.startswith("does B (normal) raise N_flip over A (normal): 4.0")
    assert main(["attack", "compare", spec + ":nope", str(one)]) == 2
    assert "no method 'nope'; valid: normal" in capsys.readouterr().err
    assert main(["attack", "compare", str(one), str(one), "--counts", "n_flips_lt11"]) == 2
    assert "field n_flips_lt11" in capsys.readouterr().err
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"n_flips": [500, 9, 500], "n_flips_lt11": [9, 8, 10]}))
    assert main(["attack", "compare", str(two), str(two), "--counts", "n_flips_lt11",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_a"] == 9.0
    bad = tmp_path / "bad.json"
    bad.write_text('{"n_flips": "many"}')
    assert main(["attack", "compare", str(bad), str(one)]) == 2
    assert "field n_flips" in capsys.readouterr().err


def test_cli_bfa_stop_rule_text(capsys):
    ck = str(QUICK / "checkpoints" / "normal.pt")
    assert main(["attack", "bfa", "--checkpoint", ck, "--seeds", "1", "--stop-rule", "le10.1",
                 "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "attack batch 64" in out and "N_flip to accuracy <= 10.10%" in out
    assert "N_flip to accuracy < 11.00% (same runs)" in out
