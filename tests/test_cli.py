"""The `hwsim` command line end to end on digits (energy from the committed cache)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hwsim.cli import main

ARCH = Path(__file__).resolve().parent.parent / "arch" / "eyeriss_sram.yaml"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("train", "eval", "ber", "energy", "sweep", "pareto", "study", "attack"):
        assert f"    {cmd} " in text


def test_train_eval_sweep_pareto(capsys, tmp_path):
    ck = tmp_path / "mlp.pt"
    code, out, _ = run(capsys, "train", "--model", "mlp", "--quantizer", "wcat", "--epochs", 3,
                       "--out", ck, "--no-progress", "--seed", 1)
    assert code == 0 and "test accuracy" in out
    assert len((tmp_path / "mlp.pt.log").read_text().splitlines()) == 3  # one line per epoch
    code, out, _ = run(capsys, "eval", "--checkpoint", ck, "--ber", 0.01, "--realizations", 5,
                       "--json")
    r = json.loads(out)
    assert code == 0 and r["method"] == "wcat" and r["realizations"] == 5
    assert 0.8 < r["clean"] <= 1 and r["mean"] <= r["clean"] + 0.05
    csv = tmp_path / "r.csv"
    code, out, _ = run(capsys, "sweep", "--checkpoint", ck, "--arch", ARCH, "--vmin", 0.4,
                       "--vmax", 0.8, "--step", 0.2, "--realizations", 4, "--out", csv,
                       "--no-progress")
    df = pd.read_csv(csv)
    assert code == 0 and list(df.voltage) == [0.4, 0.6, 0.8]
    assert df.energy_uJ.iloc[2] == pytest.approx(df.energy_nominal_uJ.iloc[2])
    assert df.energy_uJ.is_monotonic_increasing
    code, out, _ = run(capsys, "pareto", csv, "--out", tmp_path / "rep.html")
    assert code == 0 and (tmp_path / "rep.html").stat().st_size < 300_000
    assert (tmp_path / "plotly.min.js").stat().st_size > 3_000_000  # loaded from beside it
    # the report records the command that rebuilds it
    assert f"Made by: hwsim pareto {csv} --out {tmp_path / 'rep.html'}" in (
        tmp_path / "rep.html").read_text()
    front = pd.read_csv(tmp_path / "rep_frontier.csv")
    assert 1 <= len(front) <= 3


def test_ber_fit_cli_writes_a_model_every_command_reads(capsys, tmp_path):
    v = np.linspace(0.3, 0.7, 20)
    pd.DataFrame({"voltage": v, "ber": np.minimum(np.exp(20 - 60 * v), 0.5)}).to_csv(
        tmp_path / "m.csv", index=False)
    code, out, _ = run(capsys, "ber", "fit", tmp_path / "m.csv", "--linear",
                       "--out", tmp_path / "m.yaml")
    assert code == 0 and "a = 20" in out and "b = -60" in out
    code, out, _ = run(capsys, "ber", "--voltage", 0.5, "--ber-model", tmp_path / "m.yaml",
                       "--json")
    assert json.loads(out)["ber"] == pytest.approx(np.exp(20 - 30), rel=1e-6)


@pytest.mark.parametrize("argv, fragment", [
    (["ber", "--voltage", "-1"], "voltage -1.0: must be a positive number of volts"),
    (["ber", "--rate", "0.9"], "bit error rate 0.9: must be in (0, 0.5]"),
    (["eval", "--checkpoint", "missing.pt"], "checkpoint 'missing.pt' does not exist"),
    (["study", "missing.yaml"], "study file 'missing.yaml' does not exist"),
    (["train", "--out", "x.pt", "--data", "cifar10"], "cifar10 needs a data root"),
    (["train", "--out", "x.pt", "--param", "c"], "--param 'c': expected KEY=VALUE"),
    (["eval", "--checkpoint", "x.pt", "--device", "gpu"], "device 'gpu': valid: cpu, cuda"),
])
def test_user_mistakes_are_one_line_errors(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_eval_paired_with_shares_error_patterns(capsys, trained, digits):
    from hwsim.models import evaluate_under_bit_errors, load_checkpoint
    a, b = trained("normal"), trained("wcat")
    argv = ("eval", "--ber", 0.02, "--realizations", 6, "--seed", 4, "--json")
    code, out, _ = run(capsys, *argv, "--checkpoint", a, "--paired-with", b)
    r = json.loads(out)
    assert code == 0
    alone = json.loads(run(capsys, *argv, "--checkpoint", a)[1])
    assert {k: r[k] for k in alone} == alone  # A's part is what `eval` alone reports
    d, rb = r["paired_difference"], r["paired_with"]
    assert rb["checkpoint"] == str(b) and rb["method"] == "wcat" and rb["realizations"] == 6
    assert d["same_patterns"] and d["realizations"] == 6  # same layer sizes and widths
    assert d["mean"] == pytest.approx(rb["mean"] - r["mean"], abs=1e-12)
    assert 0 < d["wilcoxon_p"] <= 1 and d["ci95"] > 0
    diffs = [y - x for x, y in zip(
        *(evaluate_under_bit_errors(load_checkpoint(c)[0], digits[1], 0.02, 6, 4).accuracies
          for c in (a, b)))]
    assert d["differences"] == pytest.approx(diffs, abs=1e-12)  # realization by realization
    # a checkpoint against itself: identical patterns, every difference exactly zero
    code, out, _ = run(capsys, *argv, "--checkpoint", a, "--paired-with", a)
    d = json.loads(out)["paired_difference"]
    assert (d["mean"], d["std"], d["wilcoxon_p"], d["same_patterns"]) == (0.0, 0.0, 1.0, True)
    code, _, err = run(capsys, "eval", "--checkpoint", a, "--paired-with", b)
    assert code == 2 and "--paired-with compares accuracy under bit errors" in err
    code, _, err = run(capsys, *argv, "--checkpoint", a, "--paired-with", "missing.pt")
    assert code == 2 and "missing.pt" in err and "Traceback" not in err


def test_eval_says_when_a_checkpoint_is_not_fully_trained(capsys, trained, tmp_path):
    import torch
    done = trained("normal")
    ck = torch.load(done, weights_only=True)
    wanted = ck["config"]["train"]["epochs"]
    ck["epoch"] = wanted - 2  # as written part-way through training
    half = tmp_path / "half.pt"
    torch.save(ck, half)
    code, out, err = run(capsys, "eval", "--checkpoint", half, "--json")
    r = json.loads(out)
    assert code == 0 and (r["epochs_trained"], r["epochs_planned"]) == (wanted - 2, wanted)
    assert f"half.pt is trained for {wanted - 2} of its {wanted} epochs" in err
    code, out, err = run(capsys, "eval", "--checkpoint", half)
    assert f"trained {wanted - 2} of {wanted} epochs" in out
    code, out, err = run(capsys, "eval", "--checkpoint", done, "--json")
    r = json.loads(out)
    assert r["epochs_trained"] == r["epochs_planned"] == wanted and "note" not in err


def test_paired_difference_reports_unshared_patterns():
    from hwsim.models.evaluate import BitErrorResult, paired_difference
    a = BitErrorResult(0.01, 0.9, 0.8, 0.0, 0.0, 3, [0.8, 0.7, 0.9], [5, 6, 7], ((10, 4),))
    b = BitErrorResult(0.01, 0.9, 0.85, 0.0, 0.0, 3, [0.9, 0.8, 0.85], [5, 6, 7], ((10, 8),))
    d = paired_difference(a, b)
    assert not d.same_patterns and d.mean == pytest.approx(0.05)
    assert (d.b_ahead, d.a_ahead) == (2, 1)
    assert d.std == pytest.approx(np.std([0.1, 0.1, -0.05], ddof=1))
    with pytest.raises(Exception, match="same rate and realizations"):
        paired_difference(a, BitErrorResult(0.02, 0.9, 0.8, 0, 0, 3, [0.8] * 3))


def test_eval_precision_bf16_agrees_with_float32_and_is_scoped(capsys, trained):
    from hwsim.models.device import get_inference_precision, precision_scope
    ck = trained("wcat", 5e-3)
    argv = ("eval", "--checkpoint", ck, "--ber", 0.02, "--realizations", 5, "--seed", 1,
            "--json")
    fp32 = json.loads(run(capsys, *argv, "--precision", "fp32")[1])
    bf16 = json.loads(run(capsys, *argv, "--precision", "bf16")[1])
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert get_inference_precision() == "auto"  # the flag held for that command only
    # the same flips; bfloat16 rounding moves at most a few of the 360 test images
    assert bf16["clean"] == pytest.approx(fp32["clean"], abs=3 / 360)
    assert bf16["mean"] == pytest.approx(fp32["mean"], abs=3 / 360)
    import torch
    from hwsim.models import load_checkpoint
    from hwsim.models.evaluate import inference_precision
    model, _ = load_checkpoint(ck)
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad(), precision_scope("bf16"), inference_precision("cpu"):
        assert model(x).dtype == torch.bfloat16
    with torch.no_grad(), inference_precision("cpu"):  # auto: float32 on the CPU
        assert model(x).dtype == torch.float32
    with pytest.raises(Exception, match=r"precision 'fp16': valid: auto, fp32, bf16"):
        precision_scope("fp16").__enter__()
    with pytest.raises(SystemExit) as e:
        main(["eval", "--checkpoint", str(ck), "--precision", "fp16"])
    assert e.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err

