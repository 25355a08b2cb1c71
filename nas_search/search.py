"""One search run end to end: settings -> evaluator, problem, session -> strategy ->
the out folder (results.csv, front.csv, summary.json, pareto.png, hypervolume.png)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import torch

from supernet.spaces.space import load_space

from .evaluator import CALIB_IMAGES, DistributedEvaluator, Evaluator, SupernetEvaluator
from .pareto import equispaced_picks
from .problem import Constraints, HVFrame, SearchProblem
from .results import (
    FRONT,
    RESULTS,
    STATE,
    SUMMARY,
    best_per_target,
    read_json,
    read_results,
    write_json,
    write_tables,
)
from .session import STATE_FORMAT, Session
from .strategies import STRATEGIES

# ~0.3 s per digits child on 2 CPU cores (64 calibration + 270 val images): the default
# search fits in about two minutes, next to about three of training
DEFAULT_BUDGET = 300


@dataclass
class SearchConfig:
    """Everything that defines a search (saved in state.json, so a run can resume)."""

    strategy: str = "nsga2"
    out: str = ""  # default: runs/<strategy>-seed<seed>
    budget: int = DEFAULT_BUDGET
    seed: int = 0
    supernet: str | None = None  # None: train the default supernet into <out>/supernet
    space: str | None = None  # None: the checkpoint's space
    data: str | None = None  # None: the data the checkpoint was trained on
    objectives: tuple[str, ...] = ("top1", "macs")
    weights: tuple[float, ...] = ()
    max_macs: float | None = None
    max_params: float | None = None
    min_acc: float | None = None
    max_latency: float | None = None
    latency_table: str | None = None  # latency from this lookup table instead of measured
    targets: tuple[float, ...] = ()
    calib_images: int = CALIB_IMAGES  # at most the training split (see evaluator)
    val_images: int | None = None
    pop_size: int = 70
    mutation_ratio: float = 0.8
    predictor: str | None = None  # assisted only: its surrogate (default mlp)
    pick: int = 0  # K children equispaced near the front, in summary.json and pareto.png
    # CPU threads per evaluation (0: torch's default). Children of the small spaces run
    # small ops: a second thread gained 7-12% on a quiet 2-core machine and cost up to 7x
    # on one shared with other jobs (measured on digits), so one is the default.
    threads: int = 1
    workers: int = 0  # DataLoader processes decoding a streamed folder's val images

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: {self.strategy!r} is unknown; choose from "
                             f"{sorted(STRATEGIES)}")
        if int(self.budget) < 1:
            raise ValueError(f"budget: {self.budget} must be a positive number of evaluations")
        _check_predictor(self.strategy, self.predictor)
        if int(self.pick) < 0:
            raise ValueError(f"pick: {self.pick} must be a whole number of children, >= 0")
        self.out = self.out or f"runs/{self.strategy}-seed{self.seed}"
        self.objectives, self.weights = tuple(self.objectives), tuple(self.weights)
        self.targets = tuple(self.targets)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def problem(self, space) -> SearchProblem:
        return SearchProblem(space, self.objectives, self.weights,
                             Constraints(self.max_macs, self.max_params, self.min_acc,
                                         self.max_latency), self.targets,
                             latency_fn=table_latency(space, self.latency_table))

    def strategy_options(self):
        """The strategy's options dataclass, with every field this config also names
        (pop_size, mutation_ratio, predictor, ...) taken from here when set."""
        strategy = STRATEGIES[self.strategy]
        given = {f.name: getattr(self, f.name) for f in fields(strategy.options)
                 if getattr(self, f.name, None) is not None}
        return strategy.make_options(**given)


def table_latency(space, path: str | None):
    """`LatencyTable.predict` of the table at `path` (None without one); ValueError if the
    table is for another space or lacks layers of it, so the search never stops midway."""
    if path is None:
        return None
    from predictors.latency import LatencyTable, covering_archs

    table = LatencyTable.from_csv(space, path)
    gone = table.missing(covering_archs(space))
    if gone:
        raise ValueError(f"latency table: {path!r} lacks {len(gone)} layer(s) of space "
                         f"{space.name!r}, first {gone[0]!r}; build it for the whole space")
    return table.predict


def _check_predictor(strategy: str, predictor: str | None) -> None:
    """ValueError unless `predictor` is None or a known surrogate used with nsga2."""
    if predictor is None:
        return
    from predictors.models import PREDICTORS

    if predictor not in PREDICTORS:
        raise ValueError(f"predictor: {predictor!r} is unknown; choose from "
                         f"{sorted(PREDICTORS)}")
    if strategy != "assisted":
        raise ValueError(f"predictor: only --strategy assisted runs on a surrogate, not "
                         f"{strategy!r}")


RUN_ONLY = ("out", "threads", "workers")  # settings that do not change what a search computes


def _same_search(saved: dict, cfg: SearchConfig) -> bool:
    """Whether saved settings describe the search `cfg` (RUN_ONLY aside)."""
    now = json.loads(json.dumps(cfg.to_dict()))  # tuples -> lists, as saved
    return all(saved.get(k) == v for k, v in now.items() if k not in RUN_ONLY)


def resume_config(out: str | Path) -> SearchConfig:
    """The settings of the search saved in `out` (for `--resume`)."""
    path = Path(out) / STATE
    if not path.is_file():
        raise ValueError(f"resume: {str(out)!r} holds no search to resume (no {STATE})")
    state = read_json(path)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"resume: {str(path)!r} is not a nas-search state file")
    cfg = SearchConfig.from_dict(state["settings"])
    cfg.out = str(out)
    return cfg


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"out: {str(out)!r} is not a writable folder ({e.strerror})") from None


def default_supernet(cfg: SearchConfig, device: str, quiet: bool) -> Path:
    """Train (or reuse, when complete) the supernet into OUT/supernet with `nas-train`'s
    code and defaults: the tiny space on the embedded digits unless `cfg` names others."""
    from supernet.training.train import TrainConfig, train

    train_cfg = TrainConfig(out=Path(cfg.out) / "supernet", seed=cfg.seed, quiet=quiet,
                            space=cfg.space or TrainConfig.space,
                            data=cfg.data or TrainConfig.data, device=device.split(":")[0])
    return Path(train(train_cfg))


def _device() -> str:
    """This process's device: its own GPU when every local process can have one."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_world:
        return f"cuda:{local_rank}"
    return "cpu"


def _start_distributed(device: str) -> tuple[bool, bool]:
    """Under torchrun, join the process group (NCCL on GPUs, gloo on CPU). Returns
    (whether this process started it, whether this is the main process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False, True
    import torch.distributed as dist

    started = not dist.is_initialized()
    if started:
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return started, dist.get_rank() == 0


def _supernet_evaluator(cfg: SearchConfig, device: str, quiet: bool) -> SupernetEvaluator:
    """The evaluator over `cfg.supernet`, or over the default supernet, trained first."""
    if cfg.supernet is None:
        # a constraint no child can meet is an error now, not after minutes of training
        cfg.problem(load_space(cfg.space or "tiny")).check_satisfiable()
    ckpt = cfg.supernet or default_supernet(cfg, device, quiet)
    return SupernetEvaluator.from_checkpoint(
        ckpt, space=cfg.space, data=cfg.data, calib_images=cfg.calib_images,
        val_images=cfg.val_images, device=device, threads=cfg.threads or None,
        workers=cfg.workers,
        latency=cfg.latency_table is None
        and ("latency" in cfg.objectives or cfg.max_latency is not None))


def run_search(cfg: SearchConfig, evaluator: Evaluator | None = None,
               quiet: bool = True) -> Session:
    """Run (or continue, from the out folder's saved table) the search `cfg` describes.

    `evaluator` replaces the supernet (a predictor or a test oracle); then `cfg.space`
    names the space. Bad settings raise ValueError with a one-line message. Under
    torchrun every process runs the search and shares the evaluations; the first writes.
    """
    out = Path(cfg.out)
    _check_writable(out)
    saved_state = read_json(out / STATE) if (out / STATE).is_file() else None
    if saved_state is not None and not _same_search(saved_state.get("settings", {}), cfg):
        raise ValueError(f"out: {str(out)!r} holds a search with other settings; continue "
                         f"it with --resume {out} or choose another --out")
    device = _device()
    started, main = _start_distributed(device)
    try:
        if evaluator is None:
            evaluator = _supernet_evaluator(cfg, device, quiet or not main)
        space = getattr(evaluator, "space", None) or load_space(cfg.space or "tiny")
        problem = cfg.problem(space)
        problem.check_satisfiable()
        if "latency" in cfg.objectives:
            problem = _with_latency_ref(problem, evaluator, saved_state)
        problem, frame_rows = _with_frame(problem, evaluator, saved_state)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            evaluator = DistributedEvaluator(evaluator)
        saved = read_results(out / RESULTS) if saved_state and (out / RESULTS).is_file() \
            else None
        settings = {**cfg.to_dict(), "latency_ref_ms": problem.latency_ref_ms,
                    "hv_frame": problem.hv_frame.to_dict()}
        session = Session(problem, evaluator, strategy=cfg.strategy, budget=cfg.budget,
                          seed=cfg.seed, out=out, settings=settings, saved=saved,
                          elapsed_s=saved_state.get("elapsed_s", 0.0) if saved_state else 0.0,
                          quiet=quiet, main=main, known=frame_rows)
        try:
            STRATEGIES[cfg.strategy].run(session, cfg.strategy_options())
        finally:
            session.close()
        if main:
            finish(session, cfg)
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
    return session


def _with_latency_ref(problem: SearchProblem, evaluator, saved_state) -> SearchProblem:
    """The problem with the largest child's latency as the hypervolume's latency scale
    (measured once and saved, so a resumed run keeps the same frame)."""
    from dataclasses import replace

    ref = (saved_state or {}).get("settings", {}).get("latency_ref_ms")
    if ref is None and problem.latency_fn is not None:
        ref = problem.latency_fn(problem.space.max_arch())
    if ref is None:
        if not hasattr(evaluator, "latency_ms"):
            raise ValueError("objectives: latency needs an evaluator that measures it")
        ref = evaluator.latency_ms(problem.space.max_arch())
    return replace(problem, latency_ref_ms=float(ref))


def _with_frame(problem: SearchProblem, evaluator,
                saved_state) -> tuple[SearchProblem, pd.DataFrame | None]:
    """The problem with its hypervolume frame, and the evaluator's rows it was built from:
    the saved frame on resume (no rows), else ideal and nadir of the smallest and largest
    child under this evaluator, so every run on the same evaluator shares one frame. The
    two evaluations are not in the budget until the strategy asks for those children."""
    from dataclasses import replace

    saved = (saved_state or {}).get("settings", {}).get("hv_frame")
    if saved:
        return replace(problem, hv_frame=HVFrame.from_dict(saved)), None
    space = problem.space
    archs = list(dict.fromkeys([space.min_arch(), space.max_arch()]))
    rows = evaluator.evaluate(archs).reset_index(drop=True)
    answers = rows.copy()
    cost = [problem.cost(a) for a in archs]
    rows["macs"], rows["params"] = [c[0] for c in cost], [c[1] for c in cost]
    if "latency" in problem.objectives and "latency_ms" not in rows:
        rows["latency_ms"] = [problem.latency_fn(a) if problem.latency_fn is not None
                              else evaluator.latency_ms(a) for a in archs]
    frame = HVFrame.from_rows(problem.objectives, rows,
                              f"smallest and largest child under {evaluator.name}")
    return replace(problem, hv_frame=frame), answers


def finish(session: Session, cfg: SearchConfig) -> dict:
    """Write the out folder's tables, summary and figures; returns the summary."""
    from .plots import plot_hypervolume, plot_pareto

    out, problem = Path(cfg.out), session.problem
    ranked = write_tables(out, session.table(), problem)
    picks = equispaced_picks(ranked, problem, cfg.pick)
    hv = session.history[-1]["hypervolume"] if session.history else 0.0
    summary = {
        "format": STATE_FORMAT,
        "strategy": cfg.strategy, "seed": cfg.seed, "budget": cfg.budget,
        "settings": session.settings, "problem": problem.to_dict(),
        "evaluator": session.evaluator.name,
        "counts": session.summary_counts(),
        "steps": session.step,
        "wall_time_s": round(session.elapsed_s, 2),
        "front_size": int(ranked["pareto"].sum()) if len(ranked) else 0,
        "hypervolume": {"final": hv, "frame": problem.to_dict()["hv_frame"],
                        "history": session.history},
        "best_per_target": best_per_target(ranked, problem),
        "picks": [{"arch": r["arch"], "top1": float(r["top1"]), "macs": int(r["macs"]),
                   "params": int(r["params"]), "rank": int(r["rank"])}
                  for _, r in picks.iterrows()],
        **session.extra_summary,
        "files": [RESULTS, FRONT, SUMMARY, "pareto.png", "hypervolume.png"],
    }
    write_json(summary, out / SUMMARY)
    title = f"{cfg.strategy}, seed {cfg.seed}, {session.counts.evaluated} evaluations"
    plot_pareto(ranked, problem, out / "pareto.png", f"Pareto front: {title}", picks=picks)
    plot_hypervolume(session.history, out / "hypervolume.png", f"Hypervolume: {title}")
    session.write_state(complete=True)
    return summary
