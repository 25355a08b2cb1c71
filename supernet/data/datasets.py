"""Data sets and their batches: small ones held in memory, image folders streamed.

Images are prepared at the space's base resolution (224 on ImageNet) and resized
bicubically (antialiased) to each child's resolution on the training device, in
training and evaluation alike (BigNAS supplement C). `digits` (embedded), `npz:` and
`cifar10:` are held in memory as uint8; `folder:` is decoded from disk by DataLoader
worker processes one batch at a time, so memory does not grow with the image count.
Specs: `digits`, `cifar10:PATH`, `folder:PATH`, `npz:PATH`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .folder import (
    CENTRE_FRACTION,
    FOLDER_LAYOUT,
    SMALL_BASE,
    FolderSplit,
    index_folder,
    load_images,
)

DATA_SPECS = "digits | cifar10:PATH | folder:PATH | npz:PATH"
CIFAR_LAYOUT = "a CIFAR-10 python folder with data_batch_1..data_batch_5 and test_batch"
NPZ_LAYOUT = ("an .npz with x (N, H, W, 3) uint8 and y (N,) integer labels, or a folder "
              "with one *train*.npz and one *val*.npz of that form")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass
class Split:
    """Images (N, 3, H, W) uint8 and labels (N,) int64, in memory."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor | np.ndarray) -> Split:
        """The images at `idx`, in that order."""
        i = torch.as_tensor(np.asarray(idx), dtype=torch.int64)
        return Split(self.x[i], self.y[i])


@dataclass
class DataSet:
    """Train / val / test splits with their normalisation and augmentation policy."""

    name: str
    train: Split | FolderSplit
    val: Split | FolderSplit
    test: Split | FolderSplit | None
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip: bool  # horizontal flips suit natural images, not digits
    pad: int  # random-crop padding in base-resolution pixels ("pad" crops)
    base: int = 0  # the resolution images are prepared at
    crop: str = "pad"  # training crop: "pad" (padded shift) or "rrc" (random-resized)
    # image folders: the eval crop's share of the shorter side, and the resampling of
    # crop to base resolution (a converted supernet's authors' values, see
    # `with_preprocessing`)
    crop_fraction: float = CENTRE_FRACTION
    resample: str = "bicubic"

    @property
    def streamed(self) -> bool:
        """Whether images are decoded from disk per batch (not held in memory)."""
        return isinstance(self.train, FolderSplit)


def stratified_split(y: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
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
    tr, va = stratified_split(y, [1 - val_fraction, val_fraction], seed)
    return _split(x[tr], y[tr], base), _split(x[va], y[va], base)


def _digits(base: int, seed: int) -> DataSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0..16 grey levels -> 0..255, three identical channels
    img = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    x = np.repeat(img[..., None], 3, axis=-1)
    y = d.target.astype(np.int64)
    tr, va, te = stratified_split(y, [0.7, 0.15, 0.15], seed)
    # No flips (a mirrored 2 is no 2), but a small random crop: base/16 pixels of
    # padding is half a source pixel at 32 px, a shift a digit survives.
    return DataSet("digits", _split(x[tr], y[tr], base), _split(x[va], y[va], base),
                   _split(x[te], y[te], base), 10, (0.5,) * 3, (0.5,) * 3, False,
                   max(1, base // 16), base)


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
                   True, max(1, base // 8), base)


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
    return DataSet(name, train, val, None, n_cls, CIFAR_MEAN, CIFAR_STD, True, max(1, base // 8),
                   base)


def _folder(path: Path, base: int) -> DataSet:
    _, splits = index_folder(path)
    small = base < SMALL_BASE  # CIFAR-sized images: padded crops, not random-resized ones
    return DataSet(path.name, splits["train"], splits["val"], splits.get("test"),
                   len(splits["train"].y.unique()), (0.485, 0.456, 0.406),
                   (0.229, 0.224, 0.225), True, max(1, base // 8) if small else 0,
                   base, "pad" if small else "rrc")


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
    """uint8 (N, 3, H, W) -> normalised float, on x's device."""
    mean = torch.tensor(data.mean, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(data.std, device=x.device).view(1, 3, 1, 1) * 255
    return (x.float() - mean) / std


def _pad_crop_flip(x: torch.Tensor, data: DataSet, dy: torch.Tensor | None,
                   dx: torch.Tensor | None, flip: torch.Tensor | None) -> torch.Tensor:
    n, _, h, w = x.shape
    if dy is not None and dx is not None:  # drawn together
        p = data.pad
        xp = F.pad(x, (p, p, p, p))
        rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
        cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
        idx = torch.arange(n).view(n, 1, 1)
        x = xp.permute(0, 2, 3, 1)[idx, rows.view(n, h, 1), cols.view(n, 1, w)]
        x = x.permute(0, 3, 1, 2)
    if flip is not None:
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    return x.contiguous()


def _pad_params(n: int, data: DataSet, g: torch.Generator):
    """Crop offsets and flips of n images, drawn in a fixed order from `g`."""
    dy = dx = flip = None
    if data.pad:
        dy = torch.randint(0, 2 * data.pad + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * data.pad + 1, (n,), generator=g)
    if data.flip:
        flip = torch.rand(n, generator=g) < 0.5
    return dy, dx, flip


def _batch(split: Split | FolderSplit, data: DataSet, idx: torch.Tensor, seed: int | None,
           part: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One uint8 batch (this rank's `part` of the global batch `idx`); augmented with its
    own seed when `seed` is given.

    The random parameters are drawn for the whole global batch and this rank takes its
    rows, so a sample gets the same crop and flip whatever the number of processes, and
    a rank decodes only its own images.
    """
    rank, world = part
    keep = torch.arange(len(idx)).tensor_split(world)[rank]
    g = None if seed is None else torch.Generator().manual_seed(seed)
    mine = idx[keep].tolist()
    if data.crop == "rrc":  # streamed photos: random-resized crop, then flip
        assert isinstance(split, FolderSplit)  # "rrc": folders of photos only
        u = None if g is None else torch.rand(len(idx), 4, generator=g)[keep]
        x, y = load_images(split, mine, data.base, "centre" if g is None else "rrc", u,
                           data.crop_fraction, data.resample)
        if g is not None and data.flip:
            flip = (torch.rand(len(idx), generator=g) < 0.5)[keep][: len(x)]
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).contiguous()
        return x, y
    if isinstance(split, FolderSplit):  # small images on disk: whole image, then as memory
        x, y = load_images(split, mine, data.base, "full", None)
    else:
        x, y = split.x[idx[keep]], split.y[idx[keep]]
    if g is not None:
        params = [None if p is None else p[keep][: len(x)] for p in _pad_params(len(idx), data, g)]
        x = _pad_crop_flip(x, data, *params)
    return x, y


class _Batches(torch.utils.data.Dataset):
    """Batch i of one epoch, so DataLoader workers can build batches in parallel."""

    def __init__(self, split: Split | FolderSplit, data: DataSet, chunks: list[torch.Tensor],
                 seeds: list[int | None], part: tuple[int, int]):
        self.split, self.data, self.chunks, self.seeds, self.part = split, data, chunks, seeds, part

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int):
        return _batch(self.split, self.data, self.chunks[i], self.seeds[i], self.part)


def _on_device(loader: Iterable, data: DataSet, device: torch.device) -> Iterator:
    for x, y in loader:  # uint8 travels (4x fewer bytes); normalising happens on arrival
        x = x.to(device, non_blocking=True)
        yield normalize(x, data), y.to(device, non_blocking=True)


def batches(split: Split | FolderSplit, data: DataSet, batch_size: int, *, seed: int = 0,
            train: bool = False, drop_last: bool = False, rank: int = 0, world: int = 1,
            workers: int = 0, device: str | torch.device = "cpu",
            ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised float batches at base resolution on `device`; shuffled and augmented
    when `train`.

    Everything random follows from `seed` (one value per epoch), so the batches do not
    depend on `workers` (DataLoader processes) or on how many processes share them:
    with `world` > 1 each batch of `batch_size` is split and rank `rank` gets its part,
    so the ranks read disjoint shards of one global order whose union is the epoch.
    """
    n = len(split)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g) if train else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    chunks = [order[i:i + batch_size] for i in range(0, stop, batch_size)]
    seeds = (torch.randint(2**62, (len(chunks),), generator=g).tolist() if train
             else [None] * len(chunks))
    ds = _Batches(split, data, chunks, seeds, (rank, world))
    device = torch.device(device)
    if workers > 0:
        loader: Iterable = torch.utils.data.DataLoader(
            ds, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda")
    else:
        loader = (ds[i] for i in range(len(ds)))
    return _on_device(loader, data, device)


def stratified_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of exactly `n` items drawn class by class in proportion (seeded), sorted.

    Each class is shuffled and its i-th item gets the key (i + 1/2) / class size; the n
    smallest keys win (ties broken at random), so every class gives its share, and with
    fewer items than classes n random classes give one each. Rounding each class's share
    on its own gave nothing at all for n below half the class count (1000 ImageNet
    classes, 500 val images)."""
    if n >= len(y):
        return torch.arange(len(y))
    rng = np.random.default_rng(seed)
    labels = y.numpy()
    idx, keys = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        idx.append(members)
        keys.append((np.arange(len(members)) + 0.5) / len(members))
    idx_all, keys_all = np.concatenate(idx), np.concatenate(keys)
    order = np.lexsort((rng.random(len(idx_all)), keys_all))
    return torch.as_tensor(np.sort(idx_all[order[:n]]))


def calib_batches(data: DataSet, num_images: int, batch_size: int, seed: int = 0,
                  device: str | torch.device = "cpu", workers: int = 0,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed, seeded subset of `num_images` training images (no augmentation, the eval
    crop), for BN calibration: the same images for every child, never val or test."""
    return iter(batches(data.train.subset(calib_indices(data, num_images, seed)), data,
                        batch_size, device=device, workers=workers))


def calib_indices(data: DataSet, num_images: int, seed: int = 0) -> torch.Tensor:
    """The training-image indices BN calibration uses: a seeded random subset, the same
    for every child (and the first n of a larger subset, whatever n)."""
    perm = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))
    return perm[:num_images]


def images(split: Split | FolderSplit, data: DataSet) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a (small) split as uint8 at base resolution with the eval crop, and
    their labels: in-memory sets as they are, folders decoded once."""
    if isinstance(split, Split):
        return split.x, split.y
    return _batch(split, data, torch.arange(len(split)), None, (0, 1))


RESAMPLING = ("bicubic", "bilinear")


def with_preprocessing(data: DataSet, pre: dict[str, Any]) -> DataSet:
    """`data` evaluated as a converted supernet's authors evaluate: their mean and std,
    eval crop share and resampling (keys mean, std, crop_ratio, resize_interpolation);
    ValueError for a value outside what the pipeline can do."""
    resample = pre.get("resize_interpolation") or data.resample
    if resample not in RESAMPLING:
        raise ValueError(f"preprocessing: resize_interpolation {resample!r} is not "
                         f"supported; expected one of {', '.join(RESAMPLING)}")
    crop = float(pre.get("crop_ratio") or data.crop_fraction)
    if not 0 < crop <= 1:
        raise ValueError(f"preprocessing: crop_ratio {crop} is outside (0, 1]")
    mean = tuple(float(v) for v in pre.get("mean", data.mean))
    std = tuple(float(v) for v in pre.get("std", data.std))
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("preprocessing: mean and std need three values (RGB)")
    return replace(data, mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]),
                   crop_fraction=crop, resample=resample)
