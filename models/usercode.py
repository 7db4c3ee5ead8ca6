"""Networks and data sets from user code: `path/to/file.py:factory`, `torchvision:NAME`,
`timm:NAME` (when timm is installed).

Loading a `file.py:factory` spec imports that file, which runs its code: it is the user's
own file, named on their command line (arch YAMLs and checkpoints stay data-only). A
checkpoint of a user model records how to rebuild it (`config.model.source`: the file's
absolute path, the factory, its keyword arguments) and the input shape; loading such a
checkpoint imports that file again, so load only checkpoints whose model file you trust.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch
import torch.nn as nn

from .data import ImageData
from .errors import ConfigError

HUBS = ("torchvision", "timm")


def is_spec(name) -> bool:
    """True for `file.py:factory`, `torchvision:NAME` and `timm:NAME` (not registry names)."""
    if not isinstance(name, str) or ":" not in name:
        return False
    head = name.rsplit(":", 1)[0]
    return head in HUBS or head.endswith(".py")


def parse_spec(spec: str, what: str = "--model") -> dict:
    """{'kind': 'file'|'torchvision'|'timm', 'path': absolute file path (file only),
    'factory': name} for a spec string; ConfigError naming the spec when malformed."""
    if not is_spec(spec):
        raise ConfigError(f"{what} {spec!r}: expected path/to/file.py:factory, "
                          f"torchvision:NAME or timm:NAME")
    head, factory = spec.rsplit(":", 1)
    if not factory.isidentifier():
        raise ConfigError(f"{what} {spec!r}: {factory!r} is not a Python name")
    if head in HUBS:
        return {"kind": head, "factory": factory}
    return {"kind": "file", "path": str(Path(head).expanduser().resolve()), "factory": factory}


def _import_file(path: str, what: str):
    """The user's file as a module (imported once per process and path)."""
    p = Path(path)
    if not p.is_file():
        hint = "; the checkpoint's network is defined there: restore the file to load it" \
            if what == "model" else ""
        raise ConfigError(f"{what} file {path!r} does not exist{hint}")
    name = "hwsim_user_" + hashlib.sha256(str(p).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(p.parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)  # runs the user's code, by design
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(p.parent))
    return module


def resolve_factory(source: dict, what: str = "--model"):
    """The callable a source dict names (imports the user's file, or torchvision/timm)."""
    kind, factory = source["kind"], source["factory"]
    if kind == "file":
        module = _import_file(source["path"], what)
        fn = getattr(module, factory, None)
        if not callable(fn):
            raise ConfigError(f"{what} {source['path']}:{factory}: the file defines no "
                              f"callable {factory!r}")
        return fn
    if kind == "torchvision":
        import torchvision
        names = torchvision.models.list_models()
        if factory not in names:
            raise ConfigError(f"{what} torchvision:{factory}: not a torchvision model; e.g. "
                              f"{', '.join(n for n in names if 'mobilenet' in n)}")
        return lambda **kw: torchvision.models.get_model(factory, weights=None, **kw)
    if kind == "timm":
        try:
            import timm
        except ImportError:
            raise ConfigError(f"{what} timm:{factory}: timm is not installed "
                              "(pip install timm)") from None
        if factory not in timm.list_models():
            raise ConfigError(f"{what} timm:{factory}: not a timm model name")
        return lambda **kw: timm.create_model(factory, pretrained=False, **kw)
    raise ConfigError(f"{what}: unknown model source kind {kind!r}; valid: file, {', '.join(HUBS)}")


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def build_user_model(m: dict, what: str = "--model") -> nn.Module:
    """The untrained network a `config.model` mapping with a `source` describes. The factory
    gets `source.kwargs`, plus num_classes / in_channels when it takes them (torchvision and
    timm: num_classes). The recorded input_shape becomes `model.input_shape`."""
    source = m["source"]
    fn = resolve_factory(source, what)
    kwargs = dict(source.get("kwargs") or {})
    hub = source["kind"] != "file"
    for key in ("num_classes", "in_channels"):
        if m.get(key) is not None and key not in kwargs and \
                ((hub and key == "num_classes") or (not hub and _accepts(fn, key))):
            kwargs[key] = m[key]
    if source["kind"] == "timm" and m.get("in_channels") is not None \
            and "in_chans" not in kwargs:
        kwargs["in_chans"] = m["in_channels"]  # timm's name for it (digits: 1 channel)
    label = source.get("path", source["kind"]) + ":" + source["factory"]
    try:
        model = fn(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{what} {label}: calling it with {kwargs} failed ({e})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{what} {label}: returned {type(model).__name__}, not a "
                          "torch.nn.Module")
    if m.get("input_shape"):
        model.input_shape = tuple(int(v) for v in m["input_shape"])
    return model


def model_entry(spec: str, num_classes: int, in_channels: int | None = None,
                input_shape=None, kwargs: dict | None = None) -> dict:
    """The `config.model` mapping a checkpoint records for a user model spec."""
    source = dict(parse_spec(spec), kwargs=dict(kwargs or {}))
    return {"name": spec, "num_classes": num_classes, "in_channels": in_channels,
            "source": source, "input_shape": list(input_shape) if input_shape else None}


class TensorData(ImageData):
    """Float tensors from user data: used as they are (no scaling or normalisation)."""

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def as_tensors(data, what: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from an (x, y) pair, an hwsim ImageData, a DataLoader or any map-style
    Dataset of (x, y) items (read once, in order)."""
    if isinstance(data, ImageData):
        return data.tensors()
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        return data[0], torch.as_tensor(data[1])
    if isinstance(data, torch.utils.data.DataLoader):
        batches = list(data)
    elif hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        batches = [torch.utils.data.default_collate([data[i] for i in range(len(data))])]
    else:
        raise ConfigError(f"{what}: expected a DataLoader, a Dataset of (x, y) or an (x, y) "
                          f"pair of tensors, got {type(data).__name__}")
    if not batches:
        raise ConfigError(f"{what}: holds no samples")
    try:
        x = torch.cat([torch.as_tensor(b[0]) for b in batches])
        y = torch.cat([torch.as_tensor(b[1]) for b in batches]).long()
    except (TypeError, IndexError, RuntimeError) as e:
        raise ConfigError(f"{what}: items must be (input tensor, integer label) ({e})") from None
    return x, y


def as_image_data(data, what: str = "data") -> ImageData:
    """hwsim's in-memory data set (ImageData) for any data as_tensors accepts."""
    if isinstance(data, ImageData):
        return data
    x, y = as_tensors(data, what)
    classes = getattr(data, "classes", None)
    n = len(classes) if classes else int(y.max()) + 1
    c = x.shape[1] if x.dim() > 1 else 1
    return TensorData(x.float(), y, (0.0,) * c, (1.0,) * c, scale=1.0, num_classes=n)


def load_user_data(spec: str) -> tuple[ImageData, ImageData]:
    """(train, test) from `file.py:factory`, a function returning two data sets."""
    src = parse_spec(spec, "--data")
    if src["kind"] != "file":
        raise ConfigError(f"--data {spec!r}: expected path/to/file.py:factory returning "
                          "(train, test) data sets")
    out = resolve_factory(src, "--data")()
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ConfigError(f"--data {spec!r}: the factory must return (train, test), got "
                          f"{type(out).__name__}")
    train, test = (as_image_data(d, f"--data {spec} ({part})")
                   for d, part in zip(out, ("train", "test")))
    train.num_classes = test.num_classes = max(train.num_classes, test.num_classes)
    return train, test
