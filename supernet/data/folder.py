"""Image folders streamed from disk: an index of (file, label) in memory, the pixels decoded
by Pillow in DataLoader worker processes, one batch at a time.

Transforms follow the BigNAS supplement (section C) and the ImageNet practice it
inherits: training takes a random-resized crop (area 8-100%, aspect 3/4-4/3) and a flip
at the base resolution; evaluation and BN calibration take the centre crop of 87.5% of
the shorter side (256 -> 224), resized to the base resolution. Small images (a base
below 128 px, e.g. CIFAR-10 as PNG files) are resized whole instead and take the
in-memory sets' padded random crop, since an 8% crop of a 32 px image is noise.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FOLDER_LAYOUT = "train/<class>/*.png|jpg and val/<class>/*.png|jpg (test/<class>/ optional)"
RRC_SCALE = (0.08, 1.0)  # Inception-style random-resized crop: fraction of the image area
RRC_RATIO = (3 / 4, 4 / 3)  # ...and aspect-ratio range, sampled log-uniformly
CENTRE_FRACTION = 0.875  # eval: resize the shorter side to base / 0.875, centre-crop base
SMALL_BASE = 128  # below this base resolution a folder is treated like CIFAR (no RRC)


@dataclass
class FolderSplit:
    """One split of an image folder: file names relative to `root` and labels.

    Names are one numpy byte array rather than a list of str, so worker processes forked
    from the trainer share the pages instead of copying them as refcounts change.
    """

    root: str
    files: np.ndarray  # (N,) bytes, relative paths
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor | np.ndarray) -> FolderSplit:
        """The images at `idx`, in that order."""
        i = np.asarray(idx, dtype=np.int64)
        return FolderSplit(self.root, self.files[i], self.y[torch.as_tensor(i)])

    def path(self, i: int) -> str:
        """The file of image `i`."""
        return os.path.join(self.root, self.files[i].decode())


def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _index(folder: Path, classes: list[str]) -> FolderSplit:
    files, ys = [], []
    for ci, c in enumerate(classes):
        names = sorted(e.name for e in os.scandir(folder / c)
                       if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise ValueError(f"data: class folder {str(folder / c)!r} holds no images "
                             f"({', '.join(IMAGE_SUFFIXES)}); expected {FOLDER_LAYOUT}")
        files += [f"{c}/{n}".encode() for n in names]
        ys += [ci] * len(names)
    return FolderSplit(str(folder), np.array(files, dtype=np.bytes_),
                       torch.as_tensor(ys, dtype=torch.int64))


def index_folder(path: Path) -> tuple[list[str], dict[str, FolderSplit]]:
    """Class names and the indexed splits (train, val, test if present) of an image
    folder; ValueError for a missing split, an empty class or mismatched class sets."""
    if not (path / "train").is_dir() or not (path / "val").is_dir():
        raise ValueError(f"data: {str(path)!r} is not an image folder; expected {FOLDER_LAYOUT}")
    classes = _class_dirs(path / "train")
    if not classes:
        raise ValueError(f"data: {str(path / 'train')!r} has no class folders; "
                         f"expected {FOLDER_LAYOUT}")
    names = ["train", "val"] + (["test"] if (path / "test").is_dir() else [])
    for s in names[1:]:
        other = _class_dirs(path / s)
        if other != classes:
            missing = sorted(set(classes) - set(other))
            extra = sorted(set(other) - set(classes))
            raise ValueError(f"data: {str(path / s)!r} has other classes than train "
                             f"(lacks {missing}, adds {extra}); expected {FOLDER_LAYOUT}")
    return classes, {s: _index(path / s, classes) for s in names}


def rrc_box(w: int, h: int, u: torch.Tensor) -> tuple[int, int, int, int]:
    """(left, top, width, height) of a random-resized crop of a w x h image from four
    uniforms: one draw, clamped to the image (torchvision retries ten times instead;
    one draw keeps the crop a pure function of the seed)."""
    area = w * h * (RRC_SCALE[0] + float(u[0]) * (RRC_SCALE[1] - RRC_SCALE[0]))
    lo, hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    ratio = math.exp(lo + float(u[1]) * (hi - lo))
    cw = min(w, max(1, round(math.sqrt(area * ratio))))
    ch = min(h, max(1, round(math.sqrt(area / ratio))))
    left = min(w - cw, int(float(u[2]) * (w - cw + 1)))
    top = min(h - ch, int(float(u[3]) * (h - ch + 1)))
    return left, top, cw, ch


def centre_box(w: int, h: int, fraction: float = CENTRE_FRACTION) -> tuple[int, int, int, int]:
    """The centre square of `fraction` of the shorter side."""
    side = max(1, round(min(w, h) * fraction))
    return (w - side) // 2, (h - side) // 2, side, side


def decode(path: str, base: int, mode: str, u: torch.Tensor | None = None,
           crop_fraction: float = CENTRE_FRACTION, resample: str = "bicubic") -> np.ndarray:
    """One image as (base, base, 3) uint8. mode: "rrc" (random-resized crop from the
    uniforms `u`), "centre" (eval crop of `crop_fraction` of the shorter side) or "full"
    (the whole image, squeezed to a square). Crop and resize are one `resample`
    ("bicubic" or "bilinear", antialiased by Pillow) resampling of the crop box."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        box: tuple[float, float, float, float]
        if mode == "rrc":
            if u is None:
                raise ValueError("decode: a random-resized crop needs its uniforms `u`")
            box = rrc_box(w, h, u)
        elif mode == "centre":
            box = centre_box(w, h, crop_fraction)
        else:
            box = (0, 0, w, h)
        # JPEG: let the decoder drop DCT scales the crop does not need (up to 8x faster
        # for large photos), keeping at least `base` pixels across the crop
        f = min(box[2], box[3]) / base
        if im.format == "JPEG" and f >= 2:
            im.draft("RGB", (math.ceil(w / f), math.ceil(h / f)))
            sx, sy = im.size[0] / w, im.size[1] / h
            box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        rgb = im.convert("RGB")
        x0, y0, bw, bh = box
        # Image.BICUBIC/BILINEAR are set at import time, so Pillow's type hints lack them
        # (Image.Resampling needs Pillow 9.1; we allow 9.0)
        filt = (Image.BILINEAR if resample == "bilinear"  # type: ignore[attr-defined]
                else Image.BICUBIC)  # type: ignore[attr-defined]
        out = rgb.resize((base, base), filt, box=(x0, y0, x0 + bw, y0 + bh))
        return np.asarray(out, dtype=np.uint8)


def load_images(split: FolderSplit, idx: list[int], base: int, mode: str,
                params: torch.Tensor | None, crop_fraction: float = CENTRE_FRACTION,
                resample: str = "bicubic") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode split[idx] as (n, 3, base, base) uint8 and their labels. An unreadable
    image is skipped with a one-line warning naming it (the batch is one shorter: the
    trainer counts and logs the shortfall) rather than stopping a day-long run."""
    xs, keep = [], []
    for j, i in enumerate(idx):
        try:
            xs.append(decode(split.path(i), base, mode, None if params is None else params[j],
                             crop_fraction, resample))
            keep.append(i)
        except Exception as e:  # PIL raises many types for a damaged file
            print(f"data: skipped unreadable image {split.path(i)!r} ({type(e).__name__})",
                  file=sys.stderr)
    if not xs:
        raise ValueError(f"data: every image of a batch is unreadable, e.g. "
                         f"{split.path(idx[0])!r}; expected {FOLDER_LAYOUT}")
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    return x, split.y[torch.as_tensor(keep, dtype=torch.int64)]
