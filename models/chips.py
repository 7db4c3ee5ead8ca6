"""Persistent, voltage-nested SRAM fault maps ("chips") for the stored weight integers.

A chip is a seeded map over the *physical* bit cells of the weight memory. Every cell has a
failure threshold t; at a supply voltage with bit error rate p (this module only sees BERs,
never voltages) the cell is faulty iff t < p. The faulty set at a lower voltage (higher p)
therefore contains the one at a higher voltage, and each cell is faulty with probability
exactly p, independently of the others: at one voltage a chip is a draw of the transient
per-bit Bernoulli(p) model, along the grid it is one fixed chip.

Sampling is O(faulty cells at the grid's highest BER p_max): thresholds are only drawn below
p_max. The memory is cut into blocks of BLOCK_BITS cells; block b of chip `seed` holds
K_b ~ Binomial(BLOCK_BITS, p_max) faulty cells at K_b distinct uniform offsets, thresholds
uniform in [0, p_max), each block from its own random stream (seed, b). Only blocks that hold
weights are drawn, and a chip's cells do not depend on the network stored in it: another
network or quantizer on the same chip meets the same weak cells at other weights.

Physical layout (`Layout`): the stored integers of all quantized layers, in quant_layers
order and each layer's weight tensor flattened row-major (StoredWeights order), are packed
word by word into the memory's `word_bits`-wide words: floor(word_bits / bits) weights per
word (16 4-bit weights in a 64-bit word), weight i in word i // per_word at columns
(i % per_word) * bits + j for its bit j (LSB j = 0; bits of one weight in adjacent columns),
columns a word cannot fill stay unused. Cell address = word * word_bits + column. A network
whose words exceed `capacity_bits` is an error. Mixed precision: each stretch of consecutive
layers of one width is packed this way at its own width, starting at a fresh word.

Failure modes (what a faulty cell reads):
- 'flip': the inverse of the stored bit (the transient model's behaviour);
- 'stuck-at': a value fixed per cell, 1 with probability q; it errs only where the stored
  bit differs (q = 0.5 halves the effective error rate);
- 'asymmetric': a stored 0 reads 1 iff t < p01_scale * p, a stored 1 reads 0 iff
  t < p10_scale * p (thresholds are drawn below max(scales) * p_max), so 0->1 and 1->0 error
  rates are p01_scale * p and p10_scale * p.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .errors import ConfigError
from .evaluate import StoredWeights, check_ber, hit_rate, on_model_device
from .faults import to_unsigned

MODES = ("flip", "stuck-at", "asymmetric")
BLOCK_BITS = 1 << 16  # cells per independently seeded block (1024 64-bit words)


@dataclass(frozen=True)
class Layout:
    """Where each stored weight bit sits in the weight memory (see the module docstring).

    Mixed precision: `segments` ((n_weights, bits), ...) are runs of consecutive layers of one
    width (StoredWeights order); each run is packed as above starting at a fresh word, and
    logical positions number the bits run after run (faults.MixedWidths). None: one run of
    n_weights `bits`-bit weights (then bits is the width; with segments, the widest)."""
    n_weights: int
    bits: int
    word_bits: int = 64
    capacity_bits: int | None = None
    segments: tuple | None = None

    def __post_init__(self):
        if not (isinstance(self.word_bits, int) and self.word_bits >= self.bits):
            raise ConfigError(f"weight memory word width {self.word_bits!r} bits: must be an "
                              f"integer >= the weight width ({self.bits} bits)")
        if self.capacity_bits is not None and self.used_bits > self.capacity_bits:
            raise ConfigError(
                f"the network does not fit the weight memory: {self.n_weights} {self.bits}-bit "
                f"weights need {self.words} {self.word_bits}-bit words = {self.used_bits} bits, "
                f"the memory holds {self.capacity_bits} bits")

    def _runs(self) -> np.ndarray:
        """Per run: n, bits, per_word, first logical bit, first word (int64 columns)."""
        segs = self.segments or ((self.n_weights, self.bits),)
        rows, lbit, word = [], 0, 0
        for n, b in segs:
            pw = self.word_bits // b
            rows.append((n, b, pw, lbit, word))
            lbit, word = lbit + n * b, word + -(-n // pw)
        return np.array(rows, dtype=np.int64).reshape(-1, 5)

    @property
    def per_word(self) -> int:
        return self.word_bits // self.bits

    @property
    def words(self) -> int:
        if self.segments:
            r = self._runs()
            return int(r[-1, 4] + -(-r[-1, 0] // r[-1, 2]))
        return -(-self.n_weights // self.per_word)

    @property
    def n_bits(self) -> int:
        """Stored weight bits (sum of n * bits over the runs)."""
        return int((self._runs()[:, 0] * self._runs()[:, 1]).sum())

    @property
    def used_bits(self) -> int:
        """Cells from address 0 up to the end of the last word that holds a weight."""
        return self.words * self.word_bits

    def weight_bit(self, positions) -> tuple[np.ndarray, np.ndarray]:
        """Logical positions -> (weight index, bit index within that weight)."""
        pos = np.asarray(positions, dtype=np.int64)
        if not self.segments:
            return pos // self.bits, pos % self.bits
        r = self._runs()
        s = np.searchsorted(r[:, 3], pos, side="right") - 1
        local, b = pos - r[s, 3], r[s, 1]
        starts = np.concatenate([[0], np.cumsum(r[:, 0])[:-1]])
        return starts[s] + local // b, local % b

    def address(self, positions) -> np.ndarray:
        """Logical bit positions (weight i, bit j -> i * bits + j) -> cell addresses."""
        pos = np.asarray(positions, dtype=np.int64)
        if self.segments:
            r = self._runs()
            s = np.searchsorted(r[:, 3], pos, side="right") - 1
            local, b, pw = pos - r[s, 3], r[s, 1], r[s, 2]
            i, j = local // b, local % b
            return (r[s, 4] + i // pw) * self.word_bits + (i % pw) * b + j
        i, j = pos // self.bits, pos % self.bits
        return (i // self.per_word) * self.word_bits + (i % self.per_word) * self.bits + j

    def logical(self, addresses) -> np.ndarray:
        """Cell addresses -> logical bit positions; -1 where a cell holds no weight bit."""
        a = np.asarray(addresses, dtype=np.int64)
        word, col = a // self.word_bits, a % self.word_bits
        if self.segments:
            r = self._runs()
            s = np.clip(np.searchsorted(r[:, 4], word, side="right") - 1, 0, None)
            b, pw = r[s, 1], r[s, 2]
            slot, j = col // b, col % b
            i = (word - r[s, 4]) * pw + slot
            ok = (slot < pw) & (i < r[s, 0]) & (a >= 0)
            return np.where(ok, r[s, 3] + i * b + j, -1)
        slot, j = col // self.bits, col % self.bits
        i = word * self.per_word + slot
        ok = (slot < self.per_word) & (i < self.n_weights) & (a >= 0)
        return np.where(ok, i * self.bits + j, -1)


def stored_layout(stored: StoredWeights, word_bits: int = 64,
                  capacity_bits: int | None = None) -> Layout:
    """The Layout of these stored weights: one run when every layer has one width, else a run
    per stretch of consecutive layers of one width (mixed precision)."""
    n = int(stored.ints.numel())
    if stored.bits is not None:
        return Layout(n, stored.bits, word_bits, capacity_bits)
    runs: list[list[int]] = []
    for size, b in zip(stored.sizes, stored.layer_bits):
        if runs and runs[-1][1] == b:
            runs[-1][0] += size
        else:
            runs.append([size, b])
    return Layout(n, max(stored.layer_bits), word_bits, capacity_bits,
                  tuple((int(a), int(b)) for a, b in runs))


@dataclass
class Chip:
    """The weak cells of one chip: sorted addresses, thresholds, stuck values (see module)."""
    seed: int
    p_max: float
    mode: str
    addresses: np.ndarray  # int64, sorted
    thresholds: np.ndarray  # float64 in [0, threshold_cap)
    stuck: np.ndarray | None = None  # uint8 read value per cell ('stuck-at')
    q: float = 0.5
    p01_scale: float = 1.0
    p10_scale: float = 1.0

    def erring(self, layout: Layout, unsigned: np.ndarray, ber: float) -> np.ndarray:
        """Logical positions of the weight bits that read wrong at bit error rate `ber`
        (`unsigned`: the stored b-bit patterns, one per weight)."""
        if ber > self.p_max * (1 + 1e-12):
            raise ConfigError(f"BER {ber:g} exceeds the chip's p_max {self.p_max:g}: sample "
                              "chips with the grid's highest BER")
        pos = layout.logical(self.addresses)
        keep = pos >= 0
        pos, t = pos[keep], self.thresholds[keep]
        i, j = layout.weight_bit(pos)
        stored = (unsigned[i] >> j) & 1
        if self.mode == "asymmetric":
            limit = np.where(stored == 0, self.p01_scale, self.p10_scale) * ber
            return pos[t < limit]
        bad = t < ber
        if self.mode == "stuck-at":
            bad &= self.stuck[keep] != stored
        return pos[bad]


def check_mode(mode: str, q: float = 0.5, p01_scale: float = 1.0,
               p10_scale: float = 1.0) -> None:
    """One error line for an unknown mode or out-of-range mode parameters."""
    if mode not in MODES:
        raise ConfigError(f"fault mode {mode!r}: valid: {', '.join(MODES)}")
    if not (isinstance(q, (int, float)) and 0 <= q <= 1):
        raise ConfigError(f"stuck-at q={q!r}: must be a probability in [0, 1]")
    for name, s in (("p01_scale", p01_scale), ("p10_scale", p10_scale)):
        if not (isinstance(s, (int, float)) and s >= 0 and math.isfinite(s)):
            raise ConfigError(f"{name}={s!r}: must be a number >= 0")


def sample_chip(seed: int, n_cells: int, p_max: float, mode: str = "flip", q: float = 0.5,
                p01_scale: float = 1.0, p10_scale: float = 1.0) -> Chip:
    """Chip `seed` over cells [0, n_cells) (the weight-holding prefix of the memory), valid
    for bit error rates up to `p_max`. Same arguments -> the same chip; a larger n_cells only
    adds cells (blocks are seeded on their own)."""
    check_mode(mode, q, p01_scale, p10_scale)
    check_ber(p_max)
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise ConfigError(f"chip seed {seed!r}: must be an integer >= 0")
    cap = p_max * (max(p01_scale, p10_scale) if mode == "asymmetric" else 1.0)
    cap = min(cap, 1.0)
    addrs, ts, stuck = [], [], []
    for b in range(-(-n_cells // BLOCK_BITS)):
        rng = np.random.default_rng([int(seed), b])
        size = min(BLOCK_BITS, n_cells - b * BLOCK_BITS)
        k = int(rng.binomial(BLOCK_BITS, cap)) if cap > 0 else 0
        off = np.sort(rng.choice(BLOCK_BITS, size=k, replace=False)) if k else \
            np.empty(0, np.int64)
        t = rng.random(k) * cap
        s = (rng.random(k) < q).astype(np.uint8)
        keep = off < size  # the last block is cut at n_cells (same draws as a full block)
        addrs.append(b * BLOCK_BITS + off[keep].astype(np.int64))
        ts.append(t[keep])
        stuck.append(s[keep])
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.empty(0, dt)
    return Chip(int(seed), float(p_max), mode, cat(addrs, np.int64), cat(ts, np.float64),
                cat(stuck, np.uint8) if mode == "stuck-at" else None, float(q),
                float(p01_scale), float(p10_scale))


def model_layout(model: nn.Module, word_bits: int = 64,
                 capacity_bits: int | None = None) -> Layout:
    """The Layout of a quantized model's stored weights (its quant_layers order)."""
    return stored_layout(StoredWeights(model), word_bits, capacity_bits)


@torch.no_grad()
def evaluate_chip(model: nn.Module, data, bers, chip: Chip, layout: Layout,
                  stored: StoredWeights | None = None, clean: float | None = None
                  ) -> tuple[list[float], list[int]]:
    """Accuracy of `model` on `chip` at each bit error rate of `bers` (any order), on the
    model's device, and the number of erring weight bits at each. A BER whose erring set
    equals one already evaluated reuses that accuracy (e.g. all voltages above the chip's
    first weak cell give the clean accuracy)."""
    x, y = on_model_device(data, model)
    model.eval()
    stored = stored or StoredWeights(model)
    unsigned = (to_unsigned(stored.ints, stored.bits) if stored.bits is not None else
                stored.widths.to_unsigned(stored.ints.reshape(-1))).cpu().numpy()
    if clean is None:
        clean = float(hit_rate(model, x, y))
    seen: dict[bytes, int] = {b"": -1}  # erring set -> index into `results` (-1: clean)
    results: list = []
    index, counts = [], []
    for ber in bers:
        pos = np.sort(chip.erring(layout, unsigned, check_ber(ber)))
        key = pos.tobytes()
        if key not in seen:
            seen[key] = len(results)
            with stored.installed(stored.flipped(pos)):
                results.append(hit_rate(model, x, y))
        index.append(seen[key])
        counts.append(len(pos))
    values = torch.stack(results).tolist() if results else []  # one device-to-host copy
    return [clean if i < 0 else values[i] for i in index], counts


def vmin_index(accs, clean: float, drop: float = 0.01) -> int | None:
    """Index of the lowest voltage of a grid sorted from high to low voltage such that the
    chip stays within `drop` of `clean` there and at every voltage above it; None when it
    fails already at the highest."""
    last = None
    for i, a in enumerate(accs):
        if a < clean - drop - 1e-12:
            break
        last = i
    return last
