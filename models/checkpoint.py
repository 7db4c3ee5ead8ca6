"""Checkpoints: weights plus the full model/quantizer/data config, so that evaluation,
sweeps and attacks need nothing else. Saved atomically, loaded with weights_only=True."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from .errors import ConfigError
from .networks import create_model
from .quant import quantize_layers

FORMAT = 1


def build_model(config: dict) -> nn.Module:
    """The (untrained) network a config describes: registry network or user model (its
    `source`), then its quantizer, its ranges not initialised (the caller loads a state dict:
    its ranges replace them)."""
    m = config["model"]
    if m.get("source"):  # a user model (file.py:factory, torchvision:, timm:): models/usercode.py
        from .usercode import build_user_model
        model = build_user_model(m, "model")
    else:
        model = create_model(m["name"], num_classes=m["num_classes"],
                             in_channels=m.get("in_channels"))
    q = config.get("quantizer")
    if q:
        quantize_layers(model, q["name"], q["bits"], q.get("bfn_rate", 0.0),
                        q.get("layer_bits"), q.get("params", {}), init=False)
    return model


def epochs_trained(ckpt: dict) -> tuple[int, int]:
    """(epochs done, epochs its recipe asks for): a checkpoint is written after every epoch,
    so one still being trained reads e.g. (12, 40)."""
    return ckpt["epoch"], ckpt["config"]["train"]["epochs"]


def last_test_acc(ckpt: dict) -> float | None:
    """Test accuracy after the last epoch written, from the training history."""
    return ckpt["history"][-1]["test_acc"] if ckpt.get("history") else None


def save_atomic(obj, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged/foreign file
        raise ConfigError(f"checkpoint {str(path)!r} could not be read ({_first_line(e)}); "
                          "expected a .pt file written by hwsim train") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "config" not in ckpt:
        raise ConfigError(f"checkpoint {str(path)!r} is not an hwsim checkpoint (format {FORMAT})")
    _check_config(ckpt, path)
    return ckpt


def _first_line(e: BaseException, limit: int = 160) -> str:
    """torch's load/state-dict errors run to many lines: the first one says what happened."""
    text = str(e).strip().splitlines()
    line = text[0].strip() if text else type(e).__name__
    return line if len(line) <= limit else line[:limit] + "..."


def _check_config(ckpt: dict, path) -> None:
    """The fields build_model and the commands read, each with its type."""
    cfg = ckpt["config"]
    where = f"checkpoint {str(path)!r}"
    m = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(m, dict) or not isinstance(m.get("name"), str) or \
            not isinstance(m.get("num_classes"), int):
        raise ConfigError(f"{where}: config.model must be a mapping with name (str) and "
                          f"num_classes (int), got {m!r}")
    q = cfg.get("quantizer")
    if q is not None and (not isinstance(q, dict) or not isinstance(q.get("name"), str) or
                          not isinstance(q.get("bits"), int)):
        raise ConfigError(f"{where}: config.quantizer must be null or a mapping with name (str) "
                          f"and bits (int), got {q!r}")
    lb = (q or {}).get("layer_bits")
    if lb is not None and (not isinstance(lb, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in lb.items())):
        raise ConfigError(f"{where}: config.quantizer.layer_bits must be a mapping of layer "
                          f"name (str) to bits (int), got {lb!r}")
    if not isinstance(cfg.get("data"), dict) or not isinstance(ckpt.get("model_state"), dict):
        raise ConfigError(f"{where}: config.data or model_state is missing")


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(model in eval mode with the trained weights, config dict)."""
    return model_from_checkpoint(read_checkpoint(path), path)


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """load_checkpoint for a checkpoint already read (read_checkpoint) from `path`."""
    try:
        model = build_model(ckpt["config"])
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise ConfigError(f"checkpoint {str(path)!r}: {e}") from None
        raise ConfigError(f"checkpoint {str(path)!r}: its weights do not fit the network its "
                          f"config describes ({_first_line(e)})") from None
    model.eval()
    return model, ckpt["config"]


def method_name(config: dict) -> str:
    """Display name of a checkpoint's method, e.g. 'wcat+bfn' or 'float'."""
    q = config.get("quantizer")
    if not q:
        return "float"
    adv = (config.get("train") or {}).get("adv_flips", 0)
    return (q["name"] + ("+bfn" if q.get("bfn_rate", 0) > 0 else "")
            + ("+abfn" if q.get("act_bfn_rate", 0) > 0 else "")
            + (f"+adv{adv}" if adv else ""))
