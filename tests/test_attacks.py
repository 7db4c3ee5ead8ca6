"""BFA / stealthy T-BFA on small seeded digits models (small CNN, 4 bits; shared fixtures)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwsim.cli import main
from hwsim.models import StoredWeights, load_checkpoint, quant_layers
from hwsim.models.attacks import (BitSearch, HeldOutCheck, _ce, bfa_nflip, bfa_run, bit_weights,
                                  hamming_distance, random_guess_threshold, random_nflip,
                                  split_attack_batch)
from hwsim.models.tbfa import tbfa, tbfa_all_pairs
from hwsim.models.errors import ConfigError
from hwsim.models.faults import from_unsigned, to_unsigned
from hwsim.models.train import TrainConfig, train


@pytest.fixture(scope="module", autouse=True)
def one_thread(digits):
    """The attacks are many tiny passes: one thread is fastest (set after `digits`, which
    picks 2 threads for the session)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def models(trained, one_thread):
    return {q: load_checkpoint(trained(q))[0] for q in ("normal", "wcat")}


@pytest.fixture(scope="module")
def bfa_results(models, digits):
    """BFA over seeds 0..4 for both quantizers, computed once for the module."""
    return {q: bfa_nflip(m, digits[1], seeds=5, attack_batch=128, max_flips=300, seed=0)
            for q, m in models.items()}


# ----------------------------------------------------------------------------- encoding

def test_bit_weights_reconstruct_twos_complement():
    for bits in (2, 4, 8):
        v = torch.arange(-(1 << (bits - 1)), 1 << (bits - 1))
        u = to_unsigned(v, bits)
        w = bit_weights(bits)
        rec = sum(((u >> j) & 1).float() * w[j] for j in range(bits))
        assert torch.equal(rec, v.float())
        # flipping bit j changes the integer by (1 - 2*bit) * w_j
        for j in range(bits):
            bit = ((u >> j) & 1).float()
            flipped = from_unsigned(u ^ (1 << j), bits).float()
            assert torch.equal(flipped - v.float(), (1 - 2 * bit) * w[j])


def test_hamming_distance():
    a = torch.tensor([0, 7, -8, -1], dtype=torch.int16)
    b = torch.tensor([1, 6, 7, -1], dtype=torch.int16)  # 1 + 1 + 4 + 0 bits
    assert hamming_distance(a, b, 4) == 6


def test_random_guess_thresholds():
    assert random_guess_threshold(10) == pytest.approx(0.11)
    assert random_guess_threshold(100) == pytest.approx(0.011)
    assert random_guess_threshold(1000) == pytest.approx(0.0011)


def test_attack_split_is_seeded_disjoint_and_stratified(digits):
    y = digits[1].labels.numpy()
    a, h = split_attack_batch(y, 128, 3)
    a2, h2 = split_attack_batch(y, 128, 3)
    assert np.array_equal(a, a2) and np.array_equal(h, h2)
    assert len(a) == 128 and len(h) == len(y) - 128
    assert set(a).isdisjoint(h) and set(a) | set(h) == set(range(len(y)))
    assert not np.array_equal(a, split_attack_batch(y, 128, 4)[0])
    share = np.bincount(y[h], minlength=10) / len(h)
    assert share.max() < random_guess_threshold(10)  # a constant predictor is below 11%


# ----------------------------------------------------------------------------- BFA

def test_bfa_crushes_with_far_fewer_flips_than_random(models, digits, bfa_results):
    r = bfa_results["normal"]
    assert all(r["reached"])
    assert all(a < 0.11 for a in r["final_accuracies"])
    assert all(a > 0.9 for a in r["clean_accuracies"])
    assert 1 <= r["n_flip_mean"] <= 60
    rand = random_nflip(models["normal"], digits[1], seeds=2, max_flips=20000, step=100)
    assert all(rand["reached"])
    # random flips need > 10x the flips (measured: ~2000-4000 vs ~15)
    assert min(rand["n_flips"]) > 10 * max(r["n_flips"])


def test_wcat_needs_more_flips_than_normal(bfa_results):
    n, w = bfa_results["normal"], bfa_results["wcat"]
    assert all(w["reached"]) and all(n["reached"])
    assert w["n_flip_mean"] > n["n_flip_mean"] + 2
    # same attack batches (same seeds): wcat resists more on most of them. Not on every one:
    # which trained checkpoints the session cache holds depends on test order and CPU
    # (measured: normal [12, 15, 17, 15, 12] vs wcat [18, 25, 18, 21, 18] with this module
    # alone; [10, 20, 10, 11, 14] vs [14, 18, 17, 20, 17] after tests/test_a*.py on an
    # AVX512-BF16 EPYC, where the 3-seed "every one" version of this test failed)
    assert sum(b > a for a, b in zip(n["n_flips"], w["n_flips"])) >= 3


def test_result_fields(bfa_results, models):
    r = bfa_results["normal"]
    assert r["n_flip_mean"] == pytest.approx(np.mean(r["n_flips"]))
    assert r["n_flip_std"] == pytest.approx(np.std(r["n_flips"], ddof=1))
    names = [n for n, _ in quant_layers(models["normal"])]
    assert list(r["layer_histogram"]) == names
    assert sum(r["layer_histogram"].values()) == sum(r["n_flips"])
    json.dumps(r)  # JSON-serializable for the study runner


def test_bfa_deterministic_and_hamming_invariant(models, digits):
    model = models["normal"]
    clean = StoredWeights(model).ints
    a = bfa_run(model, digits[1], seed=5, max_flips=300)
    b = bfa_run(model, digits[1], seed=5, max_flips=300)
    assert a.n_flip == b.n_flip > 0
    assert [(f.layer, f.index, f.bit) for f in a.flips] == [(f.layer, f.index, f.bit)
                                                             for f in b.flips]
    assert torch.equal(a.ints, b.ints)
    assert hamming_distance(clean, a.ints, 4) == a.n_flip
    for f in a.flips:  # every committed flip changes exactly one bit of one integer
        assert hamming_distance(torch.tensor([f.before]), torch.tensor([f.after]), 4) == 1
    # the attacked integers reproduce the reported accuracy
    stored = StoredWeights(model)
    _, h = split_attack_batch(digits[1].labels.numpy(), 64, 5)  # bfa_run's default batch
    x, y = digits[1].subset(h).tensors()
    with stored.installed(stored.weights(a.ints)):
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(a.final_accuracy) and acc < 0.11
    # the clean accuracy (from the scores shared by all seeds) is the held-out set's
    with stored.installed(stored.weights(stored.ints)):
        clean = float((model(x).argmax(1) == y).float().mean())
    assert clean == pytest.approx(a.clean_accuracy) and clean > 0.9


def test_attack_never_mutates_the_model(models, digits):
    model = models["wcat"]
    model.train()  # whatever mode it was in is restored
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bfa_run(model, digits[1], seed=1, max_flips=5)
    tbfa(model, digits[1], 3, 8, seeds=1, max_flips=3)
    assert model.training
    model.eval()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(getattr(m, "weight_override", None) is None for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_iteration_costs_one_backward_and_one_eval_per_layer(models, digits):
    model = models["normal"]
    x, y = digits[1].tensors()
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        for topk in (1, 3):
            search = BitSearch(model, _ce, topk=topk)
            with search.attacking():
                calls.clear()
                search.step(x[:128], y[:128])
            assert len(calls) <= 1 + topk * len(search.names)
    finally:
        hook.remove()


def test_bit_gains_match_finite_differences(models, digits):
    """The first-order gain of a bit predicts the sign of the actual loss change for the
    strongest candidates."""
    model = models["normal"]
    x, y = digits[1].tensors()
    x, y = x[:128], y[:128]
    search = BitSearch(model, _ce)
    with search.attacking():
        ws = [w.detach().requires_grad_(True) for w in search.weights]
        for l, w in enumerate(ws):
            search._set(l, w)
        grads = torch.autograd.grad(_ce(model(x), y), ws)
        gains = search._gains(grads)
        for l, w in enumerate(search.weights):
            search._set(l, w)
        base = float(_ce(model(x), y).detach())
        for l, g in enumerate(gains):
            # a bit with positive first-order gain exists in every layer of a trained model
            p = int(g.reshape(-1).argmax())
            idx, j = divmod(p, 4)
            v = int(search.ints[l][idx])
            new = int(from_unsigned(torch.tensor((v % 16) ^ (1 << j)), 4))
            assert (new - v) == (1 - 2 * ((v % 16) >> j & 1)) * int(bit_weights(4)[j])
            w = search.weights[l].clone()
            w.view(-1)[idx] = new * search.stored.scales[l]
            search._set(l, w)
            assert float(_ce(model(x), y).detach()) > base
            search._set(l, search.weights[l])


# ----------------------------------------------------------------------------- T-BFA

def test_tbfa_reaches_target_and_keeps_other_classes(models, digits):
    r = tbfa(models["normal"], digits[1], 3, 8, seeds=2, max_flips=100)
    assert r["clean_asr_mean"] < 0.1
    assert all(r["reached"]) and r["asr_mean"] >= 0.99
    assert r["clean_other_accuracy_mean"] > 0.95
    assert r["other_accuracy_mean"] > 0.9  # stealthy: other classes keep their accuracy
    assert 1 <= r["n_flip_mean"] <= 50
    json.dumps(r)


def test_tbfa_paper_protocol_split_and_stop(models, digits):
    """--protocol paper: half the source class plus as many other images attack, the rest is
    held out (disjoint, seeded); the run stops once the attacked or held-out source images
    reach the target ASR, which it reports for both."""
    from hwsim.models.tbfa import tbfa_split
    y = digits[1].tensors()[1]
    a, h = tbfa_split(y, 3, seed=0, protocol="paper")
    n3 = int((y == 3).sum())
    assert int((y[a] == 3).sum()) == n3 // 2 and len(a) == 2 * (n3 // 2)
    assert len(set(a.tolist()) | set(h.tolist())) == len(y) and not set(a.tolist()) & set(
        h.tolist())
    a1, _ = tbfa_split(y, 3, seed=1, protocol="paper")
    assert a1.tolist() != a.tolist()
    assert tbfa_split(y, 3, seed=0, protocol="paper")[0].tolist() == a.tolist()
    a2, _ = tbfa_split(y, 3, seed=0, protocol="paper", source_images=5, aux_images=7)
    assert int((y[a2] == 3).sum()) == 5 and len(a2) == 12
    with pytest.raises(ConfigError, match="source images 1000"):
        tbfa_split(y, 3, seed=0, protocol="paper", source_images=1000)
    with pytest.raises(ConfigError, match="protocol 'x'"):
        tbfa_split(y, 3, seed=0, protocol="x")
    r = tbfa(models["normal"], digits[1], 3, 8, seeds=2, max_flips=100, protocol="paper",
             target_asr=1.0)
    assert r["protocol"] == "paper" and r["attack_source_images"] == n3 // 2
    assert all(r["reached"])
    assert all(max(x, z) >= 1.0 for x, z in zip(r["asrs"], r["attack_asrs"]))
    assert r["other_accuracy_mean"] > 0.8 and 1 <= r["n_flip_mean"] <= 100
    json.dumps(r)


def test_tbfa_all_pairs_matrix(models, digits):
    r = tbfa_all_pairs(models["normal"], digits[1], classes=[0, 1, 2], seeds=1, max_flips=60)
    assert len(r["pairs"]) == 6
    m = r["n_flip_matrix"]
    assert [m[i][i] for i in range(3)] == [None] * 3
    assert all(m[i][j] >= 1 for i in range(3) for j in range(3) if i != j)
    assert 0 <= r["asr_mean"] <= 1
    json.dumps(r)


# ----------------------------------------------------------------------------- CLI

def test_cli_bfa_json_and_errors(trained, capsys):
    ck = str(trained("normal"))
    assert main(["attack", "bfa", "--checkpoint", ck, "--seeds", "1", "--json",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_flips"][0] >= 1 and out["reached"] == [True] and out["method"] == "normal"
    assert main(["attack", "tbfa", "--checkpoint", ck, "--source", "3", "--no-progress"]) == 2
    assert "--target is required" in capsys.readouterr().err
    assert main(["attack", "tbfa", "--checkpoint", ck, "--source", "3", "--target", "3",
                 "--no-progress"]) == 2
    assert main(["attack", "bfa", "--checkpoint", ck, "--attack-batch", "100000"]) == 2
    assert main(["attack", "bfa", "--checkpoint", ck + ".missing"]) == 2


def test_cli_rejects_float_checkpoint(digits, tmp_path, capsys):
    ck = tmp_path / "float.pt"  # one epoch of the float MLP is enough to be a checkpoint
    train(TrainConfig(model="mlp", epochs=1), ck, progress=False, log=lambda s: None, data=digits)
    assert main(["attack", "bfa", "--checkpoint", str(ck), "--no-progress"]) == 2
    assert "float model" in capsys.readouterr().err


def test_cli_tbfa_text(trained, capsys):
    assert main(["attack", "tbfa", "--checkpoint", str(trained("normal")), "--source", "3",
                 "--target", "8", "--seeds", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 -> 8" in out and "attack success rate" in out
    assert main(["attack", "tbfa", "--checkpoint", str(trained("normal")), "--source", "3",
                 "--target", "8", "--source-images", "5", "--no-progress"]) == 2
    assert "apply to --protocol paper only" in capsys.readouterr().err


def test_prefix_reuse_gives_the_same_flips(models, digits):
    """Reusing the outputs of the layers before l in the in-layer search is exact."""
    model = models["wcat"]
    x, y = digits[1].tensors()
    hist = {}
    for reuse in (True, False):
        search = BitSearch(model, _ce, topk=2, reuse_prefix=reuse)
        with search.attacking():
            for _ in range(8):
                search.step(x[:128], y[:128])
        hist[reuse] = [(f.layer, f.index, f.bit, f.objective) for f in search.history]
    assert hist[True] == hist[False] and len(hist[True]) == 8
    assert all("forward" not in vars(m) for m in model.modules())


def test_cli_tbfa_all_pairs_json(trained, capsys):
    ck = str(trained("normal"))
    assert main(["attack", "tbfa", "--checkpoint", ck, "--all-pairs", "--classes", "0,1",
                 "--seeds", "1", "--max-flips", "40", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == [0, 1] and len(out["pairs"]) == 2
    assert out["n_flip_matrix"][0][0] is None and out["n_flip_matrix"][0][1] >= 1
    assert main(["attack", "tbfa", "--checkpoint", ck, "--all-pairs", "--source", "1"]) == 2
    assert main(["attack", "tbfa", "--checkpoint", ck, "--all-pairs", "--out", "x.json"]) == 2
    assert "--out resumes one source/target pair" in capsys.readouterr().err


def test_bfa_runs_on_channels_last_weights(trained, digits):
    """CIFAR inference converts models to channels-last; the bit search must still commit
    flips into the right logical weight."""
    model, _ = load_checkpoint(trained("normal"))
    model.to(memory_format=torch.channels_last)
    run = bfa_run(model, digits[1], attack_batch=64, max_flips=3, seed=0)
    assert run.n_flip >= 1
    stored = StoredWeights(model)  # the model itself is untouched by the attack
    names = [n for n, _ in quant_layers(model)]
    final = {}
    for f in run.flips:  # a weight may lose several bits; the last flip holds its value
        pos = sum(stored.sizes[:names.index(f.layer)]) + f.index
        final.setdefault(pos, int(stored.ints[pos]))
        assert final[pos] == f.before
        final[pos] = f.after
    assert all(int(run.ints[p]) == v for p, v in final.items())
    changed = (run.ints != stored.ints).nonzero().reshape(-1).tolist()
    assert sorted(changed) == sorted(p for p, v in final.items() if v != int(stored.ints[p]))


def test_held_out_check_is_exact_and_learns_its_order(models, digits):
    """The ordered early-stopping check answers exactly `accuracy < threshold` as the weights
    degrade; asked twice about the same weights, the learned order never needs more images,
    and over a degrading network it needs fewer."""
    from hwsim.models.evaluate import accuracy
    model = models["normal"]
    x, y = digits[1].tensors()
    stored = StoredWeights(model)
    flips = np.random.default_rng(0).choice(stored.n_bits, size=3000, replace=False)
    checks = {t: HeldOutCheck(x, y, t, batch_size=16) for t in (0.11, 0.5, 0.9, 0.97)}
    answers, cost = set(), {"first": 0, "again": 0}
    model.eval()
    for k in (0, 30, 100, 300, 1000, 3000):
        with stored.installed(stored.flipped(flips[:k])):
            acc = accuracy(model, (x, y))
            for t, check in checks.items():
                spent = []
                for _ in range(2):
                    before = check.images
                    assert check(model) == (acc < t), (k, t, acc)
                    spent.append(check.images - before)
                answers.add(acc < t)
                assert spent[1] <= spent[0], (k, t)
                cost["first"] += spent[0]
                cost["again"] += spent[1]
    assert answers == {True, False}  # both outcomes were exercised
    assert cost["again"] < cost["first"]
