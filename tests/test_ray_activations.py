"""--executor ray with activation domains (issue 22 leftovers): a sweep whose scaled domains
hold activations runs its points as Ray tasks and gives the serial run's rows."""
from pathlib import Path

import pandas as pd
import pytest

import hwsim.sweep as sw
from hwsim.executor import RayExecutor
from hwsim.scenario import Scenario

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent
CK = str(ROOT / "studies" / "results" / "digits_quickstart" / "checkpoints" / "wcat_bfn.pt")
DOMAINS = str(ROOT / "arch" / "eyeriss_sram_domains.yaml")  # cached energies, no mapping


@pytest.mark.slow
def test_ray_activation_sweep_equals_serial(digits, tmp_path):
    grid = [0.40, 0.46, 0.70]  # activation faults hurt at 0.40 V, nothing flips at 0.70 V
    kw = dict(realizations=4, seed=3, data=digits[1], progress=False)
    rows = {}
    for sc in (Scenario(("weights", "activations")), Scenario(("activations",), "msb:2")):
        rows[sc] = sw.sweep(CK, DOMAINS, grid, tmp_path / "serial.csv", scenario=sc,
                            resume=True, **kw)
    serial = pd.read_csv(tmp_path / "serial.csv")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with RayExecutor() as ex:
            for sc in rows:
                sw.sweep(CK, DOMAINS, grid, tmp_path / "ray.csv", scenario=sc, executor=ex,
                         resume=True, **kw)
            assert ex.completed == 2 * len(grid)  # one task per point
    finally:
        ray.shutdown()
    remote = pd.read_csv(tmp_path / "ray.csv")
    key = ["label", "voltage"]
    serial = serial.sort_values(key).reset_index(drop=True)
    remote = remote.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(remote, serial)
    both = serial[serial["label"] == "wcat+bfn [weights+activations]"].set_index("voltage")
    assert set(both["estimator"]) == {"mc"} and both.loc[0.40, "acc_mean"] < both.loc[
        0.40, "acc_clean"]
    only_a = serial[serial["label"] == "wcat+bfn [activations, msb:2]"]
    assert (only_a["expected_flips"] == 0).all() and len(only_a) == len(grid)
