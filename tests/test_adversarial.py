"""Adversarial training with BFA in the loop (models/adversarial.py; paper App. E)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from hwsim.cli import main
from hwsim.models import StoredWeights, load_checkpoint, quant_layers
from hwsim.models.adversarial import (AdversarialFlips, add_faulty_gradients, attack_deltas,
                                      faulty)
from hwsim.models.checkpoint import read_checkpoint
from hwsim.models.errors import ConfigError
from hwsim.models.train import TrainConfig, train


def _batch(digits, n=64):
    x, y = digits[1].tensors()
    return x[:n], y[:n]


def test_attack_deltas_are_bfa_flips_that_raise_the_batch_loss(trained, digits):
    model, _ = load_checkpoint(trained("normal"))
    model.train()
    x, y = _batch(digits)
    before = StoredWeights(model).ints.clone()
    deltas = attack_deltas(model, x, y, 3)
    assert model.training  # modes restored
    assert torch.equal(StoredWeights(model).ints, before)  # the model is not changed
    changed = sum(int((d != 0).sum()) for _, d in deltas)
    assert 1 <= changed <= 3
    for (m, d), (_, q) in zip(deltas, quant_layers(model)):
        assert m is q
        steps = d[d != 0] / q.quantizer.integers(q.weight)[1]  # multiples of the scale
        assert torch.allclose(steps, steps.round(), atol=1e-4)
    model.eval()
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y)
        with faulty(deltas):
            hit = F.cross_entropy(model(x), y)
    assert hit > clean
    assert all(m.weight_delta is None for m, _ in deltas)


def test_faulty_gradients_are_clipped_and_added_and_bn_stats_kept(trained, digits):
    model, _ = load_checkpoint(trained("wcat"))
    model.train()
    x, y = _batch(digits)
    adv = AdversarialFlips(2, clip=1e-3)
    torch.manual_seed(0)
    F.cross_entropy(model(x), y).backward()
    clean = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    bn = {n: b.clone() for n, b in model.named_buffers()}
    deltas = attack_deltas(model, x, y, 2)
    params = dict(model.named_parameters())
    for p in params.values():
        p.grad = None
    with faulty(deltas):
        F.cross_entropy(model(x), y).backward()
    want = {n: clean[n] + p.grad.clamp(-1e-3, 1e-3) for n, p in params.items()
            if p.grad is not None}
    assert any((p.grad.abs() > 1e-3).any() for p in params.values() if p.grad is not None)
    for n, b in model.named_buffers():  # put the clean state back, run the real thing
        b.copy_(bn[n])
    for n, p in params.items():
        p.grad = clean[n].clone() if n in clean else None
    add_faulty_gradients(model, model, x, y, adv)
    for n, g in want.items():
        assert torch.allclose(params[n].grad, g, atol=1e-6), n
    for n, b in model.named_buffers():  # the faulty pass left no batch-norm statistics
        assert torch.equal(b, bn[n]), n


def test_adversarial_training_records_its_recipe_and_resumes(digits, tmp_path):
    """The recipe records K, start loss and clip (recipes without them read as before); the
    BFA-in-the-loop state survives a resume: a run killed after epoch 1 and resumed ends
    where an uninterrupted one does."""
    cfg = TrainConfig(quantizer="normal", bits=4, epochs=2, batch_size=64, lr=0.05,
                      adv_flips=2)
    logged = []
    full = train(cfg, tmp_path / "a.pt", progress=False, log=logged.append, data=digits)
    assert [json.loads(line)["adversarial"] for line in logged] == [
        h["adversarial"] for h in full["history"]]
    rec = full["config"]["train"]
    assert (rec["adv_flips"], rec["adv_start_loss"], rec["adv_clip"]) == (2, 1.75, 0.05)
    assert "adv_flips" not in TrainConfig(quantizer="normal").recipe()
    from hwsim.models.checkpoint import method_name
    assert method_name(full["config"]) == "normal+adv2"
    assert full["history"][-1]["adversarial"] is True  # digits' loss passes 1.75 at once
    lines = []

    def killed_in_epoch_2(line):
        lines.append(line)
        if len(lines) == 2:
            raise KeyboardInterrupt
    out = tmp_path / "b.pt"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=False, log=killed_in_epoch_2, data=digits)
    assert read_checkpoint(out)["epoch"] == 1
    got = train(cfg, out, resume=True, progress=False, log=lambda s: None, data=digits)
    for a, b in zip(got["history"], full["history"], strict=True):
        assert a["test_acc"] == b["test_acc"] and a["adversarial"] == b["adversarial"]
    assert all(torch.equal(got["model_state"][k], full["model_state"][k])
               for k in full["model_state"])


@pytest.mark.parametrize("kw, message", [
    (dict(quantizer=None, adv_flips=2), "needs a quantizer"),
    (dict(quantizer="normal", adv_flips=2, adv_clip=0.0), "adv_clip=0.0"),
    (dict(quantizer="normal", adv_flips=2, adv_start_loss=-1.0), "adv_start_loss=-1.0"),
])
def test_adversarial_recipe_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kw).validate()


def test_cli_and_study_reject_bad_adv_flips(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--quantizer", "normal", "--adv-flips", "0", "--out",
              str(tmp_path / "x.pt")])
    assert e.value.code == 2
    assert "--adv-flips: '0' is not an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
    from hwsim.study_spec import load_study
    f = tmp_path / "s.yaml"
    f.write_text("name: s\ndata: {name: digits}\nnetwork: small_cnn\nmethods:\n"
                 "  - {quantizer: normal, adv_flips: -1}\narch: ../arch/eyeriss_sram.yaml\n"
                 "voltages: {min: 0.5, max: 0.8, step: 0.1}\n")
    with pytest.raises(ConfigError, match=r"methods\[0\]\.adv_flips"):
        load_study(f)
