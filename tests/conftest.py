"""Shared fixtures: small seeded digits models, trained once per test session."""
from __future__ import annotations

import pytest
import torch

from hwsim.models.data import load_digits
from hwsim.models.train import TrainConfig, train

# short recipe: ~10 epochs of the small CNN on digits, a few seconds each
RECIPE = dict(model="small_cnn", epochs=10, batch_size=64, lr=0.05, seed=0)


@pytest.fixture(scope="session")
def digits():
    torch.set_num_threads(2)
    return load_digits()


@pytest.fixture(scope="session")
def trained(digits, tmp_path_factory):
    """trained(quantizer, bfn_rate) -> checkpoint path (cached for the session)."""
    cache: dict = {}
    folder = tmp_path_factory.mktemp("ckpt")

    def get(quantizer: str | None, bfn_rate: float = 0.0, **params):
        key = (quantizer, bfn_rate, tuple(sorted(params.items())))
        if key not in cache:
            cfg = TrainConfig(quantizer=quantizer, bits=4, bfn_rate=bfn_rate,
                              quantizer_params=params, **RECIPE)
            path = folder / f"{quantizer}_{bfn_rate}_{len(cache)}.pt"
            train(cfg, path, progress=False, log=lambda s: None, data=digits)
            cache[key] = path
        return cache[key]
    return get
