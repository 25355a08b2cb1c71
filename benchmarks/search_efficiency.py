"""Search efficiency on a real task, printed (not a timed test): the tiny supernet trained on
a CIFAR-10 subset, children scored with BN calibration as the search scores them, and
random, nsga2, assisted and coarse2fine compared over many seeds on that evaluator.

1. The supernet: trained once (`nas-train`'s code, default 8 epochs) into --supernet DIR
   and reused from there afterwards (default runs/bench/cifar-tiny).
2. The noise floor: one child's top-1 over 5 calibration subsets (BN statistics from 64
   other training images each time), the spread a search cannot see through.
3. Real evaluations: a fixed pool of uniform children (default 1,000 plus the smallest and
   largest) scored by the supernet on all val images, cached in DIR/evaluations.csv (an
   interrupted run resumes from it).
4. The evaluator of the comparison: a surrogate fit on the pool (the 80% training part; its
   Kendall tau on the held-out 20% is printed; the issue asks for >= 0.9), then refit on
   the whole pool. Every strategy and seed sees the same deterministic evaluator.
5. The comparison, in one hypervolume frame (the smallest and largest child under that
   evaluator, as `nas-search` builds it), objectives top-1 and MACs:
   - evaluations nsga2 and assisted need to reach the median hypervolume of random search
     at 1,000 evaluations (targets: nsga2 <= 250, assisted <= 100);
   - per MACs target, the regret (best top-1 any run found under it, minus this run's best
     under it) of coarse2fine at 300 evaluations beside random's at 1,000.

    python benchmarks/search_efficiency.py --data npz:DIR \
        [--supernet runs/bench/cifar-tiny] [--seeds 10] [--pool 1000]

Needs CIFAR-10 data, any cifar10:/npz:/folder: spec; nothing is downloaded. The figures in
docs/benchmarks.md were measured on a 10,000 / 2,000 image subset of the CIFAR-10 training
images (an npz folder); docs/data.md says how to get CIFAR-10 and make one.

Three objectives (--objectives top1,macs,latency): pymoo's many-objective strategies
(agemoea, nsga3, unsga3, moead, smsemoa) beside nsga2, the baseline, and random, in one
hypervolume frame (top-1, MACs and latency of the smallest and largest child under the
evaluator), over --seeds seeds with --budget evaluations each:
- top-1 from the supernet itself (BN calibration on --calib-images training images), each
  child's row cached by arch in DIR/evaluations.csv and shared by every strategy and seed
  (the evaluator is deterministic: a child scores the same in every run);
- latency predicted by a latency lookup table (--latency-table, built for the whole space
  in --latency-runtime first when the file is missing): no child is timed;
- printed: mean +- std of the final hypervolume per strategy and its ratio to nsga2's.

    python benchmarks/search_efficiency.py --objectives top1,macs,latency --data digits \
        --supernet runs/bench/digits-tiny --latency-table runs/bench/latency-tiny-ort.csv \
        --seeds 10 --budget 100 --pop-size 20 --calib-images 64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from nas_search import SearchProblem, Session, SupernetEvaluator
from nas_search.pareto import hypervolume_curve, table_hypervolume
from nas_search.problem import HVFrame
from nas_search.results import best_first, read_results, write_csv
from nas_search.strategies import run_strategy
from nas_search.units import format_count
from supernet.utils import torch_threads

STEP = 5  # hypervolume sampled every STEP evaluations


class CachedEvaluator:
    """An evaluator whose answers are kept by arch, in memory and in a CSV on disk."""

    def __init__(self, inner, path: Path | None):
        self.inner, self.path, self.name = inner, path, inner.name
        self.space = inner.space
        self.rows: dict[str, dict] = {}
        if path is not None and path.is_file():
            cached = read_results(path)
            cached = cached[cached["evaluator"] == inner.name]
            self.rows = {r["arch"]: r for r in cached.to_dict("records")}
        self.evaluated = 0

    def evaluate(self, archs):
        new = [a for a in dict.fromkeys(archs) if str(a) not in self.rows]
        if new:
            for r in self.inner.evaluate(new).to_dict("records"):
                self.rows[r["arch"]] = r
            self.evaluated += len(new)
            if self.path is not None:
                write_csv(pd.DataFrame(list(self.rows.values())), self.path)
        return pd.DataFrame([self.rows[str(a)] for a in archs])


def supernet_checkpoint(out: Path, data: str, epochs: int) -> Path:
    """The trained supernet in `out` (trained there first unless complete; a complete one
    is reused whatever data spec names the same files)."""
    from supernet.checkpoint import read_checkpoint
    from supernet.training.train import TrainConfig, train

    path = out / "supernet.pt"
    if path.is_file() and read_checkpoint(path).get("completed"):
        return path
    return Path(train(TrainConfig(space="tiny", data=data, epochs=epochs, out=out,
                                  quiet=False)))


def noise_floor(ckpt: Path, arch, seeds: int = 5) -> np.ndarray:
    """Top-1 of `arch` with BN statistics from `seeds` different calibration subsets."""
    out = []
    for s in range(seeds):
        ev = SupernetEvaluator.from_checkpoint(ckpt, device="cpu", calib_seed=s, threads=1)
        out.append(float(ev.evaluate([arch])["top1"].iloc[0]))
    return np.array(out)


def evaluate_pool(evaluator: CachedEvaluator, archs: list, minutes: float,
                  chunk: int = 25) -> pd.DataFrame:
    """The pool's rows, evaluating (and caching) the missing ones with progress lines; after
    `minutes`, only the rows evaluated so far (the next run continues from the cache)."""
    todo = [a for a in archs if str(a) not in evaluator.rows]
    t0 = time.perf_counter()
    for i in range(0, len(todo), chunk):
        if time.perf_counter() - t0 > 60 * minutes:
            print(f"  pool: stopped after {minutes:g} min; continue later from the cache",
                  file=sys.stderr, flush=True)
            break
        evaluator.evaluate(todo[i:i + chunk])
        done = min(i + chunk, len(todo))
        rate = (time.perf_counter() - t0) / done
        print(f"  pool: {done}/{len(todo)} new evaluations, {rate:.2f} s each, "
              f"~{rate * (len(todo) - done) / 60:.0f} min left", file=sys.stderr, flush=True)
    return evaluator.evaluate([a for a in archs if str(a) in evaluator.rows])


def fit_surrogate(space, archs: list, top1: np.ndarray, names: list[str], seed: int = 0):
    """(name, model refit on all, held-out Kendall tau, RMSE): the predictor with the best
    5-fold tau on 80% of the pool, scored on the other 20%."""
    from predictors import cross_val_rank_metrics, make_predictor

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(archs))
    cut = int(0.8 * len(archs))
    train, test = order[:cut], order[cut:]
    tr = [archs[i] for i in train]
    scores = {n: cross_val_rank_metrics(make_predictor(n, space, random_state=seed), tr,
                                        top1[train]).kendall_tau for n in names}
    best = max(scores, key=lambda n: np.nan_to_num(scores[n], nan=-1.0))
    model = make_predictor(best, space, random_state=seed).fit(tr, top1[train])
    pred = model.predict([archs[i] for i in test])
    tau = float(kendalltau(pred, top1[test]).statistic)
    rmse = float(np.sqrt(np.mean((pred - top1[test]) ** 2)))
    print("  5-fold tau on the training part: "
          + ", ".join(f"{n} {t:.3f}" for n, t in scores.items()), flush=True)
    return best, make_predictor(best, space, random_state=seed).fit(archs, top1), tau, rmse


def run_one(problem, evaluator, name: str, budget: int, seed: int, options: dict):
    session = Session(problem, evaluator, strategy=name, budget=budget, seed=seed)
    table = run_strategy(name, session, **options)
    ns = list(range(STEP, len(table) + 1, STEP))
    return table, np.array(hypervolume_curve(table, problem, ns))


def first_reach(curve: np.ndarray, target: float) -> float:
    """Evaluations at which a hypervolume curve first reaches `target` (inf: never)."""
    hit = np.flatnonzero(curve >= target - 1e-12)
    return float((hit[0] + 1) * STEP) if len(hit) else float("inf")


def best_under(table: pd.DataFrame, target: float) -> float:
    rows = best_first(table, max_macs=target)
    return float(rows["top1"].iloc[0]) if len(rows) else float("nan")


def _fmt_evals(values: list[float]) -> str:
    med = float(np.median(values))
    return "never" if not np.isfinite(med) else f"{med:.0f}"


MANY = ("nsga2", "agemoea", "nsga3", "unsga3", "moead", "smsemoa", "random")


def latency_table(space, path: Path, runtime: str, threads: int):
    """The latency table at `path` for the whole space (built in `runtime` first, when the
    file is missing or lacks layers)."""
    from predictors.latency import (
        LatencyTable,
        build_latency_table,
        covering_archs,
        read_table,
        save_table,
    )

    existing = read_table(path) if path.is_file() else None
    if existing is not None:
        table = LatencyTable(space, existing, runtime)
        if not table.missing(covering_archs(space)):
            return table, 0.0
    t = time.perf_counter()
    frame = build_latency_table(space, runtime=runtime, threads=threads, existing=existing,
                                progress=True)
    save_table(frame, path)
    return LatencyTable(space, frame, runtime), time.perf_counter() - t


def three_objectives(args) -> None:
    """The 3-objective comparison (see the module doc)."""
    out = Path(args.supernet)
    ckpt = supernet_checkpoint(out, args.data, args.epochs)
    real = CachedEvaluator(SupernetEvaluator.from_checkpoint(
        ckpt, data=args.data, device="cpu", threads=args.threads,
        calib_images=args.calib_images, val_images=args.val_images), out / "evaluations.csv")
    space = real.space
    table_path = Path(args.latency_table
                      or out / f"latency-{space.name}-{args.latency_runtime}.csv")
    table, built_s = latency_table(space, table_path, args.latency_runtime, args.threads)
    objectives = ("top1", "macs", "latency")
    problem = SearchProblem(space, objectives, latency_fn=table.predict)
    ends = [space.min_arch(), space.max_arch()]
    rows = real.evaluate(ends)
    rows["macs"] = [problem.cost(a)[0] for a in ends]
    rows["latency_ms"] = [table.predict(a) for a in ends]
    frame = HVFrame.from_rows(objectives, rows, f"smallest and largest child under {real.name}")
    problem = SearchProblem(space, objectives, latency_fn=table.predict, hv_frame=frame,
                            latency_ref_ms=float(rows["latency_ms"].max()))
    print(f"supernet {ckpt}; evaluator {real.name} (BN calibration on {real.inner.calib_images}"
          f" training images, top-1 on {real.inner.val_images} val images, rows cached in "
          f"{real.path})", flush=True)
    print(f"latency: table {table_path} ({table.runtime}, {len(table.ms)} layer entries"
          + (f", built in {built_s:.0f} s" if built_s else ", reused") + ")", flush=True)
    print(f"frame: top-1 {100 * frame.nadir[0]:.2f}% -> {100 * frame.ideal[0]:.2f}%, MACs "
          f"{format_count(frame.ideal[1])} -> {format_count(frame.nadir[1])}, latency "
          f"{frame.ideal[2]:.3f} -> {frame.nadir[2]:.3f} ms", flush=True)

    names = args.strategies.split(",")
    final: dict[str, list[float]] = {}
    evals: dict[str, list[int]] = {}
    seconds: dict[str, float] = {}
    for name in names:
        options = {"pop_size": args.pop_size} if args.pop_size and name != "random" else {}
        t0, before = time.perf_counter(), real.evaluated
        for seed in range(args.seeds):
            session = Session(problem, real, strategy=name, budget=args.budget, seed=seed)
            result = run_strategy(name, session, **options)
            final.setdefault(name, []).append(table_hypervolume(result, problem))
            evals.setdefault(name, []).append(len(result))
        seconds[name] = time.perf_counter() - t0
        print(f"  {name:<8} {args.seeds} seeds x {args.budget} evaluations in "
              f"{seconds[name]:.0f} s ({real.evaluated - before} new supernet evaluations, "
              "the rest from the cache)", file=sys.stderr, flush=True)

    base = np.mean(final["nsga2"]) if "nsga2" in final else float("nan")
    print(f"\nfinal hypervolume (top-1, MACs, latency), {args.seeds} seeds x {args.budget} "
          f"evaluations, population {args.pop_size or 'default'}:")
    print(f"{'strategy':<9} {'mean':>7} {'std':>7} {'min':>7} {'max':>7} {'/ nsga2':>8} "
          f"{'evals per run':>13} {'s per run':>9}")
    for name in names:
        v = np.array(final[name])
        print(f"{name:<9} {v.mean():>7.4f} {v.std(ddof=1) if len(v) > 1 else 0.0:>7.4f} "
              f"{v.min():>7.4f} {v.max():>7.4f} {v.mean() / base:>8.3f} "
              f"{np.mean(evals[name]):>13.1f} {seconds[name] / args.seeds:>9.1f}")
    print("(evals per run below the budget: the strategy stopped before spending it, as "
          "pymoo's strategies do after `patience` asks in a row bring no unseen child)")
    print(f"\n{real.evaluated} supernet evaluations in all (cached rows reused across runs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True,
                   help="data spec to train on, e.g. cifar10:PATH or npz:DIR (see docs/data.md)")
    p.add_argument("--supernet", "--cache", dest="supernet", default="runs/bench/cifar-tiny",
                   help="folder of the trained supernet and of the cached evaluations")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--pool", type=int, default=1000, help="uniform children scored for real")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--predictors", default="rbf,gp,mlp",
                   help="surrogates tried for the evaluator (the best 5-fold tau is used)")
    p.add_argument("--assisted-predictor", default="auto",
                   help="the surrogate inside the predictor-assisted strategy (auto: mlp, or "
                        "rbf when the evaluator itself is an mlp: never the evaluator's own "
                        "model family, which would fit it exactly)")
    p.add_argument("--assisted-budget", type=int, default=120)
    p.add_argument("--small-pop", type=int, default=24,
                   help="an extra nsga2 row with this population (0: none); Table 1's 70 "
                        "spends 2 x 70 uniform evaluations on P0 and Q0 first")
    p.add_argument("--pool-minutes", type=float, default=float("inf"),
                   help="stop scoring the pool after this long (the rest later, cached)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--objectives", default="top1,macs",
                   help="top1,macs: the comparison above; top1,macs,latency: the "
                        "3-objective comparison of the many-objective strategies")
    p.add_argument("--strategies", default=",".join(MANY), help="3 objectives: which")
    p.add_argument("--budget", type=int, default=100, help="3 objectives: per run")
    p.add_argument("--pop-size", type=int, default=20,
                   help="3 objectives: every population strategy's (0: their defaults)")
    p.add_argument("--calib-images", type=int, default=64, help="3 objectives")
    p.add_argument("--val-images", type=int, help="3 objectives (default: all of val)")
    p.add_argument("--latency-table", help="3 objectives: CSV (built when missing; default "
                                           "DIR/latency-SPACE-RUNTIME.csv)")
    p.add_argument("--latency-runtime", choices=("onnxruntime", "torch"),
                   default="onnxruntime", help="3 objectives: the table's runtime")
    args = p.parse_args()
    if args.objectives == "top1,macs,latency":
        with torch_threads(args.threads):
            three_objectives(args)
        return
    if args.objectives != "top1,macs":
        p.error("--objectives: top1,macs or top1,macs,latency")

    with torch_threads(args.threads):
        out = Path(args.supernet)
        ckpt = supernet_checkpoint(out, args.data, args.epochs)
        log = pd.read_csv(out / "log.csv")
        print(f"supernet: {ckpt} ({len(log)} epochs; last val top-1 of the smallest / largest "
              f"child {100 * log['val_top1_min'].iloc[-1]:.2f}% / "
              f"{100 * log['val_top1_max'].iloc[-1]:.2f}%)", flush=True)

        real = CachedEvaluator(SupernetEvaluator.from_checkpoint(ckpt, device="cpu",
                                                                 threads=args.threads),
                               out / "evaluations.csv")
        space = real.space
        print(f"evaluator: {real.name} (BN calibration on 64 training images, top-1 on "
              f"{real.inner.val_images} val images)", flush=True)

        mid = space.decode([n // 2 for n in space.n_choices()])
        floor = noise_floor(ckpt, mid)
        print(f"noise floor: {mid} over 5 calibration subsets: top-1 "
              f"{' '.join(f'{100 * v:.2f}' for v in floor)}% -> spread "
              f"{100 * np.ptp(floor):.2f} points, std {100 * floor.std(ddof=1):.2f}",
              flush=True)

        rng = np.random.default_rng(12345)  # the pool is part of the evaluator: fixed
        pool = list(dict.fromkeys([space.min_arch(), space.max_arch()]
                                  + [space.sample(rng) for _ in range(args.pool)]))
        rows = evaluate_pool(real, pool, args.pool_minutes)
    pool = [space.parse(a) for a in rows["arch"]]
    top1 = rows["top1"].to_numpy(float)
    print(f"pool: {len(pool)} children scored by the supernet; top-1 "
          f"{100 * top1.min():.2f}..{100 * top1.max():.2f}% (median {100 * np.median(top1):.2f}, "
          f"std {100 * top1.std():.2f} points)", flush=True)
    print(f"  the noise floor's spread is {np.ptp(floor) / top1.std():.1f} x the pool's std: "
          "most children differ by less than the calibration subset moves one", flush=True)
    name, model, tau, rmse = fit_surrogate(space, pool, top1, args.predictors.split(","))
    print(f"surrogate: {name} fit on {int(0.8 * len(pool))} real evaluations; held-out "
          f"({len(pool) - int(0.8 * len(pool))}) Kendall tau {tau:.3f}, RMSE "
          f"{100 * rmse:.2f} points (wanted: tau >= 0.9)", flush=True)

    from predictors import PredictorEvaluator

    evaluator = PredictorEvaluator(model, space, name=f"{name}-on-{real.name}")
    problem = SearchProblem(space)
    extremes = evaluator.evaluate([space.min_arch(), space.max_arch()])
    extremes["macs"] = [problem.cost(a)[0] for a in (space.min_arch(), space.max_arch())]
    frame = HVFrame.from_rows(problem.objectives, extremes,
                              f"smallest and largest child under {evaluator.name}")
    lo, hi = extremes["macs"].min(), extremes["macs"].max()
    targets = tuple(float(lo + f * (hi - lo)) for f in (0.25, 0.5, 0.75))
    problem = SearchProblem(space, hv_frame=frame, targets=targets)
    print(f"frame: top-1 {100 * frame.nadir[0]:.2f}% -> {100 * frame.ideal[0]:.2f}%, MACs "
          f"{format_count(frame.ideal[1])} -> {format_count(frame.nadir[1])}; MACs targets "
          f"{', '.join(format_count(t) for t in targets)}", flush=True)

    inner = args.assisted_predictor
    if inner == "auto":
        inner = "rbf" if name == "mlp" else "mlp"
    print(f"assisted strategy: its own surrogate {inner}, {args.assisted_budget} real "
          "evaluations per run", flush=True)
    # label -> (strategy, budget, options)
    plans = {"random": ("random", 1000, {}), "nsga2": ("nsga2", 1000, {}),
             "assisted": ("assisted", args.assisted_budget,
                          {"predictor": inner, "folds": 0, "generations": 10}),
             "coarse2fine": ("coarse2fine", 300, {})}
    if args.small_pop:
        plans[f"nsga2-pop{args.small_pop}"] = ("nsga2", 1000, {"pop_size": args.small_pop})
    curves: dict[str, list[np.ndarray]] = {}
    tables: dict[str, list[pd.DataFrame]] = {}
    t0 = time.perf_counter()
    for name_, (strategy, budget, options) in plans.items():
        for seed in range(args.seeds):
            table, curve = run_one(problem, evaluator, strategy, budget, seed, options)
            curves.setdefault(name_, []).append(curve)
            tables.setdefault(name_, []).append(table)
        print(f"  {name_:<13} {args.seeds} seeds x {budget} evaluations "
              f"({time.perf_counter() - t0:.0f} s so far)", file=sys.stderr, flush=True)

    target = float(np.median([c[min(len(c), 1000 // STEP) - 1] for c in curves["random"]]))
    print(f"\nhypervolume of random search at 1000 evaluations (median of {args.seeds} "
          f"seeds): {target:.4f}")
    print(f"{'strategy':<13} {'budget':>6} {'HV@100':>7} {'HV@300':>7} {'HV@1000':>8} "
          f"{'evals to random@1000 (median; per seed)':<40}")
    for name_, (_, budget, _) in plans.items():
        cs = curves[name_]

        def at(n, cs=cs):
            vals = [c[min(len(c), n // STEP) - 1] for c in cs if len(c) >= n // STEP]
            return f"{np.median(vals):.4f}" if vals else "-"

        reach = [first_reach(c, target) for c in cs]
        per_seed = " ".join("-" if not np.isfinite(r) else f"{r:.0f}" for r in reach)
        print(f"{name_:<13} {budget:>6} {at(100):>7} {at(300):>7} {at(1000):>8} "
              f"{_fmt_evals(reach):>6}; {per_seed}")

    every = [t for ts in tables.values() for t in ts]
    print("\nregret per MACs target (best top-1 any run found under it minus this run's; "
          "median over seeds, in points):")
    print(f"{'target':>8} {'best any run':>12} {'coarse2fine@300':>16} {'random@1000':>12} "
          f"{'nsga2@1000':>11}")
    for t in targets:
        best = max(best_under(x, t) for x in every)
        reg = {n: np.median([100 * (best - best_under(x, t)) for x in tables[n]])
               for n in ("coarse2fine", "random", "nsga2")}
        print(f"{format_count(t):>8} {100 * best:>11.2f}% {reg['coarse2fine']:>16.2f} "
              f"{reg['random']:>12.2f} {reg['nsga2']:>11.2f}")
    print("\ntargets: nsga2 <= 250 evaluations, assisted <= 100, coarse2fine regret <= "
          "random's")


if __name__ == "__main__":
    main()
