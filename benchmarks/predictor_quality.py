"""Accuracy-predictor quality against training-set size: held-out Kendall tau per predictor.

Children of a trained supernet are evaluated once (BN recalibrated on a fixed set of
training images, top-1 on the validation split) and cached; each predictor is then fit on
50..400 of them and ranks a fixed set of other children it never saw.

    python benchmarks/predictor_quality.py --supernet runs/digits/supernet.pt
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from predictors import PREDICTORS, ArchEncoder, make_predictor, rank_metrics
from predictors.io import write_csv_atomic
from supernet import load_checkpoint, macs
from supernet.data.datasets import batches, calib_batches, load_data
from supernet.training.evaluation import calibrate_bn, evaluate


def digest(path: str | Path) -> str:
    """First 10 hex digits of the file's SHA-256: which weights the cached figures belong to."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10]


def distinct_children(space, n: int, seed: int) -> list:
    """`n` distinct seeded random children, in draw order."""
    rng, out = np.random.default_rng(seed), {}
    while len(out) < n:
        out[space.sample(rng)] = None
    return list(out)


def evaluate_children(net, data, tag: str, archs: list, cache: Path,
                      calib_images: int) -> pd.DataFrame:
    """top1/loss of each child on the val split, read from `cache` where present; new rows
    are written to `cache` (atomically) every 25 children, so a killed run resumes."""
    done = pd.read_csv(cache) if cache.is_file() else pd.DataFrame()
    if len(done) and (set(done["supernet"]) != {tag}
                      or set(done["calib_images"]) != {calib_images}):
        raise SystemExit(f"cache {cache} holds figures of another supernet or calibration; "
                         "pass another --cache")
    rows = done.to_dict("records")
    seen = {r["arch"] for r in rows}
    todo = [a for a in archs if str(a) not in seen]
    start = time.perf_counter()
    for i, a in enumerate(todo, 1):
        calibrate_bn(net, a, calib_batches(data, calib_images, 256), calib_images)
        res = evaluate(net, a, batches(data.val, data, 256))
        rows.append({"arch": str(a), "top1": res.top1, "loss": res.loss,
                     "macs": macs(net.space, a), "supernet": tag, "calib_images": calib_images})
        if i % 25 == 0 or i == len(todo):
            write_csv_atomic(pd.DataFrame(rows), cache)
            print(f"  evaluated {i}/{len(todo)} children "
                  f"({(time.perf_counter() - start) / i:.2f} s each)", flush=True)
    by_arch = pd.DataFrame(rows).set_index("arch")
    return by_arch.loc[[str(a) for a in archs]].reset_index()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supernet", required=True, help="checkpoint from nas-train")
    ap.add_argument("--cache", help="CSV of evaluated children (default: beside the "
                    "checkpoint, predictor_children.csv)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--test", type=int, default=200, help="held-out children (default 200)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="random training subsets (and predictor seeds) per size")
    ap.add_argument("--features", choices=["onehot", "int"], default="onehot")
    ap.add_argument("--targets", nargs="+", choices=["top1", "loss"], default=["top1", "loss"],
                    help="what the predictors learn (default both; top-1 of a small val "
                    "split has many ties)")
    ap.add_argument("--predictors", nargs="+", default=sorted(PREDICTORS),
                    choices=sorted(PREDICTORS))
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    ckpt = Path(args.supernet)
    cache = Path(args.cache) if args.cache else ckpt.with_name("predictor_children.csv")
    net, extra = load_checkpoint(ckpt)
    space, cfg = net.space, extra.get("config", {})
    # the training run's data and split seed, so the val split is the one it held out
    data = load_data(cfg.get("data", "digits"), space.base_resolution, int(cfg.get("seed", 0)))
    torch.set_num_threads(args.threads)
    pool_n = max(args.sizes)
    archs = distinct_children(space, pool_n + args.test, args.seed)
    table = evaluate_children(net, data, digest(ckpt), archs, cache, args.calib_images)
    X = ArchEncoder(space, one_hot=args.features == "onehot").fit_transform(archs)
    pool, test = np.arange(pool_n), np.arange(pool_n, len(archs))

    print(f"supernet {ckpt} ({digest(ckpt)}), space {space.name}; children evaluated with "
          f"BN recalibration on {args.calib_images} training images, figures on the "
          f"{len(data.val)} val images; features {args.features}")
    print(f"held-out Kendall tau on {len(test)} children never fit on "
          f"(mean ± sd over {args.repeats} training subsets of the first {pool_n})")
    for target in args.targets:
        y = table[target].to_numpy()
        # the no-fit baseline "bigger is better": MACs for top-1, minus MACs for loss
        proxy = table["macs"].to_numpy() * (1 if target == "top1" else -1)
        print(f"\ntarget {target}: {y.min():.4f}..{y.max():.4f}, "
              f"{len(np.unique(y))} distinct values over {len(y)} children")
        print(f"{'predictor':<14}" + "".join(f"{f'n={n}':>16}" for n in args.sizes)
              + f"{'fit s':>8}")
        proxy_tau = rank_metrics(y[test], proxy[test]).kendall_tau
        print(f"{'macs (no fit)':<14}" + "".join(f"{proxy_tau:>16.3f}" for _ in args.sizes))
        notes = False
        for name in args.predictors:
            cells, fit_s = [], []
            for n in args.sizes:
                taus, secs = held_out_taus(name, X, y, pool, test, n, args.repeats, args.seed)
                cells.append(tau_cell(taus))
                fit_s += secs
            print(f"{name:<14}" + "".join(f"{c:>16}" for c in cells)
                  + f"{np.mean(fit_s):>8.1f}", flush=True)
            notes |= any(c.endswith("*") for c in cells)
        if notes:
            print("* some fits predicted one value for every test child: tau is undefined "
                  "there and counted as 0 (chance)")


def held_out_taus(name: str, X: np.ndarray, y: np.ndarray, pool: np.ndarray, test: np.ndarray,
                  n: int, repeats: int, seed: int) -> tuple[list[float], list[float]]:
    """Kendall tau on `test` of predictor `name` fit on `repeats` random `n`-subsets of
    `pool` (the whole pool when n covers it), and the fit times in seconds."""
    taus, secs = [], []
    for r in range(repeats):
        rng = np.random.default_rng([seed, n, r])
        train = pool if n >= len(pool) else rng.choice(pool, n, replace=False)
        est = make_predictor(name, random_state=r)
        t = time.perf_counter()
        est.fit(X[train], y[train])
        secs.append(time.perf_counter() - t)
        taus.append(rank_metrics(y[test], est.predict(X[test])).kendall_tau)
    return taus, secs


def tau_cell(taus: list[float]) -> str:
    """'mean ± sd', with NaN (a constant prediction ranks nothing) counted as 0 and starred."""
    flat = bool(np.isnan(taus).any())
    taus = np.nan_to_num(taus, nan=0.0)
    return f"{np.mean(taus):.3f} ± {np.std(taus):.3f}" + "*" * flat


if __name__ == "__main__":
    main()
