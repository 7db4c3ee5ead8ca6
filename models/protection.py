"""Protection of the stored weight bits against SRAM bit errors (issue 22, item 5; network
side): one object, `Protection`, parsed from 'none', 'secded' or 'msb:K'.

- 'none': every stored bit errs at its layer's raw bit error rate p.
- 'msb:K': the top K bits of every weight sit in robust cells (a nominal-voltage bank or 8T
  cells) and never flip; the low b - K bits err at p. A layer of width <= K never errs.
- 'secded': a (72,64) Hsiao SECDED code (Hsiao 1970: odd-weight columns). Each layer is
  packed on its own into 64-bit data words, floor(64 / b) consecutive weights per word
  (weight i in word i // per_word, its bit j at column (i % per_word) * b + j, as
  models/chips.Layout packs), starting at a fresh word. Columns a word does not fill (64 % b
  of them, and the tail of the layer's last, partial word) hold stored zeros: they are real
  cells of the 72-bit codeword, may err and take part in decoding, and an error left in
  them after decoding is discarded (it is no weight). Raw errors hit all 72 bits at rate p;
  the decoder computes the syndrome s = H e: s = 0 nothing, s equal to a column of H flips
  that bit (corrects any single error; 3+ errors may be miscorrected exactly so), any other
  s is a detected, uncorrectable error and the word is left as read. The code is linear, so
  the residual error of a word depends only on its raw error pattern, and a word with 0 or 1
  raw errors is always clean: per layer the number of words with >= 2 errors is Binomial(
  words, P(Binomial(72, p) >= 2)), those words are uniform, each gets a raw count from
  Binomial(72, p) conditioned on >= 2 at uniform distinct positions, and is decoded.

H: data columns 0..63 are the 56 weight-3 8-bit vectors in lexicographic order, then the 8
cyclic shifts of 0b00011111 (weight 5); check columns 64..71 are the unit vectors. Every row
then holds 26 data ones (21 + 5: row-balanced, as Hsiao prescribes); columns are distinct
and odd, so the minimum distance is 4 (SEC-DED).
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
from scipy import stats

from .errors import ConfigError

DATA_BITS, CHECK_BITS = 64, 8
WORD_BITS = DATA_BITS + CHECK_BITS
VALID = "none, secded ((72,64) SECDED ECC), msb:K (the top K >= 1 bits of each weight never flip)"


def _hsiao_columns() -> np.ndarray:
    cols = [sum(1 << r for r in c) for c in itertools.combinations(range(CHECK_BITS), 3)]
    cols += [((0b11111 << s) | (0b11111 >> (CHECK_BITS - s))) & 0xFF for s in range(CHECK_BITS)]
    cols += [1 << r for r in range(CHECK_BITS)]
    return np.array(cols, dtype=np.int64)


H_COLUMNS = _hsiao_columns()  # column c of H as an 8-bit syndrome (bit r = row r)
H = ((H_COLUMNS[None, :] >> np.arange(CHECK_BITS)[:, None]) & 1).astype(np.uint8)  # 8 x 72
SYNDROME_TO_BIT = np.full(1 << CHECK_BITS, -1, dtype=np.int64)  # syndrome -> bit to flip
SYNDROME_TO_BIT[H_COLUMNS] = np.arange(WORD_BITS)


def syndromes(words: np.ndarray) -> np.ndarray:
    """Syndromes (ints 0..255) of 72-bit words given as a (..., 72) 0/1 array."""
    bits = (words.astype(np.int64) @ H.T.astype(np.int64)) & 1
    return bits @ (1 << np.arange(CHECK_BITS))


def encode(data: np.ndarray) -> np.ndarray:
    """(..., 64) 0/1 data -> (..., 72) codewords: data, then 8 check bits with H c = 0."""
    data = np.asarray(data, dtype=np.uint8)
    check = (data.astype(np.int64) @ H[:, :DATA_BITS].T.astype(np.int64)) & 1
    return np.concatenate([data, check.astype(np.uint8)], axis=-1)


def decode(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The SECDED decoder on read (..., 72) codewords: (corrected 64 data bits, detected
    flag). A nonzero syndrome equal to a column of H flips that bit; any other nonzero
    syndrome is flagged as detected and left uncorrected."""
    words = np.array(words, dtype=np.uint8)
    flat = words.reshape(-1, WORD_BITS)
    s = syndromes(flat)
    fix = SYNDROME_TO_BIT[s]
    rows = np.nonzero(fix >= 0)[0]
    flat[rows, fix[rows]] ^= 1
    shape = words.shape[:-1]
    return flat[:, :DATA_BITS].reshape(shape + (DATA_BITS,)), ((s != 0) & (fix < 0)).reshape(shape)


def residual_errors(errors: np.ndarray) -> np.ndarray:
    """Residual error patterns (..., 72) after decoding raw error patterns (..., 72): by
    linearity decode(codeword ^ e) = data ^ residual(e)[:64] for every codeword."""
    out = np.array(errors, dtype=np.uint8)
    flat = out.reshape(-1, WORD_BITS)
    fix = SYNDROME_TO_BIT[syndromes(flat)]
    rows = np.nonzero(fix >= 0)[0]
    flat[rows, fix[rows]] ^= 1
    return flat.reshape(out.shape)


@functools.lru_cache(maxsize=256)
def _column_residual(p: float) -> np.ndarray:
    """Exact P(data bit c reads wrong after decoding) for c = 0..63 at raw rate p. With s'
    the syndrome of the other 71 bits (distribution by exact convolution over 256 values):
    bit c errs and is not corrected iff s' != 0; a clean bit c is miscorrected iff s' = h_c."""
    out = np.empty(DATA_BITS)
    idx = np.arange(1 << CHECK_BITS)
    for c in range(DATA_BITS):
        dist = np.zeros(1 << CHECK_BITS)
        dist[0] = 1.0
        for o in range(WORD_BITS):
            if o != c:
                dist = (1 - p) * dist + p * dist[idx ^ H_COLUMNS[o]]
        out[c] = p * (1 - dist[0]) + (1 - p) * dist[H_COLUMNS[c]]
    return out


def _check_p(p) -> float:
    if not (isinstance(p, (int, float, np.floating)) and 0 <= p <= 0.5):
        raise ConfigError(f"bit error rate {p!r} must be in [0, 0.5]")
    return float(p)


class _Bits:
    """Fault units of one layer = its stored bits (no protection), or only the low b - K bits
    of each weight (msb:K). Unit r of `keep` bits per weight is weight r // keep, bit r % keep;
    position = start + weight * b + bit (the StoredWeights numbering)."""

    def __init__(self, layer: int, start: int, size: int, bits: int, keep: int, p: float):
        self.layer, self.start, self.bits, self.keep = layer, start, bits, keep
        self.n, self.q = size * keep, p

    def realize(self, units, rng):
        if self.keep == self.bits:
            return units + self.start
        return self.start + (units // self.keep) * self.bits + units % self.keep

    def expected_flips(self) -> float:
        return self.n * self.q


class _Words:
    """Fault units of one layer under SECDED = its 72-bit words; a unit is hit when its word
    holds >= 2 raw errors (see the module docstring)."""

    def __init__(self, layer: int, start: int, size: int, bits: int, p: float):
        self.layer, self.start, self.size, self.bits, self.p = layer, start, size, bits, p
        self.per_word = DATA_BITS // bits
        self.n = -(-size // self.per_word)
        self.q = float(stats.binom.sf(1, WORD_BITS, p))
        ks = np.arange(2, WORD_BITS + 1)
        pmf = stats.binom.pmf(ks, WORD_BITS, p)
        self.ks, self.pmf = ks, pmf / pmf.sum() if pmf.sum() > 0 else pmf

    def raw_patterns(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """m raw (m, 72) error patterns of words with >= 2 errors."""
        w = rng.choice(self.ks, size=m, p=self.pmf)
        keys = rng.random((m, WORD_BITS))  # the w smallest keys: w uniform distinct bits
        kth = np.sort(keys, axis=1)[np.arange(m), w - 1]
        return (keys <= kth[:, None]).astype(np.uint8)

    def realize(self, units, rng):
        words = units.cpu().numpy() if isinstance(units, torch.Tensor) else np.asarray(units)
        return self.to_positions(words, residual_errors(self.raw_patterns(len(words), rng)))

    def to_positions(self, words: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """Positions (StoredWeights numbering) of the weight bits that read wrong when word
        words[i] of this layer decodes with residual pattern residual[i] (72 or 64 bits);
        errors left in unused columns are dropped."""
        r, c = np.nonzero(residual[:, :DATA_BITS])
        slot, j = c // self.bits, c % self.bits
        i = words[r] * self.per_word + slot
        ok = (slot < self.per_word) & (i < self.size)
        return (self.start + i[ok] * self.bits + j[ok]).astype(np.int64)

    def expected_flips(self) -> float:
        col = _column_residual(self.p)
        full, rest = divmod(self.size, self.per_word)
        return float(full * col[:self.per_word * self.bits].sum() + col[:rest * self.bits].sum())


class Protection:
    """How stored weight bits are protected: kind 'none', 'secded' or 'msb' (with k, the
    protected top bits). Build with Protection.parse(spec)."""

    def __init__(self, kind: str = "none", k: int = 0):
        self.kind, self.k = kind, k

    @classmethod
    def parse(cls, spec) -> "Protection":
        """'none' (or None), 'secded', 'msb:K' (K >= 1), or a Protection (returned as is)."""
        if isinstance(spec, Protection):
            return spec
        if spec is None or spec == "none":
            return cls()
        if spec == "secded":
            return cls("secded")
        if isinstance(spec, str) and spec.startswith("msb:"):
            k = spec[4:]
            if k.isdigit() and int(k) >= 1:
                return cls("msb", int(k))
        raise ConfigError(f"protection {spec!r}: valid: {VALID}")

    @property
    def name(self) -> str:
        return f"msb:{self.k}" if self.kind == "msb" else self.kind

    def __repr__(self):
        return f"Protection({self.name!r})"

    def __eq__(self, other):
        return isinstance(other, Protection) and self.name == other.name

    def __hash__(self):
        return hash(self.name)

    def stored_bits(self, data_bits: int) -> int:
        """Cells needed to store `data_bits` bits (SECDED: 72 per 64-bit word, rounded up)."""
        return -(-data_bits // DATA_BITS) * WORD_BITS if self.kind == "secded" else data_bits

    def residual_ber(self, p: float, bits: int | None = None) -> float:
        """Expected data-bit error rate after protection at raw bit error rate p. secded: the
        exact mean over the 64 data bits of a word (all columns used); msb:K: p (b - K) / b
        for b-bit weights (`bits` required); none: p."""
        p = _check_p(p)
        if self.kind == "secded":
            return float(_column_residual(p).mean())
        if self.kind == "msb":
            if bits is None:
                raise ConfigError("msb protection: residual_ber needs the weight width (bits)")
            return p * max(bits - self.k, 0) / bits
        return p

    def groups(self, stored, bers) -> list:
        """Fault units per layer of `stored` (a StoredWeights) at per-layer raw rates `bers`:
        objects with n (units), q (P(a unit is hit)), realize(hit units, rng) -> positions in
        the StoredWeights numbering, expected_flips(). Layers with p = 0 or no unit left out."""
        starts = [int(s) for s in stored.widths.bit_starts.tolist()]
        out = []
        for l, (p, size, b) in enumerate(zip(bers, stored.sizes, stored.layer_bits)):
            if p <= 0:
                continue
            if self.kind == "secded":
                g = _Words(l, starts[l], size, b, p)
            else:
                g = _Bits(l, starts[l], size, b, b - self.k if self.kind == "msb" else b, p)
            if g.n > 0 and g.q > 0:
                out.append(g)
        return out
