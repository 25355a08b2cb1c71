"""Search efficiency, printed (not a timed test): hypervolume against evaluations for
random, coarse2fine and nsga2 at budgets 100, 300 and 1000, five seeds each, with one fixed,
deterministic evaluator built from the trained digits supernet.

That evaluator (default `--evaluator surrogate`) is a kernel-ridge predictor (the
`predictors` package) fit on the supernet's own, disk-cached evaluations of a fixed pool of
children: 45 runs of up to 1000 evaluations ask for some 20k distinct children, which the
supernet itself would take hours to score on 2 shared CPU cores. `--evaluator supernet`
scores every child with the supernet instead (cached on disk, so later invocations reuse
it); `--evaluator oracle` uses the synthetic `OracleEvaluator`.

Prints, per strategy, the evaluations needed to reach the hypervolume random search
reaches with 1000 (the mean over seeds). Target for nsga2: at most 250.

    python benchmarks/search_efficiency.py [--supernet runs/digits/supernet.pt]

Without a trained checkpoint it trains the default one first (supernet.train).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nas_search import OracleEvaluator, SearchProblem, Session, SupernetEvaluator
from nas_search.pareto import hypervolume_curve
from nas_search.problem import Constraints, parse_accuracy, parse_count
from nas_search.results import read_results, write_csv
from nas_search.strategies import STRATEGIES

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


def hv_at(curve: np.ndarray, target: float) -> int | None:
    """Evaluations at which a hypervolume curve first reaches `target` (None: never)."""
    hit = np.flatnonzero(curve >= target - 1e-12)
    return int((hit[0] + 1) * STEP) if len(hit) else None


def _checkpoint(path: str) -> Path:
    ckpt = Path(path)
    if not ckpt.is_file():
        from supernet.train import TrainConfig, train

        ckpt = train(TrainConfig(out=ckpt.parent))
    return ckpt


def surrogate(ckpt: Path, cache: Path, pool: int):
    """A deterministic evaluator: kernel ridge on `pool` supernet evaluations (cached)."""
    from predictors import PredictorEvaluator, cross_val_rank_metrics, make_predictor

    supernet = CachedEvaluator(SupernetEvaluator.from_checkpoint(ckpt, device="cpu"), cache)
    space = supernet.space
    rng = np.random.default_rng(12345)  # the pool is part of the evaluator: fixed
    archs = list(dict.fromkeys([space.min_arch(), space.max_arch()]
                               + [space.sample(rng) for _ in range(pool)]))
    t = time.perf_counter()
    top1 = supernet.evaluate(archs)["top1"].to_numpy()
    model = make_predictor("rbf", space)
    cv = cross_val_rank_metrics(model, archs, top1)
    print(f"surrogate: kernel ridge on {len(archs)} supernet evaluations ({supernet.name}, "
          f"{supernet.evaluated} new, {time.perf_counter() - t:.0f} s); top-1 "
          f"{100 * top1.min():.2f}..{100 * top1.max():.2f}%; 5-fold Kendall tau "
          f"{cv.kendall_tau:.3f}, RMSE {100 * cv.rmse:.3f} points", flush=True)
    return PredictorEvaluator(model.fit(archs, top1), space, name="rbf-on-digits-supernet")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--supernet", default="runs/digits/supernet.pt")
    p.add_argument("--evaluator", choices=("surrogate", "supernet", "oracle"),
                   default="surrogate")
    p.add_argument("--cache", default="runs/bench/digits_evaluations.csv",
                   help="CSV of the supernet's cached evaluations")
    p.add_argument("--pool", type=int, default=500, help="surrogate: children evaluated")
    p.add_argument("--budgets", default="100,300,1000")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--max-macs", default=None)
    p.add_argument("--min-acc", default=None, help="e.g. 97%%: only children above count")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--pop-size", type=int, default=None, help="nsga2 population (default 70)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    if args.evaluator == "oracle":
        from supernet import load_space

        inner = OracleEvaluator(load_space("tiny"))
    elif args.evaluator == "surrogate":
        inner = surrogate(_checkpoint(args.supernet), Path(args.cache), args.pool)
    else:
        inner = SupernetEvaluator.from_checkpoint(_checkpoint(args.supernet), device="cpu")
    evaluator = CachedEvaluator(inner, Path(args.cache) if args.evaluator == "supernet"
                                else None)
    max_macs = parse_count(args.max_macs, "--max-macs") if args.max_macs else None
    min_acc = parse_accuracy(args.min_acc) if args.min_acc else None
    problem = SearchProblem(evaluator.space,
                            constraints=Constraints(max_macs=max_macs, min_acc=min_acc))
    print(f"evaluator {evaluator.name}; objectives top-1 / MACs; max MACs {args.max_macs}; "
          f"min top-1 {args.min_acc}; budgets {budgets}; seeds 0..{args.seeds - 1}",
          flush=True)

    curves: dict[tuple[str, int], list[np.ndarray]] = {}
    t0 = time.perf_counter()
    for budget in budgets:
        for name in sorted(STRATEGIES):
            for seed in range(args.seeds):
                session = Session(problem, evaluator, strategy=name, budget=budget, seed=seed)
                options = {"pop_size": args.pop_size} if name == "nsga2" and args.pop_size \
                    else {}
                table = STRATEGIES[name](session, **options)
                ns = list(range(STEP, len(table) + 1, STEP))
                curves.setdefault((name, budget), []).append(
                    np.array(hypervolume_curve(table, problem, ns)))
            finals = [c[-1] for c in curves[(name, budget)]]
            print(f"budget {budget:5d}  {name:<12} final HV {np.mean(finals):.4f} "
                  f"+- {np.std(finals):.4f}   ({evaluator.evaluated} children evaluated so "
                  f"far, {time.perf_counter() - t0:.0f} s)", flush=True)

    top = max(budgets)
    target = float(np.mean([c[-1] for c in curves[("random", top)]]))
    print(f"\nhypervolume random search reaches with {top} evaluations (mean of "
          f"{args.seeds} seeds): {target:.4f}")
    print("evaluations needed to reach it (per seed, in the budget-"
          f"{top} runs; '-' = not reached):")
    for name in sorted(STRATEGIES):
        hits = [hv_at(c, target) for c in curves[(name, top)]]
        reached = [h for h in hits if h is not None]
        med = f"median {int(np.median(reached))}" if reached else "never"
        print(f"  {name:<12} {med:<12} seeds: "
              f"{' '.join('-' if h is None else str(h) for h in hits)}")


if __name__ == "__main__":
    main()
