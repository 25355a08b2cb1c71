"""Predictor-assisted NSGA-II (`--predictor`) against plain NSGA-II, printed (not a timed
test): real evaluations each needs to reach the hypervolume plain NSGA-II reaches with the
whole budget, over several seeds, on one fixed deterministic evaluator.

The evaluator is the one of `search_efficiency.py` (imported, not copied): by default a
kernel-ridge predictor fit on the trained digits supernet's own, disk-cached evaluations
of a fixed pool of children; `--evaluator oracle` uses the synthetic `OracleEvaluator`.

    python benchmarks/assisted_vs_nsga2.py [--budget 300] [--seeds 5] [--predictor gp]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere

from search_efficiency import (  # noqa: E402
    STEP,
    CachedEvaluator,
    _checkpoint,
    hv_at,
    surrogate,
)

from nas_search import OracleEvaluator, SearchProblem, Session  # noqa: E402
from nas_search.pareto import hypervolume_curve  # noqa: E402
from nas_search.strategies import assisted, nsga2  # noqa: E402


def run_once(problem: SearchProblem, evaluator, budget: int, seed: int,
             options: dict, predictor: str | None) -> tuple[np.ndarray, float]:
    """Hypervolume every STEP real evaluations of one run, and its wall time."""
    label = f"nsga2+{predictor}" if predictor else "nsga2"
    session = Session(problem, evaluator, strategy=label, budget=budget, seed=seed)
    t = time.perf_counter()
    if predictor:
        table = assisted.run(session, predictor=predictor, **options)
    else:
        table = nsga2.run(session, **{k: v for k, v in options.items() if k == "pop_size"})
    wall = time.perf_counter() - t
    ns = list(range(STEP, len(table) + 1, STEP))
    return np.array(hypervolume_curve(table, problem, ns)), wall


def _evaluator(args: argparse.Namespace):
    """The fixed evaluator of search_efficiency.py, cached in memory."""
    if args.evaluator == "oracle":
        from supernet import load_space

        return CachedEvaluator(OracleEvaluator(load_space("tiny")), None)
    return CachedEvaluator(surrogate(_checkpoint(args.supernet), Path(args.cache), args.pool),
                           None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--supernet", default="runs/digits/supernet.pt")
    p.add_argument("--evaluator", choices=("surrogate", "oracle"), default="surrogate")
    p.add_argument("--cache", default="runs/bench/digits_evaluations.csv",
                   help="CSV of the supernet's cached evaluations")
    p.add_argument("--pool", type=int, default=500, help="surrogate: children evaluated")
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--predictor", default="gp", help="mlp, gp, rbf or ensemble")
    p.add_argument("--pop-size", type=int, default=70, help="nsga2 population (both)")
    p.add_argument("--batch", type=int, default=8, help="assisted: real evaluations/iter")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    evaluator = _evaluator(args)
    problem = SearchProblem(evaluator.space)
    options = {"pop_size": args.pop_size, "batch": args.batch}
    print(f"evaluator {evaluator.name}; objectives top-1 / MACs; budget {args.budget}; "
          f"seeds 0..{args.seeds - 1}; assisted: {args.predictor}, batch {args.batch}",
          flush=True)
    curves: dict[str, list[np.ndarray]] = {}
    for predictor in (None, args.predictor):
        name = f"nsga2+{predictor}" if predictor else "nsga2"
        for seed in range(args.seeds):
            curve, wall = run_once(problem, evaluator, args.budget, seed, options, predictor)
            curves.setdefault(name, []).append(curve)
            print(f"  {name:<12} seed {seed}: final HV {curve[-1]:.4f}  ({wall:.0f} s)",
                  flush=True)
    target = float(np.mean([c[-1] for c in curves["nsga2"]]))
    print(f"\nhypervolume plain nsga2 reaches with {args.budget} evaluations (mean of "
          f"{args.seeds} seeds): {target:.4f}")
    print("real evaluations needed to reach it (per seed; '-' = not within the budget):")
    for name, cs in curves.items():
        hits = [hv_at(c, target) for c in cs]
        reached = [h for h in hits if h is not None]
        med = f"median {int(np.median(reached))}" if reached else "never"
        print(f"  {name:<12} {med:<12} final HV {np.mean([c[-1] for c in cs]):.4f}  seeds: "
              f"{' '.join('-' if h is None else str(h) for h in hits)}")


if __name__ == "__main__":
    main()
