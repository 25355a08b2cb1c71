"""Data sets held in memory as uint8 images at one base resolution, resized on the fly.

Images are prepared once at a base resolution and resized bicubically (antialiased)
to each child's resolution, in training and evaluation alike (BigNAS supplement C).
Specs: `digits` (embedded), `cifar10:PATH`, `folder:PATH`, `npz:PATH`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA_SPECS = "digits | cifar10:PATH | folder:PATH | npz:PATH"
CIFAR_LAYOUT = "a CIFAR-10 python folder with data_batch_1..data_batch_5 and test_batch"
FOLDER_LAYOUT = "train/<class>/*.png|jpg and val/<class>/*.png|jpg (test/<class>/ optional)"
NPZ_LAYOUT = ("an .npz with x (N, H, W, 3) uint8 and y (N,) integer labels, or a folder "
              "with one *train*.npz and one *val*.npz of that form")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


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
    # No flips (a mirrored 2 is no 2), but a small random crop: base/16 pixels of
    # padding is half a source pixel at 32 px, a shift a digit survives.
    return DataSet("digits", _split(x[tr], y[tr], base), _split(x[va], y[va], base),
                   _split(x[te], y[te], base), 10, (0.5,) * 3, (0.5,) * 3, False,
                   max(1, base // 16))


def _cifar10(path: Path, base: int, seed: int, val_fraction: float) -> DataSet:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not path.is_dir() or not all((path / n).is_file() for n in names):
        raise ValueError(f"data: {str(path)!r} is not {CIFAR_LAYOUT}")

    def read(n: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            with open(path / n, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(d[b"labels"], dtype=np.int64)
            if len(x) != len(y):
                raise ValueError("length mismatch")
            return x.transpose(0, 2, 3, 1), y
        except Exception as e:
            raise ValueError(f"data: {str(path / n)!r} is corrupt or not a CIFAR-10 batch "
                             f"({type(e).__name__}); expected {CIFAR_LAYOUT}") from None

    parts = [read(n) for n in names[:5]]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    train, val = _holdout(x, y, val_fraction, seed, base)
    tx, ty = read("test_batch")
    return DataSet("cifar10", train, val, _split(tx, ty, base), 10, CIFAR_MEAN, CIFAR_STD,
                   True, max(1, base // 8))


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one .npz file, checked against NPZ_LAYOUT."""
    if not path.is_file():
        raise ValueError(f"data: {str(path)!r} does not exist; expected {NPZ_LAYOUT}")
    try:
        with np.load(path) as d:
            x, y = d["x"], d["y"]
    except Exception as e:
        raise ValueError(f"data: {str(path)!r} is unreadable ({type(e).__name__}); "
                         f"expected {NPZ_LAYOUT}") from None
    if (x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or y.ndim != 1
            or len(x) != len(y) or not len(y) or not np.issubdtype(y.dtype, np.integer)
            or y.min() < 0):
        raise ValueError(f"data: {str(path)!r} has x {x.shape} {x.dtype}, y {y.shape} "
                         f"{y.dtype}; expected {NPZ_LAYOUT}")
    return x, y.astype(np.int64)


def _npz(path: Path, base: int, seed: int, val_fraction: float) -> DataSet:
    if path.is_dir():  # the layout of ../shared/data: a train file and a val file
        found = {k: sorted(path.glob(f"*{k}*.npz")) for k in ("train", "val")}
        if any(len(v) != 1 for v in found.values()):
            raise ValueError(f"data: {str(path)!r} holds {len(found['train'])} *train*.npz and "
                             f"{len(found['val'])} *val*.npz files; expected {NPZ_LAYOUT}")
        (tx, ty), (vx, vy) = _read_npz(found["train"][0]), _read_npz(found["val"][0])
        train, val, name = _split(tx, ty, base), _split(vx, vy, base), path.name
        n_cls = int(max(ty.max(), vy.max())) + 1
    else:
        x, y = _read_npz(path)
        train, val = _holdout(x, y, val_fraction, seed, base)
        name, n_cls = path.stem, int(y.max()) + 1
    return DataSet(name, train, val, None, n_cls, CIFAR_MEAN, CIFAR_STD, True, max(1, base // 8))


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
                    if im.size != (base, base):  # PIL's bicubic antialiases when shrinking
                        im = im.resize((base, base), Image.BICUBIC)
                    xs.append(np.asarray(im, dtype=np.uint8))
            except Exception as e:
                raise ValueError(f"data: {str(f)!r} is not a readable image "
                                 f"({type(e).__name__}); expected {FOLDER_LAYOUT}") from None
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
    splits = ["val"] + (["test"] if (path / "test").is_dir() else [])
    for s in splits:
        missing = [c for c in classes if not (path / s / c).is_dir()]
        if missing:
            raise ValueError(f"data: {str(path / s)!r} lacks class folders {missing}; "
                             f"expected {FOLDER_LAYOUT}")
    read = {s: _split(*_read_images(path / s, classes, base), base) for s in ["train", *splits]}
    return DataSet(path.name, read["train"], read["val"], read.get("test"), len(classes),
                   (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True, max(1, base // 8))


def load_data(spec: str, base_resolution: int, seed: int = 0,
              val_fraction: float = 0.1) -> DataSet:
    """Load a data set spec (see DATA_SPECS) with images stored at `base_resolution`."""
    kind, _, path = str(spec).partition(":")
    if kind == "digits" and not path:
        return _digits(base_resolution, seed)
    if kind in ("cifar10", "folder", "npz") and path:
        p = Path(path).expanduser()
        if not p.exists():
            layout = {"cifar10": CIFAR_LAYOUT, "folder": FOLDER_LAYOUT, "npz": NPZ_LAYOUT}[kind]
            raise ValueError(f"data: {str(p)!r} does not exist; expected {layout}")
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


def _batch(split: Split, data: DataSet, idx: torch.Tensor, seed: int | None,
           part: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One normalised batch; augmented with its own seed when `seed` is given.

    The whole (global) batch is augmented before this rank's `part` is taken, so
    a sample gets the same crop and flip whatever the number of processes.
    """
    x = split.x[idx]
    if seed is not None:
        x = augment(x, data, torch.Generator().manual_seed(seed))
    rank, world = part
    keep = torch.arange(len(idx)).tensor_split(world)[rank]
    return normalize(x[keep], data), split.y[idx[keep]]


class _Batches(torch.utils.data.Dataset):
    """Batch i of one epoch, so DataLoader workers can build batches in parallel."""

    def __init__(self, split: Split, data: DataSet, chunks: list[torch.Tensor],
                 seeds: list[int | None], part: tuple[int, int]):
        self.split, self.data, self.chunks, self.seeds, self.part = split, data, chunks, seeds, part

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int):
        return _batch(self.split, self.data, self.chunks[i], self.seeds[i], self.part)


def batches(split: Split, data: DataSet, batch_size: int, *, seed: int = 0, train: bool = False,
            drop_last: bool = False, rank: int = 0, world: int = 1,
            workers: int = 0) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised float batches at base resolution; shuffled and augmented when `train`.

    Everything random follows from `seed` (one value per epoch), so the batches do not
    depend on `workers` (DataLoader processes) or on how many processes share them:
    with `world` > 1 each batch of `batch_size` is split and rank `rank` gets its part.
    """
    n = len(split)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g) if train else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    chunks = [order[i:i + batch_size] for i in range(0, stop, batch_size)]
    seeds = (torch.randint(2**62, (len(chunks),), generator=g).tolist() if train
             else [None] * len(chunks))
    ds = _Batches(split, data, chunks, seeds, (rank, world))
    if workers > 0:
        return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    return (ds[i] for i in range(len(ds)))


def calib_batches(data: DataSet, num_images: int, batch_size: int,
                  seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed, seeded subset of `num_images` training images (no augmentation), for BN
    calibration: the same images for every child, and never val or test images."""
    n = len(data.train)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:num_images]
    sub = Split(data.train.x[idx], data.train.y[idx])
    return iter(batches(sub, data, batch_size))
