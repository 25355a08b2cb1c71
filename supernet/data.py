"""Data sets held in memory as uint8 images at one base resolution, resized on the fly.

Images are prepared once at a base resolution and resized bicubically (antialiased)
to each child's resolution, in training and evaluation alike (BigNAS supplement C).
Specs: `digits` (embedded), `cifar10:PATH`, `folder:PATH`, `npz:PATH`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA_SPECS = "digits | cifar10:PATH | folder:PATH | npz:PATH"
CIFAR_LAYOUT = "a CIFAR-10 python folder with data_batch_1..data_batch_5 and test_batch"
FOLDER_LAYOUT = "train/<class>/*.png|jpg and val/<class>/*.png|jpg"
NPZ_LAYOUT = "an .npz with x (N, H, W, 3) uint8 and y (N,) integer labels"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class Split:
    """Images (N, 3, H, W) uint8 and labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class DataSet:
    """Train / val / test splits with their normalisation and augmentation policy."""

    name: str
    train: Split
    val: Split
    test: Split | None
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip: bool  # horizontal flips suit natural images, not digits
    pad: int  # random-crop padding in base-resolution pixels


def _stratified_split(y: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Indices of a seeded, class-stratified split into len(fractions) parts."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for p, chunk in zip(parts, np.split(idx, cuts)):
            p.extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _to_base(x: np.ndarray, base: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, base, base) uint8, bicubic-antialiased if resized."""
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    if t.shape[-1] != base or t.shape[-2] != base:
        t = F.interpolate(t.float(), size=(base, base), mode="bicubic", antialias=True,
                          align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return t.contiguous()


def _split(x: np.ndarray, y: np.ndarray, base: int) -> Split:
    return Split(_to_base(x, base), torch.as_tensor(np.asarray(y), dtype=torch.int64))


def _holdout(x, y, val_fraction: float, seed: int, base: int) -> tuple[Split, Split]:
    tr, va = _stratified_split(y, [1 - val_fraction, val_fraction], seed)
    return _split(x[tr], y[tr], base), _split(x[va], y[va], base)


def _digits(base: int, seed: int) -> DataSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0..16 grey levels -> 0..255, three identical channels
    img = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    x = np.repeat(img[..., None], 3, axis=-1)
    y = d.target.astype(np.int64)
    tr, va, te = _stratified_split(y, [0.7, 0.15, 0.15], seed)
    return DataSet("digits", _split(x[tr], y[tr], base), _split(x[va], y[va], base),
                   _split(x[te], y[te], base), 10, (0.5,) * 3, (0.5,) * 3, False, 0)


def _cifar10(path: Path, base: int, seed: int, val_fraction: float) -> DataSet:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not path.is_dir() or not all((path / n).is_file() for n in names):
        raise ValueError(f"data: {str(path)!r} is not {CIFAR_LAYOUT}")

    def read(n: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            with open(path / n, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            return x.transpose(0, 2, 3, 1), np.asarray(d[b"labels"], dtype=np.int64)
        except Exception as e:
            raise ValueError(f"data: {str(path / n)!r} is corrupt or not a CIFAR-10 batch "
                             f"({type(e).__name__}); expected {CIFAR_LAYOUT}") from None

    parts = [read(n) for n in names[:5]]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    train, val = _holdout(x, y, val_fraction, seed, base)
    tx, ty = read("test_batch")
    return DataSet("cifar10", train, val, _split(tx, ty, base), 10,
                   (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, max(1, base // 8))


def _npz(path: Path, base: int, seed: int, val_fraction: float) -> DataSet:
    if not path.is_file():
        raise ValueError(f"data: {str(path)!r} does not exist; expected {NPZ_LAYOUT}")
    try:
        with np.load(path) as d:
            x, y = d["x"], d["y"]
    except Exception as e:
        raise ValueError(f"data: {str(path)!r} is unreadable ({type(e).__name__}); "
                         f"expected {NPZ_LAYOUT}") from None
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or len(x) != len(y):
        raise ValueError(f"data: {str(path)!r} has x {x.shape} {x.dtype}, y {y.shape}; "
                         f"expected {NPZ_LAYOUT}")
    y = y.astype(np.int64)
    train, val = _holdout(x, y, val_fraction, seed, base)
    # a sibling *_val*.npz (the layout of ../shared/data) would be a cleaner val split,
    # but an explicit held-out fraction keeps one file self-contained
    return DataSet(path.stem, train, val, None, int(y.max()) + 1,
                   (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, max(1, base // 8))


def _read_images(folder: Path, classes: list[str], base: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    xs, ys = [], []
    for ci, c in enumerate(classes):
        for f in sorted((folder / c).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    if im.size != (base, base):
                        im = im.resize((base, base), Image.BICUBIC)
                    xs.append(np.asarray(im, dtype=np.uint8))
            except Exception as e:
                raise ValueError(f"data: {str(f)!r} is not a readable image "
                                 f"({type(e).__name__})") from None
            ys.append(ci)
    if not xs:
        raise ValueError(f"data: no images under {str(folder)!r}; expected {FOLDER_LAYOUT}")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _folder(path: Path, base: int) -> DataSet:
    if not (path / "train").is_dir() or not (path / "val").is_dir():
        raise ValueError(f"data: {str(path)!r} is not an image folder; expected {FOLDER_LAYOUT}")
    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"data: {str(path / 'train')!r} has no class folders; "
                         f"expected {FOLDER_LAYOUT}")
    missing = [c for c in classes if not (path / "val" / c).is_dir()]
    if missing:
        raise ValueError(f"data: {str(path / 'val')!r} lacks class folders {missing}; "
                         f"expected {FOLDER_LAYOUT}")
    tx, ty = _read_images(path / "train", classes, base)
    vx, vy = _read_images(path / "val", classes, base)
    return DataSet(path.name, _split(tx, ty, base), _split(vx, vy, base), None, len(classes),
                   (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True, max(1, base // 8))


def load_data(spec: str, base_resolution: int, seed: int = 0,
              val_fraction: float = 0.1) -> DataSet:
    """Load a data set spec (see DATA_SPECS) with images stored at `base_resolution`."""
    kind, _, path = str(spec).partition(":")
    if kind == "digits" and not path:
        return _digits(base_resolution, seed)
    if kind in ("cifar10", "folder", "npz") and path:
        p = Path(path).expanduser()
        if kind == "cifar10":
            return _cifar10(p, base_resolution, seed, val_fraction)
        if kind == "npz":
            return _npz(p, base_resolution, seed, val_fraction)
        return _folder(p, base_resolution)
    raise ValueError(f"data: {spec!r} is not a data spec; allowed {DATA_SPECS}")


def resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bicubic, antialiased resize of a float batch to `resolution` (no-op if equal)."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True,
                         align_corners=False)


def normalize(x: torch.Tensor, data: DataSet) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> normalised float."""
    mean = torch.tensor(data.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(data.std).view(1, 3, 1, 1) * 255
    return (x.float() - mean) / std


def augment(x: torch.Tensor, data: DataSet, g: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and (where the data suits it) horizontal flip."""
    n, _, h, w = x.shape
    if data.pad:
        p = data.pad
        xp = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=g)
        rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
        cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
        idx = torch.arange(n).view(n, 1, 1)
        x = xp.permute(0, 2, 3, 1)[idx, rows.view(n, h, 1), cols.view(n, 1, w)]
        x = x.permute(0, 3, 1, 2)
    if data.flip:
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    return x.contiguous()


def batches(split: Split, data: DataSet, batch_size: int, *, g: torch.Generator | None = None,
            train: bool = False, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """Normalised float batches at base resolution; shuffled and augmented when `train`."""
    n = len(split)
    order = torch.randperm(n, generator=g) if train else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        x = split.x[idx]
        if train:
            x = augment(x, data, g)
        yield normalize(x, data), split.y[idx]
