"""One search run end to end: settings -> evaluator, problem, session -> strategy ->
the out folder (written by `results.write_run`)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from supernet.nn.deploy import check_runtime
from supernet.spaces.space import Arch, SearchSpace, load_space
from supernet.training.distributed import setup, teardown

from .evaluator import DistributedEvaluator, Evaluator, SupernetEvaluator
from .problem import Constraints, SearchProblem, with_hv_frame, with_latency_ref
from .results import RESULTS, STATE, read_json, read_results, write_run
from .session import STATE_FORMAT, Session
from .strategies import STRATEGIES
from .timing import LATENCY_CACHE, Timer
from .warm_start import WarmStart, check_runs, warm_start

# ~0.3 s per digits child on 2 CPU cores (64 calibration + 270 val images): the default
# search fits in about two minutes, next to about three of training
DEFAULT_BUDGET = 300
WARM_CHILDREN = 16  # children a warm start seeds, for strategies without a population


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
    # measured latency: each candidate exported and timed in this runtime ("onnxruntime":
    # what is deployed; "torch": eager), batch `latency_batch`, cached in OUT/latency.csv
    latency_runtime: str = "torch"
    latency_batch: int = 1
    quantize: str | None = None  # "int8": candidates scored and timed as onnxruntime int8
    warm_start: tuple[str, ...] = ()  # earlier runs whose best children seed this one
    targets: tuple[float, ...] = ()
    calib_images: int | None = None  # None: the checkpoint's recipe, else CALIB_IMAGES
    val_images: int | None = None
    # strategy settings: None is the strategy's default; each is checked by the strategy's
    # options dataclass, and naming one the strategy lacks is an error
    pop_size: int | None = None
    mutation_ratio: float | None = None
    predictor: str | None = None
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
        self.strategy_options()  # the strategy checks its own settings
        if self.latency_runtime != "torch" or self.quantize is not None:
            # a runtime or mode that cannot run is an error now, before any evaluation
            check_runtime(self.latency_runtime, self.quantize)
        if int(self.latency_batch) < 1:
            raise ValueError(f"latency_batch: {self.latency_batch} is not allowed; "
                             "expected a whole number >= 1")
        self.warm_start = tuple(self.warm_start)
        if int(self.pick) < 0:
            raise ValueError(f"pick: {self.pick} must be a whole number of children, >= 0")
        self.out = self.out or f"runs/{self.strategy}-seed{self.seed}"
        self.objectives, self.weights = tuple(self.objectives), tuple(self.weights)
        self.targets = tuple(self.targets)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict, as state.json saves them."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchConfig:
        """The config of saved settings `d`; keys it does not know (older runs') are dropped."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def problem(self, space: SearchSpace) -> SearchProblem:
        """The search problem these settings pose on `space`."""
        return SearchProblem(space, self.objectives, self.weights,
                             Constraints(self.max_macs, self.max_params, self.min_acc,
                                         self.max_latency), self.targets,
                             latency_fn=table_latency(space, self.latency_table))

    def strategy_options(self) -> Any:
        """The strategy's options dataclass with the strategy settings this config gives;
        ValueError for a setting the strategy does not have or does not allow."""
        given = {k: getattr(self, k) for k in STRATEGY_SETTINGS if getattr(self, k) is not None}
        return STRATEGIES[self.strategy].make_options(**given)


STRATEGY_SETTINGS = ("pop_size", "mutation_ratio", "predictor")  # SearchConfig's, passed on


def table_latency(space: SearchSpace, path: str | None) -> Callable[[Arch], float] | None:
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


RUN_ONLY = ("out", "threads", "workers")  # settings that do not change what a search computes


def _same_search(saved: dict[str, Any], cfg: SearchConfig) -> bool:
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
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return "cuda" if torch.cuda.is_available() and torch.cuda.device_count() >= local_world \
        else "cpu"


def _supernet_evaluator(cfg: SearchConfig, device: str, quiet: bool) -> SupernetEvaluator:
    """The evaluator over `cfg.supernet`, or over the default supernet, trained first."""
    if cfg.supernet is None:
        # a constraint no child can meet is an error now, not after minutes of training
        cfg.problem(load_space(cfg.space or "tiny")).check_satisfiable()
    ckpt = cfg.supernet or default_supernet(cfg, device, quiet)
    latency = cfg.latency_table is None and (
        "latency" in cfg.objectives or cfg.max_latency is not None)
    # timed in the deployment runtime on the CPU (torch eager on a GPU times itself there)
    timer = Timer(cfg.latency_runtime, cfg.latency_batch, cfg.threads or 1,
                  quantize=cfg.quantize, cache=Path(cfg.out) / LATENCY_CACHE) \
        if latency and (cfg.latency_runtime != "torch" or not device.startswith("cuda")) \
        else None
    return SupernetEvaluator.from_checkpoint(
        ckpt, space=cfg.space, data=cfg.data, calib_images=cfg.calib_images,
        val_images=cfg.val_images, device=device, threads=cfg.threads or None,
        workers=cfg.workers, latency=latency, timer=timer, quantize=cfg.quantize)


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
    check_runs(list(cfg.warm_start))  # a missing or unfinished folder: before any work
    d = setup(_device())  # under torchrun: joins the job, each process on its own GPU
    main = d.rank == 0
    try:
        if evaluator is None:
            evaluator = _supernet_evaluator(cfg, str(d.device), quiet or not main)
        space = getattr(evaluator, "space", None) or load_space(cfg.space or "tiny")
        problem = cfg.problem(space)
        problem.check_satisfiable()
        saved_settings = (saved_state or {}).get("settings", {})
        if "latency" in cfg.objectives:
            problem = with_latency_ref(problem, evaluator, saved_settings)
        problem, frame_rows = with_hv_frame(problem, evaluator, saved_settings)
        warm = WarmStart()
        if cfg.warm_start:
            size = getattr(cfg.strategy_options(), "pop_size", WARM_CHILDREN)
            warm = warm_start(list(cfg.warm_start), problem, evaluator.name, cfg.data, size)
            if warm.rows is not None:  # same evaluator: their rows stand for evaluations
                frame_rows = warm.rows if frame_rows is None else pd.concat(
                    [frame_rows, warm.rows[~warm.rows["arch"].isin(frame_rows["arch"])]],
                    ignore_index=True)
        if d.world > 1:
            evaluator = DistributedEvaluator(evaluator)
        saved = read_results(out / RESULTS) if saved_state and (out / RESULTS).is_file() \
            else None
        settings = {**cfg.to_dict(), "latency_ref_ms": problem.latency_ref_ms,
                    "hv_frame": None if problem.hv_frame is None else problem.hv_frame.to_dict()}
        session = Session(problem, evaluator, strategy=cfg.strategy, budget=cfg.budget,
                          seed=cfg.seed, out=out, settings=settings, saved=saved,
                          elapsed_s=saved_state.get("elapsed_s", 0.0) if saved_state else 0.0,
                          quiet=quiet, main=main, known=frame_rows, warm=warm.archs)
        if cfg.warm_start:
            session.extra_summary["warm_start"] = {
                "runs": warm.runs, "children": len(warm.archs), "rows_reused": warm.reused}
        try:
            STRATEGIES[cfg.strategy].run(session, cfg.strategy_options())
        finally:
            session.close()
        if main:
            write_run(session, cfg)
    finally:
        teardown(d)
    return session
