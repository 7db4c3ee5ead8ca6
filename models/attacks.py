"""Adversarial bit-flip attacks on the stored weight integers.

- BFA (Rakin et al. 2019): progressive bit search that maximizes the loss on one attack batch
  (64 test images by default, the WCAT paper's App. B.4) until the accuracy on the rest of the
  test set meets a stop rule (STOP_RULES: 'lt11', below 1.1 / classes, i.e. < 11% for 10
  classes, as the paper's text states; 'le10.1', at most 1.01 / classes, i.e. <= 10.1%, as the
  authors' code does) or the flip budget is spent. `compare_nflip` tests whether one method's
  N_flip over seeds exceeds another's (one-sided Mann-Whitney U and Welch t).
- Stealthy T-BFA (Rakin et al. 2021): the same search with a targeted objective, in
  models/tbfa.py.

One iteration of the progressive bit search:
  1. one forward/backward pass on the attack batch gives dL/dW_hat for every layer; a bit j of
     a stored integer changes W_hat by scale * delta with delta = (1 - 2*bit) * w_j, where
     w_j = 2^j for j < b-1 and w_{b-1} = -2^(b-1) (two's complement); its first-order gain is
     dL/dW_hat * scale * delta;
  2. in-layer search: in every layer the top-k bits with positive gain are candidates, and the
     loss is evaluated (one forward pass each) with each candidate flipped alone;
  3. cross-layer search: the single candidate that raises the objective most is committed.
A bit is never flipped twice, so the Hamming distance between the clean and the attacked
integers equals the number of committed flips.

The trained model is never mutated: the attack works on a copy of the stored integers and
installs the attacked weights as per-layer overrides (models.evaluate.StoredWeights), which are
removed afterwards.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import stats
from tqdm import tqdm

from .errors import ConfigError
from .evaluate import (StoredWeights, eval_batch_size, on_model_device, predict,
                       use_channels_last)
from .faults import to_unsigned
from .quant import quant_layers


# ----------------------------------------------------------------------------- helpers

def random_guess_threshold(num_classes: int) -> float:
    """Accuracy below which a network is 'crushed': 1.1x random guess (11% for 10 classes)."""
    return 1.1 / num_classes


@dataclass(frozen=True)
class StopRule:
    """When BFA counts a network as crushed: held-out accuracy `< factor / classes`
    (inclusive=False) or `<= factor / classes` (inclusive=True)."""
    name: str
    factor: float
    inclusive: bool
    text: str  # for 10 classes, e.g. "< 11%"

    def threshold(self, num_classes: int) -> float:
        """The accuracy bound for `num_classes` classes."""
        return self.factor / num_classes

    def need(self, n: int, num_classes: int) -> float:
        """Correct held-out images (of n) that decide "not crushed yet": the rule is met
        exactly when fewer than this many are correct (an integer; the 1e-9 absorbs float
        rounding of factor / classes * n, e.g. 1.1 / 10 * 100 = 11.000000000000002)."""
        t = self.threshold(num_classes) * n
        return math.floor(t + 1e-9) + 1 if self.inclusive else math.ceil(t - 1e-9)


STOP_RULES = {r.name: r for r in (
    StopRule("lt11", 1.1, False, "< 11%"),      # the WCAT paper's text (App. B.4)
    StopRule("le10.1", 1.01, True, "<= 10.1%"),  # the authors' public code
)}
DEFAULT_STOP_RULE = "lt11"
DEFAULT_ATTACK_BATCH = 64  # the WCAT paper's App. B.4


def stop_rule(name: str) -> StopRule:
    """The StopRule called `name` (ConfigError naming the valid ones otherwise)."""
    if name not in STOP_RULES:
        raise ConfigError(f"stop rule {name!r}: valid: {', '.join(STOP_RULES)} "
                          f"({', '.join(r.text for r in STOP_RULES.values())} for 10 classes)")
    return STOP_RULES[name]


def compare_nflip(a, b, name_a: str = "A", name_b: str = "B") -> dict:
    """Does method B need more flips than method A? Per-seed N_flip lists `a` and `b` (runs
    that spent the budget count the budget, so ranks are right even when censored).
    One-sided tests of "B > A": Mann-Whitney U (exact for small samples without ties) and
    Welch's t. Returns means, stds, U, t and both p-values."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ConfigError(f"comparing N_flip needs >= 2 seeds per method "
                          f"({name_a}: {len(a)}, {name_b}: {len(b)})")
    mw = stats.mannwhitneyu(b, a, alternative="greater")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant samples: handled below
        wt = stats.ttest_ind(b, a, equal_var=False, alternative="greater")
    p_t = float(wt.pvalue)
    if math.isnan(p_t):  # both constant: no evidence either way unless the means differ
        p_t = 0.0 if b.mean() > a.mean() else 1.0
    return {"a": name_a, "b": name_b, "seeds_a": len(a), "seeds_b": len(b),
            "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "std_a": _std(a), "std_b": _std(b),
            "mannwhitney_u": float(mw.statistic), "p_mannwhitney": float(mw.pvalue),
            "welch_t": float(wt.statistic), "p_welch": p_t}


def comparison_line(c: dict) -> str:
    """One line for reports: "does B raise N_flip over A: mean -> mean, p = ..."."""
    return (f"does {c['b']} raise N_flip over {c['a']}: {c['mean_a']:.1f} +/- {c['std_a']:.1f}"
            f" -> {c['mean_b']:.1f} +/- {c['std_b']:.1f} ({c['seeds_a']} vs {c['seeds_b']} "
            f"seeds), one-sided Mann-Whitney U p = {c['p_mannwhitney']:.3g}, "
            f"Welch t p = {c['p_welch']:.3g}")


def split_attack_batch(labels, attack_batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(attack indices, held-out indices) of a test set, seeded and stratified by class: every
    class gives the attack batch its share of the test set (random images of it), so the
    held-out set keeps the test set's class balance. Without this, on a small test set a
    network crushed to one constant class can keep that class's over-represented held-out share
    above the random-guess threshold forever."""
    labels = np.asarray(labels)
    n = len(labels)
    if not 1 <= attack_batch < n:
        raise ConfigError(f"attack batch {attack_batch!r}: must be >= 1 and smaller than the "
                          f"test set ({n} images)")
    perm = np.random.default_rng(seed).permutation(n)
    lab = labels[perm]
    rank = np.zeros(n)
    for c in np.unique(lab):
        m = lab == c
        rank[m] = (np.arange(m.sum()) + 0.5) / m.sum()  # quantile of each image in its class
    order = perm[np.lexsort((np.arange(n), rank))]  # ties: random (permutation order)
    return np.sort(order[:attack_batch]), np.sort(order[attack_batch:])


def _split_index(y, attack_batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """split_attack_batch as index tensors on the labels' device."""
    a, h = split_attack_batch(y.cpu().numpy(), attack_batch, seed)
    return torch.as_tensor(a, device=y.device), torch.as_tensor(h, device=y.device)


def _split(x, y, attack_batch: int, seed: int):
    """(attack images, attack labels, held-out images, held-out labels)."""
    a, h = _split_index(y, attack_batch, seed)
    return x[a], y[a], x[h], y[h]


def hamming_distance(a: torch.Tensor, b: torch.Tensor, bits: int) -> int:
    """Number of differing bits between two tensors of b-bit two's-complement integers."""
    x = to_unsigned(a.reshape(-1), bits) ^ to_unsigned(b.reshape(-1), bits)
    return int(sum(int(((x >> j) & 1).sum()) for j in range(bits)))


def bit_weights(bits: int) -> torch.Tensor:
    """Value of each bit in a b-bit two's-complement integer: 2^j, the sign bit -2^(b-1)."""
    w = torch.tensor([float(1 << j) for j in range(bits)])
    w[-1] = -w[-1]
    return w


@torch.no_grad()
def _accuracy(model, x, y, batch_size: int | None = None) -> float:
    if len(y) == 0:
        return float("nan")
    return float((predict(model, x, batch_size) == y).float().mean())


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the best other logit, per image (> 0: classified correctly)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], float("-inf")).amax(1)


@torch.no_grad()
def clean_scores(model: nn.Module, test_data) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, margin) of every test image (bool, float; test-set order) under the model's
    clean stored weights, evaluated as HeldOutCheck does. bfa_nflip computes them once for
    all its seeds: each run's clean held-out accuracy and the check's first order come from
    them instead of another pass over the test set."""
    x, y = on_model_device(test_data, model)
    stored = StoredWeights(model)
    bs = eval_batch_size(x.device)
    correct, margin = [torch.zeros(0, dtype=torch.bool, device=y.device)], \
        [torch.zeros(0, device=y.device)]
    with _eval_mode(model), stored.installed(stored.weights(stored.ints)):
        for i in range(0, len(y), bs):
            logits, yi = model(use_channels_last(model, x[i:i + bs])), y[i:i + bs]
            correct.append(logits.argmax(1) == yi)
            margin.append(_margin(logits, yi))
    return torch.cat(correct), torch.cat(margin)


class HeldOutCheck:
    """Exactly `accuracy(x, y) < threshold`, asked after every flip, for one held-out set.

    It stops as soon as the answer is known: `threshold * n` correct images decide "not
    below". Images are evaluated in order of their latest known margin (true logit minus best
    other; each check updates the margins of the images it evaluated), largest first: those
    are the ones most likely still correct, so a damaged network is decided after a few
    batches instead of most of the set. The order only changes how soon the count is reached,
    never the answer. `need` (e.g. StopRule.need) replaces `threshold * n` as the count of
    correct images that answers "not below"; it may be changed between checks. `margins`:
    known margins to start from (e.g. of the clean network); default 0 for every image."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, threshold: float,
                 batch_size: int | None = None, reorder: bool = True,
                 need: float | None = None, margins: torch.Tensor | None = None):
        self.x, self.y, self.reorder = x, y, reorder
        self.batch_size = batch_size or eval_batch_size(x.device)
        self.need = threshold * len(y) if need is None else need
        self.margins = torch.zeros(len(y), device=y.device) if margins is None else \
            margins.detach().to(y.device, torch.float32).clone()
        self.order = self._sorted() if reorder and margins is not None else \
            torch.arange(len(y), device=y.device)
        self.images = 0  # evaluated so far, over all checks (benchmarks/bench_bfa_check.py)
        # (correct, evaluated) of the last check: a "below" answer evaluated every image, so
        # its count is the exact accuracy of that network (bfa_run reuses it)
        self.last: tuple[int, int] | None = None

    def _sorted(self) -> torch.Tensor:
        return torch.argsort(self.margins, descending=True, stable=True)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> bool:
        correct, seen, n = 0, 0, len(self.y)
        for i in range(0, n, self.batch_size):
            idx = self.order[i:i + self.batch_size]
            y = self.y[idx]
            logits = model(use_channels_last(model, self.x[idx]))
            correct += int((logits.argmax(1) == y).sum())
            if self.reorder:  # off: fixed order, the baseline of benchmarks/bench_bfa_check.py
                self.margins[idx] = _margin(logits, y).float()
            seen += len(idx)
            if correct >= self.need:
                break
        self.images += seen
        self.last = (correct, seen)
        if self.reorder:
            self.order = self._sorted()
        return correct < self.need


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, t in modes:
            m.train(t)


# ----------------------------------------------------------------------------- bit search

@dataclass
class Flip:
    layer: str
    index: int  # flat index of the weight in its layer
    bit: int  # 0 = least significant, b-1 = sign
    before: int  # stored integer before / after the flip
    after: int
    objective: float  # attack objective (attack-batch loss for BFA) after the flip


class BitSearch:
    """Progressive bit search over the stored integers of `model`.

    `objective(logits, y) -> scalar` is maximized (BFA: the cross-entropy; T-BFA: minus its
    loss). The search state is a private copy of the integers; the current attacked weights are
    installed as overrides only inside `attacking()`.
    """

    def __init__(self, model: nn.Module, objective, topk: int = 1, reuse_prefix: bool = True):
        if topk < 1:
            raise ConfigError(f"topk={topk!r}: must be >= 1")
        self.model, self.objective, self.topk = model, objective, int(topk)
        self.reuse_prefix = bool(reuse_prefix)
        self.stored = StoredWeights(model)
        self.names = [n for n, _ in quant_layers(model)]
        self.bits = self.stored.bits
        if self.bits is None:
            raise ConfigError(f"bit-flip attacks on mixed weight widths "
                              f"{sorted(set(self.stored.layer_bits))} are not supported yet")
        self.device = self.stored.ints.device
        self.bitw = bit_weights(self.bits).to(self.device)
        self.clean = self.stored.ints.clone()
        self.ints = [p.clone().to(torch.int32) for p in torch.split(self.stored.ints,
                                                                     self.stored.sizes)]
        self.weights = self.stored.weights(self.stored.ints)
        # positions already flipped (never flipped back): layer -> N x b bool
        self.flipped = [torch.zeros(n, self.bits, dtype=torch.bool, device=self.device)
                        for n in self.stored.sizes]
        self.history: list[Flip] = []
        self.timing = {"grad": 0.0, "search": 0.0, "iterations": 0}

    @property
    def n_flip(self) -> int:
        return len(self.history)

    def current_ints(self) -> torch.Tensor:
        return torch.cat(self.ints).to(self.stored.ints.dtype)

    @contextlib.contextmanager
    def attacking(self):
        """Install the current attacked weights (eval mode); restore the model afterwards."""
        with _eval_mode(self.model), self.stored.installed(self.weights):
            yield

    @contextlib.contextmanager
    def _cached(self, layers, outputs):
        """Layers in `layers` return their cached output instead of computing it."""
        patched = []
        try:
            for l in layers:
                m = self.stored.layers[l]
                m.forward = lambda *a, _o=outputs[l], **k: _o
                patched.append(m)
            yield
        finally:
            for m in patched:
                del m.forward

    def _set(self, layer: int, w: torch.Tensor) -> None:
        self.stored.layers[layer].weight_override = w

    def _gains(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """First-order objective change of flipping each bit (N x b per layer); bits already
        flipped get -inf."""
        out = []
        for l, g in enumerate(grads):
            u = to_unsigned(self.ints[l], self.bits)
            bit = torch.stack([(u >> j) & 1 for j in range(self.bits)], 1).float()
            delta = (1 - 2 * bit) * self.bitw  # change of the integer
            gain = g.reshape(-1, 1) * self.stored.scales[l] * delta
            out.append(gain.masked_fill(self.flipped[l], float("-inf")))
        return out

    def step(self, x: torch.Tensor, y: torch.Tensor) -> Flip | None:
        """One iteration; commits one bit flip and returns it (None: no candidate left).
        Must run inside `attacking()`."""
        t0 = time.perf_counter()
        ws = [w.detach().requires_grad_(True) for w in self.weights]
        for l, w in enumerate(ws):
            self._set(l, w)
        outputs, order, hooks = {}, [], []

        def record(l):
            def hook(module, inputs, output):
                order.append(l)
                outputs[l] = output
            return hook
        if self.reuse_prefix:
            hooks = [m.register_forward_hook(record(l)) for l, m in enumerate(self.stored.layers)]
        try:
            with torch.enable_grad():
                obj = self.objective(self.model(x), y)
                grads = torch.autograd.grad(obj, ws)
        finally:
            for h in hooks:
                h.remove()
        # in-layer search: layers that run before layer l in the forward pass do not depend on
        # its weights, so they return their outputs of this pass (a layer called twice, i.e.
        # shared weights, turns this off)
        reuse = self.reuse_prefix and len(order) == len(set(order)) == len(self.stored.layers)
        prefix = {l: order[:i] for i, l in enumerate(order)} if reuse else {}
        outputs = {l: o.detach() for l, o in outputs.items()} if reuse else {}
        for l, w in enumerate(self.weights):
            self._set(l, w)
        gains = self._gains(grads)
        t1 = time.perf_counter()

        best = None  # (objective, layer, flat index, bit, old int, new int, layer weights)
        with torch.no_grad():
            for l, gain in enumerate(gains):
                flat = gain.reshape(-1)
                k = min(self.topk, flat.numel())
                vals, pos = torch.topk(flat, k)
                for v, p in zip(vals.tolist(), pos.tolist()):
                    if not v > 0:  # -inf (already flipped) or no first-order increase
                        break
                    idx, j = divmod(p, self.bits)
                    old = int(self.ints[l][idx])
                    u = (old ^ (1 << j)) % (1 << self.bits)  # flipped b-bit pattern
                    new = u - (1 << self.bits) if u >> (self.bits - 1) else u
                    w = self.weights[l].clone()
                    # index the logical shape: the weights may be channels-last (CIFAR
                    # inference), where a flat view of the storage is not possible
                    w[np.unravel_index(idx, w.shape)] = new * self.stored.scales[l]
                    self._set(l, w)
                    with self._cached(prefix.get(l, ()), outputs):
                        val = float(self.objective(self.model(x), y))
                    if best is None or val > best[0]:
                        best = (val, l, idx, j, old, new, w)
                self._set(l, self.weights[l])
        t2 = time.perf_counter()
        self.timing["grad"] += t1 - t0
        self.timing["search"] += t2 - t1
        self.timing["iterations"] += 1
        if best is None:
            return None
        val, l, idx, j, old, new, w = best
        self.ints[l][idx] = new
        self.flipped[l][idx, j] = True
        self.weights[l] = w
        self._set(l, w)
        flip = Flip(self.names[l], idx, j, old, new, val)
        self.history.append(flip)
        return flip

    def iteration_seconds(self) -> float:
        n = self.timing["iterations"]
        return (self.timing["grad"] + self.timing["search"]) / n if n else float("nan")


# ----------------------------------------------------------------------------- BFA

def _ce(logits, y):
    return F.cross_entropy(logits, y)


@dataclass
class AttackRun:
    seed: int
    n_flip: int
    reached: bool  # the goal was met within the budget
    clean_accuracy: float  # held-out, before the attack
    final_accuracy: float  # held-out, after the attack
    flips: list[Flip] = field(default_factory=list)
    ints: torch.Tensor | None = None  # attacked stored integers (flat, like StoredWeights.ints)
    iteration_seconds: float = float("nan")
    extra: dict = field(default_factory=dict)

    def layer_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.flips:
            out[f.layer] = out.get(f.layer, 0) + 1
        return out

    def to_json(self) -> dict:
        """Everything but the attacked integers, as JSON values (a resumable run's record)."""
        return {"seed": self.seed, "n_flip": self.n_flip, "reached": self.reached,
                "clean_accuracy": self.clean_accuracy, "final_accuracy": self.final_accuracy,
                "flips": [vars(f) for f in self.flips],
                "iteration_seconds": self.iteration_seconds, "extra": self.extra}

    @classmethod
    def from_json(cls, d: dict) -> "AttackRun":
        """The run `to_json` wrote; ValueError/TypeError/KeyError on anything else."""
        flips = [Flip(str(f["layer"]), int(f["index"]), int(f["bit"]), int(f["before"]),
                      int(f["after"]), float(f["objective"])) for f in d["flips"]]
        if not isinstance(d["extra"], dict) or not isinstance(d["reached"], bool) or \
                int(d["n_flip"]) != len(flips):
            raise ValueError("not an attack run record")
        return cls(int(d["seed"]), len(flips), d["reached"], float(d["clean_accuracy"]),
                   float(d["final_accuracy"]), flips, None, float(d["iteration_seconds"]),
                   dict(d["extra"]))


def bfa_run(model: nn.Module, test_data, *, attack_batch: int = DEFAULT_ATTACK_BATCH,
            max_flips: int = 500, seed: int = 0, topk: int = 1, progress: bool = False,
            reorder_check: bool = True, rule: str = DEFAULT_STOP_RULE,
            clean: tuple[torch.Tensor, torch.Tensor] | None = None) -> AttackRun:
    """One BFA run: the attack batch is drawn with `seed`; accuracy is measured on the rest
    until it meets stop rule `rule` (STOP_RULES). A stricter rule than 'lt11' also records,
    in extra["n_flip_lt11"], the flips at which the run first met 'lt11' (the same search, so
    the same count an 'lt11' run stops at); None if it never did. `clean`: clean_scores of
    this model and test set, if already computed."""
    x, y = on_model_device(test_data, model)
    num_classes = getattr(test_data, "num_classes", None) or int(y.max()) + 1
    goal, loose = stop_rule(rule), STOP_RULES["lt11"]
    if max_flips < 0:
        raise ConfigError(f"max flips {max_flips!r}: must be >= 0")
    a, h = _split_index(y, attack_batch, seed)
    xa, ya, xh, yh = x[a], y[a], x[h], y[h]
    correct, margin = clean_scores(model, (x, y)) if clean is None else clean
    search = BitSearch(model, _ce, topk)
    n_loose = None  # flips at which the 'lt11' rule was first met
    with search.attacking():
        # first the 'lt11' count (exactly the old check), then the goal's if it is stricter
        below = HeldOutCheck(xh, yh, loose.threshold(num_classes), reorder=reorder_check,
                             need=loose.need(len(yh), num_classes), margins=margin[h])
        goal_need = goal.need(len(yh), num_classes)

        def met() -> bool:
            nonlocal n_loose
            if n_loose is None:
                if not below(model):
                    return False
                n_loose = search.n_flip
                if goal.name == loose.name:
                    return True
                below.need = goal_need
            return below(model)
        reached = met()
        bar = tqdm(total=max_flips, desc=f"BFA seed {seed}", disable=not progress, leave=False,
                   file=sys.stderr)
        while not reached and search.n_flip < max_flips:
            if search.step(xa, ya) is None:
                break
            reached = met()
            bar.update(1)
            bar.set_postfix(loss=f"{search.history[-1].objective:.3f}")
        bar.close()
        done, seen = below.last
        # a met rule evaluated every image: its count is the final accuracy
        final = done / len(yh) if reached and seen == len(yh) else _accuracy(model, xh, yh)
    extra = {"threshold": goal.threshold(num_classes), "held_out_images": below.images,
             "stop_rule": goal.name}
    if goal.name != loose.name:
        extra["n_flip_lt11"] = n_loose
    clean_acc = float(correct[h].float().mean()) if len(h) else float("nan")
    return AttackRun(seed, search.n_flip, reached, clean_acc, final, list(search.history),
                     search.current_ints(), search.iteration_seconds(), extra)


def _seeded_runs(seeds: range, run, done: dict[int, AttackRun] | None, on_run, desc: str,
                 progress: bool) -> list[AttackRun]:
    """run(seed) for every seed, except those in `done` (finished earlier, taken as they
    are); on_run(r) after each new run r (e.g. save it)."""
    runs, done = [], done or {}
    outer = tqdm(seeds, desc=desc, disable=not progress, file=sys.stderr)
    for s in outer:
        if s in done:
            runs.append(done[s])
            continue
        runs.append(run(s))
        if on_run is not None:
            on_run(runs[-1])
        outer.set_postfix(n_flip=runs[-1].n_flip)
    return runs


def _std(v) -> float:
    return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _histogram(model, runs: list[AttackRun]) -> dict[str, int]:
    hist = {n: 0 for n, _ in quant_layers(model)}
    for r in runs:
        for k, v in r.layer_counts().items():
            hist[k] += v
    return hist


def bfa_nflip(model: nn.Module, test_data, *, seeds: int = 10,
              attack_batch: int = DEFAULT_ATTACK_BATCH, max_flips: int = 500, seed: int = 0,
              topk: int = 1, progress: bool = False, return_runs: bool = False,
              runs: list[AttackRun] | None = None, rule: str = DEFAULT_STOP_RULE,
              done: dict[int, AttackRun] | None = None, on_run=None) -> dict:
    """N_flip of BFA to random-guess accuracy (stop rule `rule`) over `seeds` attack batches
    (seeds seed, seed+1, ...). Runs that exhaust the budget count max_flips (see `reached`).
    With a rule stricter than 'lt11', "n_flips_lt11" etc. give the 'lt11' counts of the same
    runs too. `runs`: those seeds' bfa_run results computed elsewhere (e.g. one Ray task each),
    only summarized here. `done`: {seed: run} finished earlier with the same settings (a
    resumed command), not run again; `on_run(run)` is called after each new run."""
    if seeds < 1:
        raise ConfigError(f"seeds={seeds!r}: must be >= 1")
    if runs is not None:
        if [r.seed for r in runs] != list(range(seed, seed + seeds)):
            raise ValueError(f"runs of seeds {[r.seed for r in runs]}, expected "
                             f"{seed}..{seed + seeds - 1}")
    else:
        clean = []  # computed once, when the first seed is attacked

        def run(s: int) -> AttackRun:
            clean[:] = clean or [clean_scores(model, test_data)]
            return bfa_run(model, test_data, attack_batch=attack_batch, max_flips=max_flips,
                           seed=s, topk=topk, progress=progress, rule=rule, clean=clean[0])
        runs = _seeded_runs(range(seed, seed + seeds), run, done, on_run, "BFA", progress)
    n = [r.n_flip for r in runs]
    out = {
        "attack": "bfa", "seeds": list(range(seed, seed + seeds)), "attack_batch": attack_batch,
        "max_flips": max_flips, "topk": topk, "threshold": runs[0].extra["threshold"],
        "n_flip_mean": float(np.mean(n)), "n_flip_std": _std(n), "n_flips": n,
        "reached": [r.reached for r in runs],
        "layer_histogram": _histogram(model, runs),
        "clean_accuracies": [r.clean_accuracy for r in runs],
        "final_accuracies": [r.final_accuracy for r in runs],
        "clean_accuracy_mean": float(np.mean([r.clean_accuracy for r in runs])),
        "final_accuracy_mean": float(np.mean([r.final_accuracy for r in runs])),
        "iteration_seconds": float(np.nanmean([r.iteration_seconds for r in runs]))
        if any(r.n_flip for r in runs) else float("nan"),
        "stop_rule": runs[0].extra.get("stop_rule", DEFAULT_STOP_RULE),
    }
    if "n_flip_lt11" in runs[0].extra:  # a stricter rule: the 'lt11' counts of the same runs
        lt = [max_flips if r.extra["n_flip_lt11"] is None else r.extra["n_flip_lt11"]
              for r in runs]
        out.update({"n_flips_lt11": lt, "n_flip_lt11_mean": float(np.mean(lt)),
                    "n_flip_lt11_std": _std(lt)})
    if return_runs:
        out["runs"] = runs
    return out


# ----------------------------------------------------------------------------- random baseline

@torch.no_grad()
def random_nflip(model: nn.Module, test_data, *, seeds: int = 10,
                 attack_batch: int = DEFAULT_ATTACK_BATCH, max_flips: int = 20000, seed: int = 0,
                 step: int = 10, rule: str = DEFAULT_STOP_RULE) -> dict:
    """Baseline: flip distinct random bits `step` at a time until the held-out accuracy (same
    split as BFA) meets stop rule `rule`; N_flip has a resolution of `step` flips."""
    x, y = on_model_device(test_data, model)
    num_classes = getattr(test_data, "num_classes", None) or int(y.max()) + 1
    goal = stop_rule(rule)
    thr = goal.threshold(num_classes)
    stored = StoredWeights(model)
    n, reached = [], []
    for s in range(seed, seed + seeds):
        _, _, xh, yh = _split(x, y, attack_batch, s)
        rng = np.random.default_rng(10_000_019 + s)
        total = min(max_flips, stored.n_bits)
        order = rng.choice(stored.n_bits, size=total, replace=False)
        k, ok = 0, False
        below = HeldOutCheck(xh, yh, thr, need=goal.need(len(yh), num_classes))
        with _eval_mode(model):
            while k < total:
                k = min(k + step, total)
                with stored.installed(stored.flipped(order[:k])):
                    if below(model):
                        ok = True
                        break
        n.append(k)
        reached.append(ok)
    return {"attack": "random", "n_flip_mean": float(np.mean(n)), "n_flip_std": _std(n),
            "n_flips": n, "reached": reached, "threshold": thr, "step": step,
            "attack_batch": attack_batch, "stop_rule": goal.name}
