"""`nas-search`: argument parsing only; the work is in `nas_search.search` and `.report`.

    nas-search --strategy {assisted,coarse2fine,nsga2,random} [--supernet CKPT] --budget N
               --max-macs 400M --seed S --out DIR [--pick K]
    nas-search --strategy assisted --predictor {mlp,gp,rbf,ensemble} ...  (surrogate-assisted)
    nas-search --objectives top1,latency --latency-table TABLE.csv --max-latency 5ms ...
    nas-search --resume DIR
    nas-search report DIR [DIR ...] [--png report.png] [--html report.html]

Bad input gives a one-line error on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from supernet.cli_kit import Parser, UsageError, arg, number, run, whole
from supernet.nn.deploy import QUANTIZE, RUNTIMES

from .problem import OBJECTIVES
from .results import SUMMARY, best_per_target, read_json
from .search import DEFAULT_BUDGET, SearchConfig, resume_config, run_search
from .strategies import STRATEGIES
from .units import format_count, parse_accuracy, parse_count, parse_latency

_T = TypeVar("_T")


def _list(convert: Callable[[str, str], _T]) -> Callable[[str, str], tuple[_T, ...]]:
    """A converter of comma lists, each item through `convert`."""
    def parse(text: str, what: str) -> tuple[_T, ...]:
        return tuple(convert(t, what) for t in str(text).split(",") if t.strip())
    return parse


def _objective(text: str, what: str) -> str:
    if text.strip() not in OBJECTIVES:
        raise ValueError(f"{what}: {text!r} is not one of {list(OBJECTIVES)}")
    return text.strip()


def search_parser() -> argparse.ArgumentParser:
    """The argument parser of `nas-search` (a search run; `report` has its own)."""
    p = Parser(prog="nas-search", description="Search a trained supernet's children.")
    p.add_argument("--strategy", choices=sorted(STRATEGIES),
                   help="search strategy (default nsga2)")
    p.add_argument("--supernet", metavar="CKPT",
                   help="supernet checkpoint; default: train the tiny supernet on digits "
                        "into OUT/supernet first (reused when already there)")
    p.add_argument("--space", help="expected space of the checkpoint (an error if it differs)")
    p.add_argument("--data", help="data spec (default: the checkpoint's training data)")
    p.add_argument("--budget", type=arg(whole(1), "--budget"),
                   help=f"evaluations to spend (default {DEFAULT_BUDGET})")
    p.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    p.add_argument("--out", metavar="DIR", help="out folder (default runs/STRATEGY-seedS)")
    p.add_argument("--objectives", type=arg(_list(_objective), "--objectives"),
                   help=f"comma list from {list(OBJECTIVES)} (default top1,macs)")
    p.add_argument("--weights", type=arg(_list(number), "--weights"),
                   help="crowding-distance weight per objective, e.g. 1,0.5 (default all 1)")
    p.add_argument("--max-macs", type=arg(parse_count, "--max-macs"), help="e.g. 400M, 1.2G")
    p.add_argument("--max-params", type=arg(parse_count, "--max-params"), help="e.g. 5M")
    p.add_argument("--min-acc", type=arg(parse_accuracy, "--min-acc"),
                   help="minimum top-1, e.g. 95%% or 0.95")
    p.add_argument("--max-latency", type=arg(parse_latency, "--max-latency"),
                   help="batch-1 latency of the exported child on this device, e.g. 5ms")
    p.add_argument("--latency-table", metavar="CSV",
                   help="latency from this lookup table (predictors.latency) instead of "
                        "measured: --max-latency is then checked before any evaluation")
    p.add_argument("--targets", type=arg(_list(parse_count), "--targets"),
                   help="MACs targets, e.g. 200M,400M,600M,1000M: best child per target")
    p.add_argument("--latency-runtime", choices=RUNTIMES,
                   help="measured latency: each candidate exported and timed in onnxruntime "
                        "(what you deploy; CPU provider, CUDA where present) or torch eager "
                        "(default torch); timings cached in OUT/latency.csv")
    p.add_argument("--latency-batch", type=arg(whole(1), "--latency-batch"),
                   help="images per timed run (default 1)")
    p.add_argument("--quantize", choices=QUANTIZE,
                   help="int8: score and time each candidate as onnxruntime's static int8 "
                        "quantization of the exported child")
    p.add_argument("--warm-start", nargs="+", metavar="RUN_DIR",
                   help="seed the first population with the best feasible children of "
                        "these earlier runs (their rows reused when the evaluator is the same)")
    p.add_argument("--calib-images", type=arg(whole(1), "--calib-images"),
                   help="training images for each child's BN recalibration (default: a "
                        "converted supernet's own recipe, else 4096; at most the training "
                        "split)")
    p.add_argument("--val-images", type=arg(whole(1), "--val-images"),
                   help="validation images per child (default the whole val split)")
    p.add_argument("--pop-size", type=arg(whole(1), "--pop-size"),
                   help="nsga2/assisted population (default 70)")
    p.add_argument("--mutation-ratio", type=arg(number, "--mutation-ratio"),
                   help="nsga2/assisted share of offspring mutated (default 0.8)")
    p.add_argument("--predictor", choices=("mlp", "gp", "rbf", "ensemble"),
                   help="--strategy assisted: NSGA-II on this accuracy surrogate, refit on a "
                        "few real evaluations per iteration (NSGANetV2-style; default mlp)")
    p.add_argument("--pick", type=arg(whole(0), "--pick"),
                   help="K children equispaced near the front (SCARLET-NAS Algorithm 1), "
                        "listed in summary.json and circled in pareto.png (default 0)")
    p.add_argument("--threads", type=arg(whole(0), "--threads"),
                   help="CPU threads per child evaluation (default 1; 0: torch's default, "
                        "worth it for large spaces on an otherwise idle machine)")
    p.add_argument("--workers", type=arg(whole(0), "--workers"),
                   help="processes decoding an image folder's val images (default 0)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the search saved in DIR with its own settings")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


_FIELDS = ("strategy", "supernet", "space", "data", "budget", "seed", "out", "objectives",
           "weights", "max_macs", "max_params", "min_acc", "max_latency", "latency_table",
           "targets", "calib_images", "val_images", "pop_size", "mutation_ratio",
           "predictor", "pick", "threads", "workers", "latency_runtime", "latency_batch",
           "quantize", "warm_start")


def _config(args: argparse.Namespace) -> SearchConfig:
    given = {f: getattr(args, f) for f in _FIELDS if getattr(args, f) is not None}
    if args.resume is not None:
        search = [k for k in given if k not in ("threads", "workers")]
        if search:
            raise UsageError(f"--resume takes its settings from the saved run; drop "
                             f"{', '.join('--' + k.replace('_', '-') for k in search)}")
        cfg = resume_config(args.resume)
        cfg.threads = given.get("threads", cfg.threads)
        cfg.workers = given.get("workers", cfg.workers)
        return cfg
    return SearchConfig(**given)


def _search(argv: Sequence[str]) -> int:
    args = search_parser().parse_args(argv)
    cfg = _config(args)
    session = run_search(cfg, quiet=args.quiet)
    if session.main:
        c, h = session.counts, session.history[-1]
        print(f"nas-search {cfg.strategy}: {c.evaluated} evaluated ({c.rejected_by_cost} "
              f"rejected by cost, {c.cached} cached, {c.replayed} from the saved table), "
              f"{session.step} {session.step_label}s, {h['feasible']} feasible, "
              f"HV {h['hypervolume']:.4f}, {session.elapsed_s:.0f} s")
        print(f"wrote {cfg.out}/: results.csv front.csv summary.json pareto.png "
              "hypervolume.png report.html")
        for target, best in best_per_target(session.table(), session.problem).items():
            where = "overall" if target == "all" else f"under {target} MACs"
            if best is None:
                print(f"  best {where}: no feasible child")
            else:
                print(f"  best {where}: {best['arch']}  top-1 {100 * best['top1']:.2f}%  "
                      f"{format_count(best['macs'])} MACs  {format_count(best['params'])} "
                      "params")
        summary = read_json(f"{cfg.out}/{SUMMARY}")
        for i, p in enumerate(summary["picks"]):
            print(f"  pick {i + 1}/{len(summary['picks'])}: {p['arch']}  top-1 "
                  f"{100 * p['top1']:.2f}%  {format_count(p['macs'])} MACs")
    return 0


def _report(argv: Sequence[str]) -> int:
    p = Parser(prog="nas-search report",
                description="Overlay several runs' fronts and hypervolume curves.")
    p.add_argument("runs", nargs="+", metavar="DIR", help="out folders of finished runs")
    p.add_argument("--png", help="figure to write (default report.png unless --html is given)")
    p.add_argument("--html", metavar="OUT.html",
                   help="one self-contained interactive page: fronts with each child's arch "
                        "on hover, hypervolume curves, sortable front tables with nas-export "
                        "commands, the runs' settings")
    args = p.parse_args(argv)
    from .html_report import write_report
    from .report import read_runs, report

    runs = read_runs(args.runs)
    png = args.png or (None if args.html else "report.png")
    table = report(runs, png) if png else runs.comparison()
    if args.html:
        write_report(runs, args.html)
    print(table.to_string(index=False))
    print(f"hypervolume frame: {table.attrs['frame'].source}")
    print(f"wrote {', '.join(f for f in (png, args.html) if f)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `nas-search`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return run("nas-search", lambda: _report(argv[1:]), "nothing was written")
    return run("nas-search", lambda: _search(argv), "continue with --resume OUT")

if __name__ == "__main__":
    sys.exit(main())
