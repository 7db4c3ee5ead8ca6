"""--executor ray (issue 20.2): on a local 2-CPU Ray cluster, sweeps and studies give the
serial run's numbers, land in the same files and resume."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

import hwsim.sweep as sw
from hwsim.cli import main
from hwsim.energy import LayerResult, NetworkEnergy
from hwsim.executor import RayExecutor
from hwsim.study import run_study
from hwsim.study_status import study_status
from hwsim.study_spec import load_study
from hwsim.workload import LayerShape
from hwsim.models.errors import ConfigError
from hwsim.models.train import TrainConfig, train

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent
ARCH = str(ROOT / "arch/eyeriss_sram.yaml")  # small CNN / MLP energies: arch/cache, no mapping


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def mlp(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("ray") / "mlp_wcat.pt"
    cfg = TrainConfig(model="mlp", quantizer="wcat", bits=4, bfn_rate=5e-3, epochs=3,
                      batch_size=64, lr=0.05, seed=0)
    train(cfg, path, progress=False, log=lambda s: None, data=digits)
    return str(path)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["label", "voltage"]).reset_index(drop=True)


def test_ray_sweep_rows_identical_to_serial_and_resume(cluster, mlp, digits, tmp_path):
    grid = [0.40, 0.44, 0.48, 0.52, 0.56]  # from ~0.6% BER (plain MC) to rare flips (strata)
    kw = dict(realizations=6, seed=1, data=digits[1], progress=False)
    serial = sw.sweep(mlp, ARCH, grid, tmp_path / "serial.csv", **kw)
    with RayExecutor() as ex:  # joins the running cluster and leaves it running
        ray_rows = sw.sweep(mlp, ARCH, grid, tmp_path / "ray.csv", executor=ex, **kw)
        assert ex.completed == len(grid)  # one task per point
    assert ray.is_initialized()
    assert len(ray_rows) == 5 and set(ray_rows["estimator"]) == {"mc", "stratified"}
    pd.testing.assert_frame_equal(_sorted(ray_rows), _sorted(serial))
    assert serial["energy_uJ"].iloc[-1] > serial["energy_uJ"].iloc[0] > 0  # cached energies
    before = (tmp_path / "ray.csv").read_bytes()
    # the CLI: a re-run with one more voltage computes just that point
    assert main(["sweep", "--checkpoint", mlp, "--arch", ARCH, "--vmin", "0.40", "--vmax",
                 "0.60", "--step", "0.04", "--realizations", "6", "--seed", "1", "--out",
                 str(tmp_path / "ray.csv"), "--resume", "--no-progress",
                 "--executor", "ray"]) == 0
    after = pd.read_csv(tmp_path / "ray.csv")
    assert len(after) == 6 and (tmp_path / "ray.csv").read_bytes().startswith(before)
    one = sw.sweep(mlp, ARCH, [0.60], tmp_path / "one.csv", **kw)
    pd.testing.assert_frame_equal(after.iloc[[5]].reset_index(drop=True), one,
                                  check_dtype=False)


STUDY = """
name: tiny
seed: 0
data: {name: digits}
network: mlp
training: {epochs: 3, batch_size: 64, lr: 0.05}
methods:
  - {quantizer: normal, bits: 4}
  - {quantizer: wcat, bits: 4, bfn: true}
arch: ARCH
voltages: {min: 0.38, max: 0.42, step: 0.02}
monte_carlo: {realizations: 4, ci_target: 0.01}
bers: [0.01]
attacks: {bfa_seeds: 2, attack_batch: 64, max_flips: 20}
results_dir: OUT
"""


def _json(path: Path, drop: tuple) -> dict:
    data = json.loads(path.read_text())
    for entry in data.values():
        for key in drop:
            entry.pop(key, None)
        entry.get("settings", {}).pop("checkpoint_sha256", None)
    return data


def test_ray_study_same_numbers_then_rerun_does_nothing(cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(sw, "model_energy", lambda *a, **k: _fake_energy())
    out = {}
    for kind in ("serial", "ray"):
        f = tmp_path / f"{kind}.yaml"
        f.write_text(STUDY.replace("ARCH", ARCH).replace("OUT", str(tmp_path / kind)))
        out[kind] = load_study(f)
    table = run_study(out["serial"], progress=False, log=lambda s: None)
    with RayExecutor() as ex:
        ray_table = run_study(out["ray"], progress=False, log=lambda s: None, executor=ex)
        # 2 trainings + 2 x 3 points + 2 fixed-BER points + 2 x 2 attack seeds
        assert ex.completed == 14
    pd.testing.assert_frame_equal(ray_table, table)
    # checkpoints are identical but for the seconds their epoch logs record: drop the paths
    # and hashes, compare every number
    s, r = (_sorted(pd.read_csv(tmp_path / k / "results.csv").drop(
        columns=["checkpoint", "checkpoint_sha256"])) for k in ("serial", "ray"))
    assert len(r) == 6
    pd.testing.assert_frame_equal(r, s)
    assert _json(tmp_path / "ray/at_ber.json", ()) == _json(tmp_path / "serial/at_ber.json", ())
    drop = ("iteration_seconds",)
    ray_attacks = _json(tmp_path / "ray/attacks.json", drop)
    assert ray_attacks == _json(tmp_path / "serial/attacks.json", drop)
    assert ray_attacks["normal"]["seeds"] == [0, 1]
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*") if p.is_file()}
    with RayExecutor() as ex:  # resumed: nothing left, no task, no file touched
        run_study(out["ray"], progress=False, log=lambda s: None, executor=ex)
        assert ex.completed == 0
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*")
                     if p.is_file()}


def test_study_bfa_resumes_per_seed_serial_and_ray(cluster, tmp_path, monkeypatch):
    """A study killed during BFA keeps its finished seeds (attacks.METHOD.json.partial.json):
    a serial rerun attacks only the missing seeds, a Ray rerun submits one task per missing
    seed, and both write the attacks.json an uninterrupted run writes."""
    import hwsim.models.attacks as attacks
    monkeypatch.setattr(sw, "model_energy", lambda *a, **k: _fake_energy())
    studies = {}
    for kind in ("whole", "serial", "ray"):
        f = tmp_path / f"{kind}.yaml"
        f.write_text(STUDY.replace("ARCH", ARCH).replace("OUT", str(tmp_path / kind)))
        studies[kind] = load_study(f)
    quiet = dict(progress=False, log=lambda s: None)
    run_study(studies["whole"], **quiet)
    real, calls = attacks.bfa_run, []

    def counted(kill_at=None):
        def run(*a, **k):
            calls.append(k["seed"])
            if len(calls) == kill_at:
                raise KeyboardInterrupt  # killed while attacking normal's seed 1
            return real(*a, **k)
        return run
    for kind in ("serial", "ray"):
        calls.clear()
        monkeypatch.setattr(attacks, "bfa_run", counted(kill_at=2))
        with pytest.raises(KeyboardInterrupt):
            run_study(studies[kind], **quiet)
        part = json.loads((tmp_path / kind / "attacks.normal.json.partial.json").read_text())
        assert list(part["runs"]) == ["0"]
    status = study_status(studies["serial"]).set_index("method")["BFA (seeds)"]
    assert status.to_dict() == {"normal": "1/2", "wcat+bfn": "0/2"}
    calls.clear()
    monkeypatch.setattr(attacks, "bfa_run", counted())
    run_study(studies["serial"], **quiet)
    assert calls == [1, 0, 1]  # normal's missing seed, then wcat+bfn's two
    with RayExecutor() as ex:
        run_study(studies["ray"], executor=ex, **quiet)
        assert ex.completed == 3
    drop = ("iteration_seconds",)
    whole = _json(tmp_path / "whole/attacks.json", drop)
    for kind in ("serial", "ray"):
        assert _json(tmp_path / kind / "attacks.json", drop) == whole, kind
        assert not list((tmp_path / kind).glob("*.partial.json")), kind


def _fake_energy() -> NetworkEnergy:
    """3 uJ weight memory + 7 uJ rest at 0.8 V (as test_sweep_study's; no AccelForge)."""
    shape = LayerShape(name="fc", kind="linear", in_channels=4, out_channels=2, kernel=(1, 1),
                       output=(1, 1), input=(1, 1), stride=(1, 1), padding=(0, 0), groups=1,
                       weight_bits=4, act_bits=8)
    layers = [LayerResult(n, shape, {"WeightSRAM": w, "Other": r}, w + r, w, 8, True)
              for n, w, r in (("a", 1.0, 3.0), ("b", 2.0, 4.0))]
    return NetworkEnergy("fake.yaml", "0" * 64, ("WeightSRAM",), 0.8, layers)


@pytest.mark.parametrize("argv, message", [
    (["--address", "auto"], "--address needs --executor ray"),
    (["--gpus-per-task", "0.5"], "--gpus-per-task needs --executor ray"),
    (["--executor", "ray", "--address", "auto", "--workers", "2"], "give one of them"),
])
def test_ray_flags_checked_before_any_work(argv, message, tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(STUDY.replace("ARCH", ARCH).replace("OUT", str(tmp_path / "out")))
    assert main(["study", str(f), "--no-progress"] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_missing_ray_is_one_error_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"needs the ray package.*pip install 'ray=="):
        RayExecutor().__enter__()


def _chip_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).sort_values(["label", "chip", "voltage"]).reset_index(drop=True)


def test_ray_chip_blocks_same_rows_as_serial_and_resume(cluster, mlp, digits, tmp_path):
    """Persistent chips as blocks of chips: the serial run's per-chip and summary rows; a
    resumed run evaluates just the missing chips."""
    from hwsim.chips import Faults, chip_sweep, chips_sidecar
    from hwsim.remote import chip_blocks
    grid, f = [0.36, 0.40, 0.44], Faults("persistent", "stuck-at", chips=6)
    kw = dict(seed=3, data=digits[1], progress=False)
    serial = chip_sweep(mlp, ARCH, grid, tmp_path / "serial.csv", f, **kw)
    out = tmp_path / "ray.csv"
    with RayExecutor() as ex:
        rows = chip_sweep(mlp, ARCH, grid, out, f, executor=ex, **kw)
        assert ex.completed == 6  # 6 chips, 2 CPUs -> blocks of 1 chip (4 per CPU)
    assert len(rows) == 3 and (rows["chips"] == 6).all()
    pd.testing.assert_frame_equal(_sorted(rows), _sorted(serial))
    want = _chip_rows(chips_sidecar(tmp_path / "serial.csv"))
    assert len(want) == 18 and want["erring_bits"].max() > 0
    pd.testing.assert_frame_equal(_chip_rows(chips_sidecar(out)), want)
    # interrupted after chips 0-3: only chips 4, 5 run again, the summary is the same
    part = pd.read_csv(chips_sidecar(out))
    part[part["chip"] < 4].to_csv(chips_sidecar(out), index=False)
    out.write_text(pd.read_csv(out).iloc[:0].to_csv(index=False))
    with RayExecutor() as ex:
        rows = chip_sweep(mlp, ARCH, grid, out, f, executor=ex, resume=True, **kw)
        assert ex.completed == 2
        chip_sweep(mlp, ARCH, grid, out, f, executor=ex, resume=True, **kw)
        assert ex.completed == 2  # done: nothing submitted
    pd.testing.assert_frame_equal(_sorted(rows), _sorted(serial))
    pd.testing.assert_frame_equal(_chip_rows(chips_sidecar(out)), want)
    assert [len(b) for b in chip_blocks(list(range(100)), 2)] == [13] * 7 + [9]
    assert [len(b) for b in chip_blocks(list(range(1000)), 2)] == [20] * 50


def test_ray_persistent_sweep_cli_matches_serial(cluster, mlp, tmp_path):
    from hwsim.chips import chips_sidecar
    argv = ["sweep", "--checkpoint", mlp, "--arch", ARCH, "--vmin", "0.38", "--vmax", "0.42",
            "--step", "0.04", "--fault-model", "persistent", "--chips", "3", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "s.csv")]) == 0
    assert main(argv + ["--out", str(tmp_path / "r.csv"), "--executor", "ray"]) == 0
    pd.testing.assert_frame_equal(_sorted(pd.read_csv(tmp_path / "r.csv")),
                                  _sorted(pd.read_csv(tmp_path / "s.csv")))
    pd.testing.assert_frame_equal(_chip_rows(chips_sidecar(tmp_path / "r.csv")),
                                  _chip_rows(chips_sidecar(tmp_path / "s.csv")))


def test_ray_persistent_study_same_numbers_then_rerun_does_nothing(cluster, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(sw, "model_energy", lambda *a, **k: _fake_energy())
    text = STUDY.replace("bers: [0.01]\n", "faults: {model: persistent, chips: 4}\n").replace(
        "bfa_seeds: 2", "bfa_seeds: 0").replace("ARCH", ARCH)
    out = {}
    for kind in ("serial", "ray"):
        f = tmp_path / f"{kind}.yaml"
        f.write_text(text.replace("OUT", str(tmp_path / kind)))
        out[kind] = load_study(f)
    table = run_study(out["serial"], progress=False, log=lambda s: None)
    with RayExecutor() as ex:
        ray_table = run_study(out["ray"], progress=False, log=lambda s: None, executor=ex)
        assert ex.completed == 2 + 2 * 4  # 2 trainings + 2 methods x 4 one-chip blocks
    pd.testing.assert_frame_equal(ray_table, table)
    s, r = (_sorted(pd.read_csv(tmp_path / k / "results.csv").drop(
        columns=["checkpoint", "checkpoint_sha256"])) for k in ("serial", "ray"))
    assert len(r) == 6 and (r["estimator"] == "chips").all()
    pd.testing.assert_frame_equal(r, s)
    s, r = (_chip_rows(tmp_path / k / "results.chips.csv").drop(columns="checkpoint_sha256")
            for k in ("serial", "ray"))
    assert len(r) == 2 * 4 * 3
    pd.testing.assert_frame_equal(r, s)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*") if p.is_file()}
    with RayExecutor() as ex:
        run_study(out["ray"], progress=False, log=lambda s: None, executor=ex)
        assert ex.completed == 0
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*")
                     if p.is_file()}


def test_gpus_per_task_checked_without_a_gpu(cluster, mlp, tmp_path, capsys):
    """No GPU in the cluster (CI): --gpus-per-task with CPU tasks, or cuda tasks, are one
    error line before any work; the cluster this test joined keeps running."""
    argv = ["sweep", "--checkpoint", mlp, "--arch", ARCH, "--out", str(tmp_path / "r.csv"),
            "--no-progress", "--executor", "ray"]
    assert main(argv + ["--gpus-per-task", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--gpus-per-task 0.5: the tasks run on the CPU" in err and err.count("\n") == 1
    for extra, message in ((["--device", "cuda"], "the Ray cluster has no GPU"),
                           (["--device", "auto", "--gpus-per-task", "0.25"],
                            "--gpus-per-task 0.25: the tasks run on the CPU (device auto, "
                            "cluster GPUs: 0)")):
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r.csv").exists() and ray.is_initialized()
    with RayExecutor(device="auto") as ex:  # auto without GPUs: CPU tasks
        assert ex.gpus("auto") == ("cpu", 0.0)


def test_ray_tasks_run_under_the_submitting_processs_precision(cluster):
    from hwsim.models.device import get_inference_precision, precision_scope
    seen = []
    with RayExecutor() as ex:
        with precision_scope("bf16"):
            ex.submit(get_inference_precision, done=seen.append)
        ex.submit(get_inference_precision, done=seen.append)
    assert seen == ["bf16", "auto"]  # each task set to what the process had at submission


def test_ray_sweep_notes_a_label_computed_in_two_precisions(cluster, mlp, digits, tmp_path,
                                                             capsys):
    from hwsim.models.device import precision_scope
    kw = dict(realizations=4, seed=1, data=digits[1], progress=False)
    out = tmp_path / "r.csv"
    with RayExecutor() as ex:
        sw.sweep(mlp, ARCH, [0.50], out, executor=ex, **kw)
        assert "note:" not in capsys.readouterr().err
        with precision_scope("bf16"):  # the tasks run under the submitter's precision
            rows = sw.sweep(mlp, ARCH, [0.50, 0.54], out, executor=ex, resume=True, **kw)
    assert list(rows["precision"]) == ["fp32", "bf16"]
    err = capsys.readouterr().err
    assert f"note: {out} holds points of wcat+bfn computed with precision bf16, fp32" in err
    assert "with device" not in err
