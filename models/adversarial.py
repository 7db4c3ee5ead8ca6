"""Adversarial training with BFA in the loop (the WCAT paper's App. E / Table 3).

Once the training loss has fallen below `start_loss` (paper: 1.75), every step also trains on
a faulty copy of the network: BFA's progressive bit search (models.attacks.BitSearch) picks
`flips` bits of the current stored integers that raise the loss on this very batch most
(paper: k = 2, 5 or 10), the batch is passed again with those flips added to the quantized
weights (straight through: the gradient reaches the float weights and the ranges as with
bit-flip noise training), and that faulty pass's gradients, clipped elementwise to
+/- `clip` (paper: 0.05), are added to the clean pass's. Batch-norm running statistics are
those of the clean pass only (the faulty pass's updates are undone).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import BitSearch, _ce
from .errors import ConfigError


@dataclass(frozen=True)
class AdversarialFlips:
    """k bit flips per step chosen by BFA, from the first step whose running loss is below
    start_loss; the faulty pass's gradients clipped to +/- clip."""
    flips: int
    start_loss: float = 1.75
    clip: float = 0.05

    def validate(self) -> None:
        if not (isinstance(self.flips, int) and self.flips >= 1):
            raise ConfigError(f"adv_flips={self.flips!r}: must be an integer >= 1")
        if not self.start_loss > 0:
            raise ConfigError(f"adv_start_loss={self.start_loss!r}: must be > 0")
        if not self.clip > 0:
            raise ConfigError(f"adv_clip={self.clip!r}: must be > 0")


def attack_deltas(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  flips: int) -> list[tuple[nn.Module, torch.Tensor]]:
    """[(quantized layer, change of its quantized weights)] after `flips` steps of BFA's bit
    search on (x, y) against the model's current weights; the model is left as it was."""
    search = BitSearch(model, _ce, topk=1)
    clean = list(search.weights)
    with search.attacking():
        for _ in range(flips):
            if search.step(x, y) is None:
                break
    return [(m, (w - c).detach()) for m, w, c in zip(search.stored.layers, search.weights,
                                                     clean)]


@contextlib.contextmanager
def faulty(deltas):
    """The quantized layers compute with their weights plus `deltas` (straight through)."""
    try:
        for m, d in deltas:
            m.weight_delta = d
        yield
    finally:
        for m, _ in deltas:
            m.weight_delta = None


@contextlib.contextmanager
def _frozen_bn_stats(model: nn.Module):
    saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats and m.running_mean is not None]
    try:
        yield
    finally:
        for m, mean, var, n in saved:
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(n)


def add_faulty_gradients(model: nn.Module, step_model: nn.Module, x: torch.Tensor,
                         y: torch.Tensor, adv: AdversarialFlips) -> float:
    """After the clean backward pass: add the clipped gradients of the faulty pass (module
    docstring) to every parameter's .grad; returns the faulty pass's loss."""
    deltas = attack_deltas(model, x, y, adv.flips)
    model.train()  # the search ran in eval mode and restored it; be explicit
    params = [p for p in model.parameters() if p.requires_grad]
    clean = [p.grad for p in params]
    for p in params:
        p.grad = None
    with faulty(deltas), _frozen_bn_stats(model):
        loss = F.cross_entropy(step_model(x), y)
        loss.backward()
    for p, g in zip(params, clean):
        extra = None if p.grad is None else p.grad.clamp(-adv.clip, adv.clip)
        p.grad = g if extra is None else (extra if g is None else g + extra)
    return float(loss.detach())
