"""hwsim's Python API: bring your own network (any torch.nn.Module) and data.

Read top to bottom; each function is a few lines over the code the CLI runs, so the same
network gives the same numbers here and through `hwsim` (tests/test_api.py).

    from hwsim import api as hw
    hw.quantize(net, "wcat", bits=4, bfn_rate=5e-3)        # in place: Conv2d/Linear layers
    for x, y in loader:                                      # your own training loop
        loss = F.cross_entropy(net(x), y) + hw.regularizer(net)
        opt.zero_grad(); loss.backward(); opt.step()
        hw.after_step(net)
    hw.evaluate(net, test, ber=1e-2, realizations=50)        # accuracy under bit errors
    hw.energy(net, arch="eyeriss_sram", input_shape=(1, 8, 8))
    df = hw.sweep(net, test, arch="eyeriss_sram", voltages=[0.4, 0.5, 0.8])
    hw.pareto(df, out="report.html")

`data` is a DataLoader, a Dataset of (x, y), an (x, y) pair of tensors or an hwsim data set
(`hwsim.models.load_dataset("digits")`); inputs are used as given (normalise them yourself).
The network side is importable as `hwsim.models` (e.g. `from hwsim.models import quant`).
The functions that do not share a name with an hwsim submodule are also `hwsim.quantize`,
`hwsim.evaluate`, ... (hwsim.sweep, hwsim.energy, hwsim.pareto are modules).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

from hwsim.models.device import precision_scope
from hwsim.models.errors import ConfigError
from hwsim.models.evaluate import (BitErrorResult, PairedDifference, StoredWeights,
                                   evaluate_under_bit_errors, paired_difference)
from hwsim.models.faults import flip_positions, sample_flip_count, sample_positions
from hwsim.models.quant import post_step, quant_layers, quant_penalty, quantize_model, split_widths
from hwsim.models.usercode import as_tensors

from .ber import BerModel, check_voltage
from .energy import NetworkEnergy, network_energy
from .paths import DEFAULT_ARCH, resolve_arch
from .scenario import Scenario
from .sweep import COLUMNS, REPORT_COLUMNS, sweep_points, voltage_grid
from .workload import extract_layers

__all__ = ["quantize", "regularizer", "after_step", "param_groups", "evaluate", "compare",
           "accuracy", "energy", "sweep", "pareto", "layer_sensitivity", "layer_noise",
           "noise_summary", "ConfigError"]


# --------------------------------------------------------------------------- quantize, train

def quantize(model: nn.Module, quantizer: str = "wcat", bits=4, bfn_rate: float = 0.0,
             layer_bits: dict | None = None, **params) -> nn.Module:
    """Quantize `model` in place and return it: every nn.Conv2d (grouped and depthwise
    included) and nn.Linear stores `bits`-bit integers with one range per layer.

    Per-layer widths (mixed precision, 2..8 bits): bits=4, layer_bits={"conv1": 8, "fc": 8}
    (module paths); or bits={layer: bits} naming every layer; or bits=callable(name, module)
    -> bits (None: 4). Faults then flip each layer's bits within its width, and energy maps
    each layer with its own weight word width.

    quantizer: 'normal', 'plclip' (param c), 'lsq' or 'wcat' (params weight_decay_a, init);
    bfn_rate: bit-flip noise training rate (flips in every training forward pass; 0 = off).
    Any other layer holding weights (Conv1d, Embedding, attention, ...) is a ConfigError
    naming it; normalisation layers stay float. Quantize after loading float weights: each
    range starts from the layer's weights."""
    return quantize_model(model, quantizer, bits, bfn_rate, layer_bits=layer_bits, **params)


def regularizer(model: nn.Module) -> torch.Tensor | float:
    """The quantizers' loss term (WCAT: lambda/2 * a_l^2 per layer; others 0): add it to your
    loss before backward()."""
    return quant_penalty(model)


def after_step(model: nn.Module) -> None:
    """Call after every optimizer.step(): PLClip re-clips its layers here (a no-op for the
    other quantizers, so always calling it is safe)."""
    post_step(model)


def param_groups(model: nn.Module, weight_decay: float = 5e-4) -> list[dict]:
    """Optimizer parameter groups as `hwsim train` uses them: weight decay on the network's
    weights, none on the quantizers' ranges/steps (WCAT has its own penalty, regularizer)."""
    q = [p for n, p in model.named_parameters() if ".quantizer." in n]
    rest = [p for n, p in model.named_parameters() if ".quantizer." not in n]
    return [{"params": rest, "weight_decay": weight_decay}] + \
        ([{"params": q, "weight_decay": 0.0}] if q else [])


# --------------------------------------------------------------------------- accuracy

def accuracy(model: nn.Module, data) -> float:
    """Clean accuracy (fraction) of `model` on `data`, float or quantized."""
    from hwsim.models.evaluate import accuracy as _accuracy
    return _accuracy(model, as_tensors(data))


def evaluate(model: nn.Module, data, ber=0.0, realizations: int = 50,
             seed: int = 0, *, protection: str | None = None,
             act_ber: float = 0.0) -> BitErrorResult:
    """Accuracy of a quantized `model` under random bit errors at rate `ber` in its stored
    weights: `realizations` independent patterns (plain Monte Carlo, as `hwsim eval`).
    `ber`: one rate, or {layer name: rate} (layers not named stay error-free);
    `protection`: 'none', 'secded' ((72,64) ECC per 64-bit word) or 'msb:K' (top K bits
    never flip); `act_ber` > 0 adds transient bit errors in the 8-bit stored activations
    (hwsim.models.activations; a fresh pattern every pass). Returns .clean, .mean, .std,
    .ci95 (95% CI half-width), .accuracies, .flips. The model's weights are never changed."""
    if act_ber:
        from hwsim.models.activations import evaluate_under_activation_faults
        return evaluate_under_activation_faults(model, as_tensors(data), act_ber,
                                                weight_ber=ber, realizations=realizations,
                                                seed=seed, protection=protection)
    return evaluate_under_bit_errors(model, as_tensors(data), ber, realizations, seed,
                                     protection=protection)


def compare(a: BitErrorResult, b: BitErrorResult) -> PairedDifference:
    """Does b hold more accuracy than a under bit errors? Pass two `evaluate` results made
    with the same ber, realizations and seed: networks whose quantized layers have the same
    sizes and widths then saw the very same flipped bits, so the per-realization difference
    b - a cancels the spread the two share. Returns .mean, .std, .ci95 (95% CI
    half-width), .wilcoxon_p (two-sided), .differences, .b_ahead / .a_ahead and
    .same_patterns (as `hwsim eval --paired-with`)."""
    return paired_difference(a, b)


def precision(name: str):
    """`with hw.precision("bf16"): ...` runs the evaluation inside (accuracy, evaluate,
    sweep, layer_sensitivity) under bfloat16 autocast: ~2x faster on CPUs with AVX512-BF16,
    accuracies within ~0.15 points of float32 under the same flips. 'fp32': float32
    everywhere; 'auto' (the default outside): float32 on the CPU, float16 autocast on a
    GPU. The previous precision is restored on leaving (as `--precision` of hwsim eval)."""
    return precision_scope(name)


def layer_sensitivity(model: nn.Module, data, ber: float = 1e-2, realizations: int = 10,
                      seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Per quantized layer: accuracy when only that layer's stored bits flip at rate `ber`
    (mean and std over `realizations`), with its weight count; the most sensitive first.
    progress: a bar over the layers on stderr."""
    import sys

    import numpy as np
    from tqdm import tqdm
    x, y = as_tensors(data)
    model.eval()
    stored = StoredWeights(model)
    rows, start = [], 0
    layers = tqdm(list(zip(quant_layers(model), stored.sizes, stored.shapes, stored.scales)),
                  desc="layer sensitivity", unit="layer", disable=not progress, file=sys.stderr)
    for (name, layer), size, shape, scale in layers:
        rng, accs = np.random.default_rng(seed), []
        width = layer.quantizer.bits
        ints, n_bits = stored.ints[start:start + size], size * width
        for _ in range(realizations):
            pos = sample_positions(n_bits, sample_flip_count(n_bits, ber, rng), rng)
            w = flip_positions(ints, width, pos).float().reshape(shape) * scale
            layer.weight_override = w  # this layer only; removed right after
            try:
                accs.append(accuracy(model, (x, y)))
            finally:
                layer.weight_override = None
        rows.append({"layer": name, "weights": size, "bits": width, "ber": ber,
                     "acc_mean": float(np.mean(accs)),
                     "acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0})
        start += size
    return pd.DataFrame(rows).sort_values("acc_mean", kind="stable").reset_index(drop=True)


def layer_noise(model: nn.Module, ber: float = 1e-2) -> pd.DataFrame:
    """Per quantized layer, in network order and without running the network: what bit errors
    at rate `ber` do to its stored weights. A flip of bit j of a b-bit two's-complement
    integer moves the weight by 2^j steps, so the expected squared error per weight is
    ber * step^2 * (4^b - 1) / 3. Columns: weights, bits, ber, `nsr` (that error over the
    stored weights' mean square: noise-to-signal), `range_over_rms` (the range over the stored
    weights' RMS; nsr = ber * range_over_rms^2 * (4^b - 1) / (3 (2^(b-1) - 1)^2)) and
    `range_over_std` (over the float weights' std, which also counts float weights beyond the
    range that a quantizer clips only in its stored copy)."""
    stored = StoredWeights(model)
    rows = []
    for name, layer, ints, scale in zip(stored.names, stored.layers,
                                        torch.split(stored.ints, stored.sizes), stored.scales):
        bits, step = layer.quantizer.bits, float(scale)
        power = float((ints.double() * step).pow(2).mean())
        a = step * layer.quantizer.q  # the range: q = 2^(b-1) - 1 steps
        rows.append({"layer": name, "weights": ints.numel(), "bits": bits, "ber": ber,
                     "nsr": ber * step ** 2 * (4 ** bits - 1) / 3 / power if power else math.inf,
                     "range_over_rms": a / power ** 0.5 if power else math.inf,
                     "range_over_std": a / float(layer.weight.detach().double().std())})
    return pd.DataFrame(rows)


def noise_summary(model: nn.Module, ber: float = 1e-2) -> dict[str, float]:
    """One network's layer_noise in three numbers: `range_over_rms` and `range_over_std`
    (medians over layers) and `nsr` (the layers' noise-to-signal ratios weighted by their
    number of weights)."""
    t = layer_noise(model, ber)
    return {"range_over_rms": float(t.range_over_rms.median()),
            "range_over_std": float(t.range_over_std.median()),
            "nsr": float((t.nsr * t.weights).sum() / t.weights.sum())}


# --------------------------------------------------------------------------- energy

def _weight_bits(model: nn.Module) -> tuple[int, dict[str, int]]:
    """(default width, {layer: width} where it differs); (8, {}) for a float model."""
    return split_widths(model)


def energy(model: nn.Module, arch: str = DEFAULT_ARCH, input_shape=None,
           weight_bits: int | None = None, act_bits: int = 8, workers: int | None = None,
           progress: bool = False) -> NetworkEnergy:
    """Energy per inference (batch 1) of `model`'s conv/linear layers on an arch file (path
    or shipped name), as `hwsim energy`: .total_uJ, .weight_memory_uJ, .weight_share,
    .layers (per layer, per component). input_shape: (C, H, W), default model.input_shape;
    weight_bits: default each layer's quantizer width (mixed precision: per layer), else 8;
    given, all layers use it. Layer shapes not in the cache are mapped by AccelForge (~30-60 s
    each on 2 cores), `workers` at once (default: one per core, at most 4), and cached."""
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ConfigError(f"{type(model).__name__}: pass input_shape=(C, H, W) (or set "
                              "model.input_shape)")
    bits, mixed = _weight_bits(model) if weight_bits is None else (weight_bits, {})
    layers = extract_layers(model, tuple(input_shape), weight_bits=bits, act_bits=act_bits,
                            layer_bits=mixed)
    return network_energy(resolve_arch(arch, "arch"), layers, progress=progress,
                          workers=workers)


# --------------------------------------------------------------------------- sweep, report

def _config(model: nn.Module) -> dict:
    """The quantizer record a checkpoint would hold (names the method in the results)."""
    layers = quant_layers(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} is not quantized: a sweep needs stored "
                          "integers (hwsim.quantize(model, ...) first)")
    m = layers[0][1]
    bits, mixed = _weight_bits(model)
    q = {"name": type(m.quantizer).registry_name, "bits": bits, "bfn_rate": m.bfn_rate}
    return {"quantizer": dict(q, layer_bits=mixed) if mixed else q}


def sweep(model: nn.Module, data, arch: str = DEFAULT_ARCH, voltages=None, *,
          realizations: int = 50, ci_target: float | None = None, seed: int = 0,
          ber_model: str | BerModel | None = None, act_bits: int = 8, input_shape=None,
          label: str | None = None, progress: bool = False, domains=None,
          protection: str | None = None) -> pd.DataFrame:
    """Accuracy under bit errors and energy per inference at each weight-memory voltage,
    as `hwsim sweep` computes them: a DataFrame with the columns of results.csv (one row per
    voltage; `checkpoint` is empty, `checkpoint_sha256` hashes the weights). voltages:
    default 0.35..0.8 V in 0.01 V steps; ber_model: a BER fit file (`hwsim ber fit`) or None
    (the paper's eq. 11). `domains` (names of the arch file's voltage domains the voltage
    drives; default the weight memory) and `protection` ('none', 'secded', 'msb:K') as in
    `hwsim sweep --domains/--protection`. Same seed, same numbers as the CLI on the same
    weights."""
    scenario = Scenario.of(domains, protection)
    voltages = voltage_grid(0.35, 0.8, 0.01) if voltages is None else \
        [check_voltage(v) for v in voltages]
    if not isinstance(ber_model, BerModel):
        ber_model = BerModel.load(ber_model)
    config = _config(model)
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:  # the data's own shape
        shape = tuple(as_tensors(data)[0].shape[1:])
    ne = energy(model, arch, shape, None, act_bits)  # each layer at its own width
    digest = hashlib.sha256()
    for k, v in model.state_dict().items():
        digest.update(k.encode() + v.detach().cpu().numpy().tobytes())
    rows = sweep_points(model, config, as_tensors(data), ne, list(voltages),
                        ber_model=ber_model, realizations=realizations, ci_target=ci_target,
                        seed=seed, label=label, fingerprint=digest.hexdigest()[:16],
                        progress=progress, scenario=scenario)
    return pd.DataFrame(rows, columns=COLUMNS)


def _frame(item) -> pd.DataFrame:
    from .sweep import read_rows
    if isinstance(item, pd.DataFrame):
        missing = [c for c in REPORT_COLUMNS if c not in item.columns]
        if missing:
            raise ConfigError(f"DataFrame: missing column(s) {', '.join(missing)}; a results "
                              f"table needs {', '.join(REPORT_COLUMNS)}")
        return item
    if not Path(item).is_file():
        raise ConfigError(f"{str(item)!r} does not exist")
    return read_rows(Path(item), REPORT_COLUMNS)


def pareto(results, out: str | Path = "report.html", *, title: str | None = None,
           frontier: str | Path | None = None) -> pd.DataFrame:
    """Write the HTML report (Pareto plot, accuracy vs BER and voltage, lowest-energy
    voltage table) and the frontier CSV (default: next to `out`, *_frontier.csv), as
    `hwsim pareto`. results: a DataFrame (e.g. from sweep), a CSV path, or a list of them;
    any table with the columns label, voltage, ber, acc_clean, acc_mean, acc_ci95,
    energy_uJ. Returns the frontier."""
    from .files import write_text_atomic
    from .report import DEFAULT_TITLE, write_report

    items = results if isinstance(results, (list, tuple)) else [results]
    df = pd.concat([_frame(r) for r in items], ignore_index=True)
    if df.empty:
        raise ConfigError("no points in the given results")
    front = write_report(df, out, title=title or DEFAULT_TITLE)
    fpath = Path(frontier or Path(out).with_name(Path(out).stem + "_frontier.csv"))
    write_text_atomic(fpath, front.to_csv(index=False))
    return front

