"""Concurrent writers: results files, sweeps sharing one --out, the energy cache, and the
parallel mapping of layer shapes (a stand-in mapper: no AccelForge in the fast suite)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import hwsim.energy as energy_mod
import hwsim.sweep as sw
from hwsim import accelforge_backend as backend
from hwsim.cli import main
from hwsim.energy import EnergyCache, network_energy
from hwsim.files import write_text_atomic
from hwsim.workload import LayerShape
from hwsim.models.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ARCH = ROOT / "arch" / "eyeriss_sram.yaml"

# Each child imports what it needs, then waits for GO to exist, so that the writers overlap.
PRELUDE = """
import os, sys, time
from pathlib import Path
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
"""


def run_together(code: str, argvs: list[list], tmp_path: Path) -> None:
    """Start one `python -c PRELUDE+code` per argv (argv[1:]) and release them at once."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", PRELUDE + code, str(go),
                               *map(str, argv)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    time.sleep(0.5)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]


def _row(writer: int, i: int) -> dict:
    return {c: 0 for c in sw.COLUMNS} | {"checkpoint": f"w{writer}.pt", "label": f"w{writer}",
                                         "voltage": round(0.3 + 0.01 * i, 2),
                                         "acc_mean": writer + i / 100}


APPEND = """
import hwsim.sweep as sw
w = int(sys.argv[3])
rows = lambda w: [{c: 0 for c in sw.COLUMNS} | {"checkpoint": f"w{w}.pt", "label": f"w{w}",
                  "voltage": round(0.3 + 0.01 * i, 2), "acc_mean": w + i / 100}
                  for i in range(40)]
for r in rows(w) + rows(9):  # writer 9's points are offered by both writers
    sw.append_rows(Path(sys.argv[2]), [r])
"""


def test_two_processes_appending_to_one_results_csv_lose_nothing(tmp_path):
    out = tmp_path / "results.csv"
    run_together(APPEND, [[out, 1], [out, 2]], tmp_path)
    df = pd.read_csv(out)
    assert list(df.columns) == sw.COLUMNS
    assert len(df) == 120  # 40 + 40 + the 40 shared points once
    assert not df.duplicated(["checkpoint", "voltage"]).any()
    for w in (1, 2, 9):
        mine = df[df.checkpoint == f"w{w}.pt"].sort_values("voltage")
        assert list(mine.acc_mean) == pytest.approx([_row(w, i)["acc_mean"] for i in range(40)])
        # each writer appended its own points in order
        assert mine.index.is_monotonic_increasing
    assert not list(tmp_path.glob(".results.csv.*.tmp"))  # no temporary file left over


JSON_AND_CACHE = """
from hwsim.files import update_json
from hwsim.energy import EnergyCache
from hwsim.accelforge_backend import LayerEnergy
folder, w = Path(sys.argv[2]), sys.argv[3]
cache = EnergyCache(folder / "energy.json")
for i in range(25):
    update_json(folder / "attacks.json", lambda d: d.update({f"{w}-{i}": i}))
    cache.put(f"{w}|{i}", LayerEnergy(layer=w, key=str(i), components_pJ={"MAC": float(i)},
                                      total_pJ=float(i), weight_memory_pJ=0.0, macs=i))
"""


def test_json_results_and_energy_cache_keep_every_concurrent_entry(tmp_path):
    run_together(JSON_AND_CACHE, [[tmp_path, "a"], [tmp_path, "b"]], tmp_path)
    data = json.loads((tmp_path / "attacks.json").read_text())
    assert data == {f"{w}-{i}": i for w in "ab" for i in range(25)}
    cache = EnergyCache(tmp_path / "energy.json")
    assert sorted(cache.entries) == sorted(f"{w}|{i}" for w in "ab" for i in range(25))
    assert cache.get("b|7").total_pJ == 7.0 and cache.get("a|24").macs == 24


SWEEP = """
import torch
torch.set_num_threads(1)
import hwsim.sweep as sw
real = sw.estimate_accuracy
def slow(*a, **k):  # a little slower per point, so that the two sweeps interleave
    time.sleep(0.15)
    return real(*a, **k)
sw.estimate_accuracy = slow
sw.sweep(sys.argv[3], sys.argv[4], [0.40, 0.44, 0.48, 0.52, 0.80], Path(sys.argv[2]),
         realizations=4, seed=3, resume=True, label=sys.argv[5], progress=False)
"""


def test_two_sweeps_on_one_out_keep_both(trained, digits, tmp_path):
    """Two `sweep()` processes with different checkpoints writing one --out at once."""
    cks = {"normal": trained("normal"), "wcat": trained("wcat")}
    out = tmp_path / "both.csv"
    run_together(SWEEP, [[out, ck, ARCH, lab] for lab, ck in cks.items()], tmp_path)
    df = pd.read_csv(out)
    assert len(df) == 10 and not df.duplicated(["checkpoint", "voltage"]).any()
    assert df.groupby("label").voltage.apply(sorted).to_dict() == {
        lab: [0.40, 0.44, 0.48, 0.52, 0.80] for lab in cks}
    assert set(json.loads(sw.energy_sidecar(out).read_text())) == set(cks)
    # the same numbers as a sweep alone (per-point seeds)
    alone = sw.sweep(str(cks["wcat"]), ARCH, [0.40, 0.48], tmp_path / "alone.csv",
                     realizations=4, seed=3, label="wcat", data=digits[1], progress=False)
    both = df[(df.label == "wcat") & df.voltage.isin([0.40, 0.48])]
    assert list(both.acc_mean) == pytest.approx(list(alone.acc_mean), abs=1e-12)


def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("old\n")

    with pytest.raises(TypeError):
        write_text_atomic(f, 42)  # not text: fails while writing
    assert f.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
    write_text_atomic(f, "new\n")
    assert f.read_text() == "new\n" and oct(f.stat().st_mode & 0o777) != oct(0o600)


# ---------------------------------------------------------------- parallel mapping

def _shapes(*names, start=2):
    return [LayerShape(n, "conv", in_channels=start + i, out_channels=4, kernel=(3, 3),
                       output=(4, 4), input=(4, 4), stride=(1, 1), padding=(1, 1))
            for i, n in enumerate(names)]


@pytest.fixture
def fake_mapper(monkeypatch, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("HWSIM_TEST_PIDS", str(pids))
    monkeypatch.syspath_prepend(str(ROOT / "tests"))  # spawned workers import it by name
    import fake_mapper
    monkeypatch.setattr(backend, "map_layer", fake_mapper.map_layer)
    return pids


def test_parallel_mapping_matches_serial_and_fills_the_cache(fake_mapper, tmp_path,
                                                            monkeypatch):
    layers = _shapes("a", "b", "c", "d")
    layers.append(layers[0])  # a repeated shape is mapped once
    serial = network_energy(ARCH, layers, progress=False, cache_dir=tmp_path / "s", workers=1)
    assert {p.read_text() for p in fake_mapper.iterdir()} == {str(os.getpid())}
    for p in fake_mapper.iterdir():
        p.unlink()
    monkeypatch.setenv("HWSIM_TEST_TOGETHER", "1")  # each mapping waits for a second process
    t0 = time.monotonic()
    par = network_energy(ARCH, layers, progress=False, cache_dir=tmp_path / "p", workers=2)
    assert time.monotonic() - t0 < 45  # no mapping waited its 60 s in vain
    pids = {p.read_text() for p in fake_mapper.iterdir()}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two worker processes mapped
    assert [lr.total_uJ for lr in par.layers] == [lr.total_uJ for lr in serial.layers]
    assert par.total_uJ == pytest.approx(1.1e-6 * sum(lr.macs for lr in layers))
    assert not any(lr.cached for lr in par.layers)
    cache = json.loads((tmp_path / "p" / "energy.json").read_text())
    assert len(cache["entries"]) == 4
    again = network_energy(ARCH, layers, progress=False, cache_dir=tmp_path / "p", workers=2)
    assert all(lr.cached for lr in again.layers) and again.total_uJ == par.total_uJ


def test_a_failing_shape_is_one_error_and_the_others_stay_cached(fake_mapper, tmp_path):
    layers = _shapes("a", "bad", "c")
    with pytest.raises(ConfigError, match="layer 'bad': no valid mapping"):
        network_energy(ARCH, layers, progress=False, cache_dir=tmp_path, workers=2)
    entries = json.loads((tmp_path / "energy.json").read_text())["entries"]
    assert {v["layer"] for v in entries.values()} <= {"a", "c"} and len(entries) >= 1
    with pytest.raises(ConfigError, match=r"workers 0: must be an integer >= 1"):
        network_energy(ARCH, layers, progress=False, cache_dir=tmp_path, workers=0)


def test_cli_workers_must_be_positive(capsys):
    with pytest.raises(SystemExit) as e:
        main(["energy", "--model", "mlp", "--workers", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--workers: '0' is not an integer >= 1" in err and "Traceback" not in err


@pytest.mark.parametrize("cores, shapes, expect", [(2, 7, 2), (16, 7, 4), (16, 3, 3),
                                                   (1, 7, 1), (None, 7, 1), (8, 0, 1)])
def test_auto_workers_one_per_core_capped(monkeypatch, cores, shapes, expect):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert energy_mod.auto_workers(shapes) == expect


def test_default_workers_map_in_parallel(fake_mapper, tmp_path, monkeypatch):
    """No `workers` given: a pool of one process per core (two here) maps the shapes.
    (The pool's pids are not checked here: processes forked by an earlier test's server
    still see that test's $HWSIM_TEST_PIDS.)"""
    pools = []
    real = energy_mod.ProcessPoolExecutor

    def spy(workers, *a, **k):
        pools.append(workers)
        return real(workers, *a, **k)
    monkeypatch.setattr(energy_mod, "ProcessPoolExecutor", spy)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    shapes = _shapes("a", "b", "c")
    ne = network_energy(ARCH, shapes, progress=False, cache_dir=tmp_path)
    assert pools == [2]
    assert ne.total_uJ == pytest.approx(1.1e-6 * sum(s.macs for s in shapes))
    assert not any(lr.cached for lr in ne.layers)


def test_a_stand_in_that_cannot_leave_the_process_maps_serially(monkeypatch, tmp_path):
    """A lambda or closure standing in for the mapper is used in-process, not pickled."""
    seen = []

    def local(arch_file, layer, *, fast=True, mapper=None):
        seen.append(os.getpid())
        e = float(layer.macs)
        return backend.LayerEnergy(layer=layer.name, key=layer.key(),
                                   components_pJ={"WeightSRAM": e}, total_pJ=e,
                                   weight_memory_pJ=e, macs=layer.macs)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(backend, "map_layer", local)
    ne = network_energy(ARCH, _shapes("a", "b"), progress=False, cache_dir=tmp_path)
    assert seen == [os.getpid()] * 2 and ne.weight_memory_uJ == ne.total_uJ


def test_mapping_sets_an_unbounded_sympy_cache_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("SYMPY_CACHE_SIZE", raising=False)
    backend.use_unbounded_sympy_cache()
    assert os.environ["SYMPY_CACHE_SIZE"] == "none"
    monkeypatch.setenv("SYMPY_CACHE_SIZE", "5000")
    backend.use_unbounded_sympy_cache()
    assert os.environ["SYMPY_CACHE_SIZE"] == "5000"


@pytest.mark.slow
def test_live_parallel_mapping_equals_serial(tmp_path):
    """Real AccelForge in two worker processes gives the serial mapping's energies."""
    shapes = [LayerShape(f"t{m}", "conv", in_channels=4, out_channels=m, kernel=(3, 3),
                         output=(4, 4), input=(4, 4), stride=(1, 1), padding=(1, 1))
              for m in (4, 8)]
    par = network_energy(ARCH, shapes, progress=False, cache_dir=tmp_path / "p", workers=2)
    ser = network_energy(ARCH, shapes, progress=False, cache_dir=tmp_path / "s", workers=1)
    for a, b in zip(par.layers, ser.layers):
        assert not a.cached and a.components_uJ == pytest.approx(b.components_uJ, rel=1e-9)
    assert len(json.loads((tmp_path / "p" / "energy.json").read_text())["entries"]) == 2
