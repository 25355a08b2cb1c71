"""Streaming image-folder pipeline: printed figures, not a timed test.

1. Loader throughput: images/s of `supernet.data.datasets.batches` on a generated folder of
   256-px JPEGs, random-resized-cropped to 224 (attentive-mbv3's base resolution),
   with 0, 1 and 2 worker processes, and per worker.
2. Beside it, the images/s an attentive-mbv3 sandwich step consumes on this CPU
   (batch 16, paired resolutions, from a 224-px batch): the loader must outrun it.
3. Peak memory of one training epoch (`nas-train --space SPACE --data folder:DIR
   --epochs 1 --workers 2`) on generated folders of 2,000 and 20,000 images: the
   proportional set size summed over the trainer and its worker processes, sampled every
   0.2 s. Target: the 20k figure within 10% of the 2k one (memory does not grow with the
   images). The default SPACE is a one-stage probe net at 32 px, so that the epoch costs
   decoding, not training (a tiny-space epoch of 2,000 images took 473 s on the shared
   2-core machine); `--rss-space tiny` runs the real thing.

Folders are generated under --tmp (default a temporary folder) and deleted afterwards;
never commit them.

    python benchmarks/data_pipeline.py [--threads 2] [--sizes 2000,20000] [--skip-rss]
                                       [--skip-rate] [--rss-space tiny]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from supernet import ElasticSupernet, load_space
from supernet.data.datasets import batches, load_data
from supernet.training.config import TrainConfig, resolved
from supernet.training.steps import sandwich_children, sandwich_step


def make_folder(root: Path, n: int, size: int = 256, classes: int = 10, seed: int = 0) -> Path:
    """`n` smooth random photos (JPEG, quality 90) in train/ (90%) and val/ (10%)."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        # low-frequency colour noise, upsampled: compresses and decodes like a photo
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        split = "val" if (i // classes) % 10 == 0 else "train"
        im.save(root / split / f"c{i % classes}" / f"{i:06}.jpg", quality=90)
    return root


def loader_rate(root: Path, workers: int, images: int, batch: int = 32) -> float:
    """Images/s of the training loader (RRC to 224 + flip, uint8 -> normalised float)."""
    data = load_data(f"folder:{root}", 224)
    it = iter(batches(data.train, data, batch, seed=1, train=True, drop_last=True,
                      workers=workers))
    next(it)  # worker start-up is paid once per epoch, not per image
    t, n = time.perf_counter(), 0
    for x, _ in it:
        n += len(x)
        if n >= images:
            break
    return n / (time.perf_counter() - t)


def step_rate(steps: int) -> float:
    """Images/s an attentive-mbv3 sandwich step (batch 16) consumes on this CPU."""
    space = load_space("attentive-mbv3")
    cfg = resolved(TrainConfig(space="attentive-mbv3"))
    torch.manual_seed(0)
    net = ElasticSupernet(space).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(16, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (16,))
    times = []
    for s in range(steps + 1):
        t = time.perf_counter()
        sandwich_step(net, opt, x, y, sandwich_children(space, 0, s, 2), cfg, 0.2)
        times.append(time.perf_counter() - t)
    return 16 / float(np.median(times[1:]))  # the first step pays one-off allocations


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            for k in kids:
                out += _tree(int(k))
    except OSError:
        pass
    return out


def _pss_mb(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


PROBE = """
name: probe
resolutions: [32]
stem: {widths: [8], stride: 2}
stages:
  - {widths: [8], depths: [1], kernels: [3], expands: [1], stride: 2}
head: {widths: [16]}
num_classes: 10
"""


def epoch_peak_mb(root: Path, out: Path, threads: int, space: str) -> tuple[float, float]:
    """(peak summed PSS in MB, seconds) of one `nas-train` epoch over the folder."""
    cmd = [sys.executable, "-m", "supernet.training.cli", "--space", space,
           "--data", f"folder:{root}", "--epochs", "1", "--workers", "2", "--threads", str(threads),
           "--calib-images", "64",
           "--out", str(out), "--quiet"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _pss_mb(proc.pid))
        time.sleep(0.2)
    err = proc.stderr.read()
    if proc.returncode:
        raise SystemExit(f"nas-train failed:\n{err[-2000:]}")
    return peak, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=512, help="images timed per loader setting")
    ap.add_argument("--steps", type=int, default=2, help="timed attentive-mbv3 steps")
    ap.add_argument("--sizes", default="2000,20000", help="folder sizes for the RSS figure")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-rate", action="store_true")
    ap.add_argument("--rss-space", default=None, help="space of the RSS epochs (default: a "
                    "one-stage probe net, so decoding dominates)")
    ap.add_argument("--tmp", default=None, help="where to generate the folders")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(dir=args.tmp, prefix="nas-data-bench-"))
    try:
        if not args.skip_rate:
            rates(args, tmp)
        if not args.skip_rss:
            rss(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rates(args: argparse.Namespace, tmp: Path) -> None:
    """Loader images/s per worker count beside the attentive-mbv3 step's consumption."""
    root = make_folder(tmp / "rate", args.images + 64)
    print(f"loader: {args.images} 256-px JPEGs -> random-resized crop 224 + flip, batch 32 "
          f"(torch threads {args.threads}, {os.cpu_count()} cores)")
    got = {w: loader_rate(root, w, args.images) for w in (0, 1, 2)}
    for w, r in got.items():
        per = f"  ({r / w:6.1f} per worker)" if w else "  (in the main process)"
        print(f"  workers {w}: {r:7.1f} images/s{per}")
    need = step_rate(args.steps)
    best = max(got.values())
    print(f"attentive-mbv3 sandwich step (batch 16, 4 children, paired resolutions): "
          f"{need:.2f} images/s consumed")
    print(f"  loader / step ratio: {best / need:.0f}x (>= 1: the CPU step, not decoding, "
          f"limits training)")


def rss(args: argparse.Namespace, tmp: Path) -> None:
    """Peak memory of one epoch on a small and a large generated folder."""
    space = args.rss_space
    if space is None:
        (tmp / "probe.yaml").write_text(PROBE)
        space = str(tmp / "probe.yaml")
    sizes = [int(s) for s in args.sizes.split(",")]
    peaks = {}
    for n in sizes:
        folder = make_folder(tmp / f"f{n}", n, size=256, seed=n)
        peaks[n], secs = epoch_peak_mb(folder, tmp / f"run{n}", args.threads, space)
        print(f"one {Path(space).stem} epoch on {n:6d} images: peak PSS {peaks[n]:7.1f} MB "
              f"(trainer + 2 workers), {secs:.0f} s")
        shutil.rmtree(folder)
    lo, hi = peaks[sizes[0]], peaks[sizes[-1]]
    print(f"  peak memory {sizes[-1]} / {sizes[0]} images: {hi / lo:.3f} "
          f"(target <= 1.10)")


if __name__ == "__main__":
    main()
