"""--device: names are checked up front; on a CUDA machine, GPU training and evaluation
follow the CPU recipe (same draws, CPU checkpoints). The cuda tests skip without a GPU."""
import numpy as np
import pytest
import torch

from models import evaluate_under_bit_errors, load_checkpoint
from models.device import resolve_device
from models.errors import ConfigError
from models.train import TrainConfig, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_device_names():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, msg in [("gpu", "valid: cpu, cuda, cuda:N, auto"), ("cuda:x", "cuda or cuda:N")]:
        with pytest.raises(ConfigError, match=msg):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clean_error(digits, tmp_path):
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        train(TrainConfig(epochs=1), tmp_path / "x.pt", progress=False, log=lambda s: None,
              data=digits, device="cuda")
    assert not (tmp_path / "x.pt").exists()


@cuda
def test_gpu_training_and_evaluation_match_the_cpu(digits, tmp_path):
    cfg = TrainConfig(quantizer="wcat", bfn_rate=5e-3, epochs=4, batch_size=64, lr=0.05, seed=0)
    runs = {}
    for dev in ("cpu", "cuda"):
        ck = train(cfg, tmp_path / f"{dev}.pt", progress=False, log=lambda s: None, data=digits,
                   device=dev)
        assert all(t.device.type == "cpu" for t in ck["model_state"].values())
        runs[dev] = ck["history"][-1]["test_acc"]
    # same recipe and random draws; only float rounding differs (cuDNN vs CPU kernels)
    assert runs["cuda"] >= 0.85 and abs(runs["cuda"] - runs["cpu"]) <= 0.03

    model, _ = load_checkpoint(tmp_path / "cuda.pt")  # a GPU checkpoint loads on the CPU
    cpu = evaluate_under_bit_errors(model, digits[1], 0.01, realizations=10, seed=3)
    gpu = evaluate_under_bit_errors(model.to("cuda"), digits[1], 0.01, realizations=10, seed=3)
    assert gpu.flips == cpu.flips  # identical bit-error patterns
    assert gpu.clean == pytest.approx(runs["cuda"])
    assert np.abs(np.subtract(gpu.accuracies, cpu.accuracies)).max() <= 2 / len(digits[1])
