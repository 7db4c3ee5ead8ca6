"""Data sets held in memory as uint8 image tensors (decoded once), with on-the-fly
normalisation and batch-wise augmentation. Nothing here downloads anything.

- digits: scikit-learn's bundled 8x8 digits (1,797 images), seeded stratified split.
- cifar10: from --data-root = torchvision's `cifar-10-batches-py` folder, an ImageFolder tree
  (train/<class>/*, test/<class>/*), or a .tar.gz of such a tree. Decoded arrays are cached
  under ~/.cache/hwsim (override with HWSIM_CACHE) so later runs skip JPEG decoding.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError

DATASETS = ("digits", "cifar10")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


@dataclass
class ImageData:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    mean: tuple[float, ...]  # per channel, in [0, 1] units of `scale`
    std: tuple[float, ...]
    scale: float = 255.0  # images / scale is in [0, 1]
    augment: bool = False  # random crop (pad 4) + horizontal flip when training
    num_classes: int = 10

    def __len__(self):
        return len(self.labels)

    def subset(self, idx) -> "ImageData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageData(self.images[idx], self.labels[idx], self.mean, self.std, self.scale,
                         self.augment, self.num_classes)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / self.scale
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std

    def batches(self, batch_size: int, shuffle: bool = False, train: bool = False,
                generator: torch.Generator | None = None):
        """Yield (normalized float images, labels)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            x = self.images[idx]
            if train and self.augment:
                x = _crop_flip(x, generator)
            yield self.normalize(x), self.labels[idx]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.normalize(self.images), self.labels


def _crop_flip(x: torch.Tensor, gen: torch.Generator | None, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a uint8 batch: random crop after zero-padding by 4,
    random horizontal flip; vectorised (one gather per batch)."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # n x h
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # n x w
    flip = torch.rand(n, generator=gen) < 0.5
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    bidx = torch.arange(n).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[bidx, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def load_digits(split_seed: int = 0, test_fraction: float = 0.2) -> tuple[ImageData, ImageData]:
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split
    d = _load()
    x = torch.from_numpy(d.images.astype(np.uint8)).unsqueeze(1)  # values 0..16
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction,
                              random_state=split_seed, stratify=d.target)
    xf = x[torch.as_tensor(tr)].float() / 16.0
    mean, std = (float(xf.mean()),), (float(xf.std()),)
    mk = lambda idx: ImageData(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)], mean, std,
                               scale=16.0)
    return mk(tr), mk(te)


def _cache_dir() -> Path:
    return Path(os.environ.get("HWSIM_CACHE", Path.home() / ".cache" / "hwsim"))


def _decode_jpeg_members(items) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    imgs, labels = [], []
    for label, blob in items:
        with Image.open(io.BytesIO(blob)) as im:
            imgs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        labels.append(label)
    return np.stack(imgs).transpose(0, 3, 1, 2), np.asarray(labels, dtype=np.int64)


def _read_image_tree(root: Path) -> dict[str, list[tuple[int, bytes]]]:
    """{'train': [(label, bytes)], 'test': [...]} from a folder or a .tar(.gz) of one."""
    out: dict[str, list] = {"train": [], "test": []}

    def add(parts: list[str], data: bytes):
        # .../<split>/<class>/<file>
        if len(parts) >= 3 and parts[-3] in out and parts[-2] in CIFAR10_CLASSES:
            out[parts[-3]].append((CIFAR10_CLASSES.index(parts[-2]), data))

    if root.is_file():
        with tarfile.open(root) as tar:
            for m in tar:
                if m.isfile():
                    add(m.name.split("/"), tar.extractfile(m).read())
    else:
        for split in out:
            for f in sorted((root / split).glob("*/*")):
                add(list(f.parts), f.read_bytes())
    for split in out:  # deterministic order whatever the archive order
        out[split].sort(key=lambda t: t[0])
    return out


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what torchvision's CIFAR batch files hold (dicts, lists, str/bytes, ints,
    numpy arrays and dtypes): a crafted file cannot name any other callable, so loading it
    never runs code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 3 x 32 x 32 uint8, labels) from one CIFAR-10 python batch file."""
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="latin1").load()
        data, labels = d["data"], d["labels"]
        if not isinstance(data, np.ndarray) or data.dtype == object:
            raise TypeError("'data' is not a numeric array")
        x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(labels, dtype=np.int64)
    except FileNotFoundError:
        raise ConfigError(f"CIFAR-10 batch file {str(path)!r} does not exist") from None
    except Exception as e:  # refused globals, truncated files, wrong structure
        raise ConfigError(f"{path}: not a CIFAR-10 python batch file (a pickled dict with "
                          f"'data' uint8 N x 3072 and 'labels'): {e}") from None
    if len(x) != len(y) or (len(y) and not (0 <= y.min() and y.max() < 10)):
        raise ConfigError(f"{path}: {len(x)} images but {len(y)} labels, or labels outside 0..9")
    return x, y


def _read_cifar_batches(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    def load(names):
        parts = [_read_cifar_batch(root / n) for n in names]
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    return {"train": load([f"data_batch_{i}" for i in range(1, 6)]), "test": load(["test_batch"])}


def load_cifar10(root: str | os.PathLike | None) -> tuple[ImageData, ImageData]:
    if not root:
        raise ConfigError("cifar10 needs a data root: pass --data-root DIR (torchvision's "
                          "cifar-10-batches-py folder, an ImageFolder tree with train/ and "
                          "test/, or a .tar.gz of one, e.g. ../shared/data/cifar10-jpeg.tar.gz)")
    root = Path(root).expanduser()
    if root.is_dir() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.exists():
        raise ConfigError(f"data root {str(root)!r} does not exist")
    st = root.stat()
    key = hashlib.sha256(f"{root.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = _cache_dir() / f"cifar10-{key}.npz"
    if cache.exists():
        z = np.load(cache)
        arrays = {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in ("train", "test")}
    else:
        if (root / "data_batch_1").exists():
            arrays = _read_cifar_batches(root)
        else:
            tree = _read_image_tree(root)
            if not tree["train"] or not tree["test"]:
                raise ConfigError(f"data root {str(root)!r}: found no train/<class>/* and "
                                  f"test/<class>/* images (classes: {', '.join(CIFAR10_CLASSES)})")
            arrays = {s: _decode_jpeg_members(tree[s]) for s in tree}
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.stem}.", suffix=".npz")
        try:  # a unique temporary name: two processes decoding at once cannot collide
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{f"{s}_{k}": a for s, (x, y) in arrays.items()
                               for k, a in (("x", x), ("y", y))})
            os.replace(tmp, cache)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    mk = lambda s, aug: ImageData(torch.from_numpy(arrays[s][0]), torch.from_numpy(arrays[s][1]),
                                  mean, std, augment=aug)
    return mk("train", True), mk("test", False)


def load_dataset(name: str, root: str | None = None, split_seed: int = 0):
    """(train, test) ImageData for a data set name."""
    if name == "digits":
        if root:
            raise ConfigError(f"data root {str(root)!r} given for the digits data set, which is "
                              "bundled with scikit-learn and reads no files; drop --data-root "
                              "(it is for cifar10)")
        return load_digits(split_seed)
    if name == "cifar10":
        return load_cifar10(root)
    from .usercode import is_spec, load_user_data
    if is_spec(name):  # path/to/file.py:factory returning (train, test)
        return load_user_data(name)
    raise ConfigError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)} or "
                      "path/to/file.py:factory")
