"""Bad input, as an attacker or a careless user gives it: every case exits 2 with one line
that names the file/field/value, runs no code it was handed and writes nothing."""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hwsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIGITS_CK = ROOT / "studies/results/digits_quickstart/checkpoints/normal.pt"
ARCH = ROOT / "arch/eyeriss_sram.yaml"


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors and --help
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_one_line_error(capsys, argv, fragment, folder: Path):
    before = files_under(folder)
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert fragment in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert files_under(folder) == before  # nothing written, nothing half-written


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Run in an empty folder (also the HWSIM data cache), so stray writes would show."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HWSIM_CACHE", str(tmp_path / "cache"))
    return tmp_path


# ---------------------------------------------------------------- 1a. pickled CIFAR batches

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_cifar_batch_runs_no_code(capsys, here):
    marker = here.parent / f"{here.name}-pwned"
    root = here / "cifar-10-batches-py"
    root.mkdir()
    (root / "data_batch_1").write_bytes(pickle.dumps({"data": _Payload(marker), "labels": [0]}))
    assert_one_line_error(capsys, ["train", "--data", "cifar10", "--data-root", root,
                                   "--out", "x.pt", "--epochs", 1],
                          "refused global posix.system", here)
    assert not marker.exists()


def test_genuine_cifar_batches_still_load(here):
    from hwsim.models.data import load_cifar10
    root = here / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for n in names:  # torchvision's layout: a dict with a uint8 N x 3072 array and labels
        d = {"batch_label": n, "labels": [int(v) for v in rng.integers(0, 10, 4)],
             "data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "filenames": ["a"] * 4}
        (root / n).write_bytes(pickle.dumps(d, protocol=2))
    train, test = load_cifar10(here)
    assert tuple(train.images.shape) == (20, 3, 32, 32) and len(test) == 4
    assert int(test.images[0, 0, 0, 0]) == int(pickle.loads((root / "test_batch").read_bytes())
                                               ["data"][0, 0])


# ---------------------------------------------------------------- 2. study paths

STUDY = """name: {name}
network: mlp
methods: [{{quantizer: normal}}]
arch: {arch}
{extra}
"""


@pytest.mark.parametrize("name, extra, fragment", [
    ("'../evil'", "", "name: '../evil' is not a valid study name"),
    ("/tmp/abs", "", "name: '/tmp/abs' is not a valid study name"),
    ("''", "", "name: '' is not a valid study name"),
    ("ok", "results_dir: ../..", "results_dir: '../..' leaves the study file's folder"),
    ("ok", "results_dir: /tmp", "results_dir: '/tmp' leaves the study file's folder"),
    ("ok", "results_dir: ''", "results_dir: '' must be a non-empty relative path"),
    ("ok", "voltages: {max: 5}", "voltages.max 5: outside the supported supply range"),
    ("ok", "seed: -1", "seed: -1 is out of range"),
    ("ok", "data: {name: digits, root: /tmp}", "data.root: digits is bundled"),
])
def test_study_paths_are_confined(capsys, here, name, extra, fragment):
    f = here / "s.yaml"
    f.write_text(STUDY.format(name=name, arch=ARCH, extra=extra))
    assert_one_line_error(capsys, ["study", f, "--status"], fragment, here)


def test_results_dir_is_resolved_from_the_study_file(here):
    from hwsim.study_spec import load_study
    sub = here / "studies"
    sub.mkdir()
    (sub / "s.yaml").write_text(STUDY.format(name="ok", arch=ARCH, extra="results_dir: out/x"))
    assert load_study(sub / "s.yaml").out_dir.resolve() == (sub / "out/x").resolve()
    (sub / "t.yaml").write_text(STUDY.format(name="ok", arch=ARCH, extra=""))
    assert load_study(sub / "t.yaml").out_dir.resolve() == (sub / "results/ok").resolve()


# ---------------------------------------------------------------- 3./4. values and files

@pytest.mark.parametrize("argv, fragment", [
    (["train", "--out", "x.pt", "--epochs", 0], "argument --epochs: '0' is not an integer >= 1"),
    (["train", "--out", "x.pt", "--batch-size", 0], "--batch-size: '0' is not an integer >= 1"),
    (["train", "--out", "x.pt", "--lr", 0], "argument --lr: '0' is not a number > 0"),
    (["train", "--out", "x.pt", "--seed", -1], "argument --seed: '-1' is not an integer >= 0"),
    (["train", "--out", "x.pt", "--data-root", "d"], "given for the digits data set"),
    (["train", "--out", "."], "--out '.' is a folder"),
    (["ber", "--voltage", 5], "--voltage 5.0: outside the supported supply range [0.2, 1] V"),
    (["energy", "--model", "mlp", "--voltage", 5], "--voltage 5.0: outside the supported"),
    (["eval", "--checkpoint", DIGITS_CK, "--seed", -1], "argument --seed: '-1' is not"),
    (["eval", "--checkpoint", DIGITS_CK, "--data-root", "d"], "given for the digits data set"),
    (["eval", "--checkpoint", DIGITS_CK, "--ber", 0.7], "argument --ber: '0.7' is not a number"),
    (["sweep", "--checkpoint", DIGITS_CK, "--out", "r.csv", "--seed", -1], "'-1' is not"),
    (["sweep", "--checkpoint", "missing.pt", "--out", "r.csv"],
     "checkpoint 'missing.pt' does not exist"),
    (["sweep", "--checkpoint", DIGITS_CK, "--out", "."], "--out '.' is a folder"),
    (["sweep", "--checkpoint", DIGITS_CK, "--out", "r.csv", "--vmax", 5], "vmax 5.0: outside"),
    (["attack", "bfa", "--checkpoint", DIGITS_CK, "--seed", -1], "'-1' is not an integer >= 0"),
    (["pareto", "missing.csv"], "'missing.csv' does not exist"),
])
def test_bad_values_are_one_line_errors(capsys, here, argv, fragment):
    assert_one_line_error(capsys, argv, fragment, here)


def test_sweep_resume_names_a_corrupt_cell_and_keeps_the_file(capsys, here):
    import pandas as pd
    from hwsim.sweep import COLUMNS
    row = dict.fromkeys(COLUMNS, 1.0)
    row.update(checkpoint=str(DIGITS_CK), label="normal", voltage=0.5)
    bad = dict(row, voltage="0.4x")
    pd.DataFrame([row, bad]).to_csv(here / "r.csv", index=False)
    text = (here / "r.csv").read_text()
    assert_one_line_error(capsys, ["sweep", "--checkpoint", DIGITS_CK, "--arch", ARCH,
                                   "--out", "r.csv", "--resume"],
                          "r.csv: line 3, column voltage: '0.4x' is not a number", here)
    assert (here / "r.csv").read_text() == text


@pytest.mark.parametrize("content, fragment", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00binary", "not a readable CSV text file"),
    (b"label,voltage,ber,acc_clean,acc_mean,acc_ci95,energy_uJ\nx,0.5,0.1,0.9,high,0,1\n",
     "line 2, column acc_mean: 'high' is not a number"),
    (b"label,voltage,acc_mean\nx,0.5,0.9\n",
     "missing column(s) ber, acc_clean, acc_ci95, energy_uJ"),
])
def test_pareto_bad_csv(capsys, here, content, fragment):
    (here / "r.csv").write_bytes(content)
    assert_one_line_error(capsys, ["pareto", "r.csv", "--out", "rep.html"], fragment, here)


def test_ber_model_binary_file(capsys, here):
    (here / "m.yaml").write_bytes(b"\xff\xfe\x00\x81binary")
    assert_one_line_error(capsys, ["ber", "--voltage", 0.5, "--ber-model", "m.yaml"],
                          "BER model file 'm.yaml' is not a YAML text file", here)


def _edited_checkpoint(here: Path, edit) -> Path:
    ck = torch.load(DIGITS_CK, weights_only=True)
    edit(ck)
    path = here / "bad.pt"
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("edit, fragment", [
    (lambda ck: ck["config"]["model"].update(name="mlp"),
     "its weights do not fit the network its config describes (Error(s) in loading"),
    (lambda ck: ck["config"].pop("model"), "config.model must be a mapping"),
    (lambda ck: ck["config"]["quantizer"].update(bits="four"), "config.quantizer must be"),
])
def test_inconsistent_checkpoints(capsys, here, edit, fragment):
    path = _edited_checkpoint(here, edit)
    assert_one_line_error(capsys, ["eval", "--checkpoint", path, "--realizations", 2],
                          fragment, here)


def test_garbage_checkpoint_is_one_line(capsys, here):
    (here / "g.pt").write_bytes(b"PK\x03\x04 not really a zip" * 20)
    assert_one_line_error(capsys, ["eval", "--checkpoint", "g.pt"],
                          "checkpoint 'g.pt' could not be read (", here)


def test_weight_memory_that_spends_nothing_is_refused(capsys, here, monkeypatch):
    cache = here / "energy-cache"
    cache.mkdir()
    shutil.copy(ROOT / "arch/cache/energy.json", cache / "energy.json")  # same spec: hits
    monkeypatch.setenv("HWSIM_ENERGY_CACHE", str(cache))
    arch = here / "a.yaml"
    arch.write_text(ARCH.read_text().replace("weight_memory: [WeightSRAM]",
                                             "weight_memory: [ProcessingElement]"))
    assert "ProcessingElement" in arch.read_text()
    assert_one_line_error(capsys, ["energy", "--arch", arch, "--model", "mlp"],
                          "hwsim.weight_memory names ProcessingElement, which is not a memory",
                          here)


# ---------------------------------------------------------------- 5. help, 6. shipped arch

@pytest.mark.parametrize("argv, wanted", [
    (["eval", "--help"], "95% CI"), (["sweep", "--help"], "95% CI"),
    (["attack", "bfa", "--help"], "(11% for 10)"),
    (["sweep", "--help"], "lowest weight-memory voltage in V (default 0.35)"),
    (["sweep", "--help"], "grid step in V (default 0.01)"),
    (["sweep", "--help"], "bits per activation in the energy model (default 8)"),
    (["sweep", "--help"], "random seed, an integer >= 0 (default 0)"),
    (["train", "--help"], "random seed, an integer >= 0 (default 0)"),
])
def test_help_texts(capsys, argv, wanted):
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "%%" not in out
    assert wanted in " ".join(out.split())


@pytest.mark.parametrize("arch", [None, "eyeriss_sram", "eyeriss_sram.yaml",
                                  "arch/eyeriss_sram.yaml"])
def test_shipped_arch_found_from_any_folder(capsys, here, arch):
    import json
    code, out, err = run(capsys, "energy", "--model", "mlp", "--json",
                         *(["--arch", arch] if arch else []))
    assert code == 0, err
    assert json.loads(out)["total_uJ"] > 0


def test_unknown_arch_lists_shipped_ones(capsys, here):
    assert_one_line_error(capsys, ["energy", "--model", "mlp", "--arch", "nope"],
                          "--arch 'nope': no such arch file; shipped ones (by name, or "
                          "arch/NAME.yaml): eyeriss_sram, eyeriss_sram_domains, "
                          "eyeriss_sram_wspad", here)
