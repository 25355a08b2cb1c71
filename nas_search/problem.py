"""What a search optimises and what it allows: objectives, weights, constraints, targets.

Tables hold top-1 as a fraction in 0..1 (as `supernet.training.evaluation` does); plots and
progress lines show it in percent. Objectives are turned into pymoo's form (all
minimised) here, and into a fixed normalised form for the hypervolume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from supernet.spaces.cost import cost as _closed_form_cost
from supernet.spaces.space import Arch, SearchSpace

from .units import format_count

if TYPE_CHECKING:
    from .evaluator import Evaluator

# objective name -> (table column, +1 to maximise / -1 to minimise)
OBJECTIVES: dict[str, tuple[str, int]] = {
    "top1": ("top1", +1),
    "macs": ("macs", -1),
    "params": ("params", -1),
    "latency": ("latency_ms", -1),
}

@lru_cache(maxsize=1 << 16)
def child_cost(space: SearchSpace, arch: Arch) -> tuple[int, int]:
    """(MACs, params) from the closed-form counter, memoised: strategies ask often."""
    return _closed_form_cost(space, arch)


@dataclass(frozen=True)
class HVFrame:
    """The hypervolume's frame, shared by every run compared: per objective the value that
    scores 0 (`ideal`) and the one that scores 1 (`nadir`, the reference point), in table
    units (top-1 fraction, MACs, params, ms). A point beyond the nadir adds nothing; one
    beyond the ideal (better than the frame's best) adds more than the frame's unit box."""

    objectives: tuple[str, ...]
    ideal: tuple[float, ...]
    nadir: tuple[float, ...]
    source: str = ""  # how the frame was made, for summary.json and the figures

    def normalize(self, table: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Each objective column mapped to 0 at the ideal, 1 at the nadir."""
        cols: list[npt.NDArray[np.float64]] = []
        for name, lo, hi in zip(self.objectives, self.ideal, self.nadir):
            span = hi - lo
            if span == 0:  # a degenerate axis: keep the direction, unit scale
                span = -1.0 if OBJECTIVES[name][1] > 0 else 1.0
            cols.append((table[OBJECTIVES[name][0]].to_numpy(float) - lo) / span)
        return np.column_stack(cols) if cols else np.zeros((len(table), 0))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON friendly) that `from_dict` reads back."""
        return {"objectives": list(self.objectives), "ideal": list(self.ideal),
                "nadir": list(self.nadir), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HVFrame:
        """The frame `to_dict` wrote (summary.json, state settings)."""
        return cls(tuple(d["objectives"]), tuple(float(v) for v in d["ideal"]),
                   tuple(float(v) for v in d["nadir"]), str(d.get("source", "")))

    @classmethod
    def from_rows(cls, objectives: tuple[str, ...], rows: pd.DataFrame,
                  source: str) -> HVFrame:
        """Ideal: the best value of each objective among `rows`; nadir: the worst."""
        ideal, nadir = [], []
        for name in objectives:
            col, sign = OBJECTIVES[name]
            v = rows[col].to_numpy(float)
            v = v[np.isfinite(v)]
            if len(v) == 0:
                raise ValueError(f"hypervolume frame: no finite {col!r} to build it from")
            best, worst = (v.max(), v.min()) if sign > 0 else (v.min(), v.max())
            ideal.append(float(best))
            nadir.append(float(worst))
        return cls(tuple(objectives), tuple(ideal), tuple(nadir), source)


@dataclass(frozen=True)
class Constraints:
    """Upper bounds on cost and latency, a lower bound on top-1 (None: unconstrained)."""

    max_macs: float | None = None
    max_params: float | None = None
    min_acc: float | None = None  # top-1 fraction
    max_latency: float | None = None  # milliseconds

    def to_dict(self) -> dict[str, float | None]:
        """The bounds as a plain dict, for summary.json."""
        return {"max_macs": self.max_macs, "max_params": self.max_params,
                "min_acc": self.min_acc, "max_latency": self.max_latency}


@dataclass(frozen=True)
class SearchProblem:
    """The space, the objectives with their crowding weights, the constraints and MACs targets.

    `targets` are MACs budgets (BigNAS-S/M/L/XL style): coarse2fine searches each one,
    and every report names the best feasible child under each.
    """

    space: SearchSpace
    objectives: tuple[str, ...] = ("top1", "macs")
    weights: tuple[float, ...] = ()
    constraints: Constraints = field(default_factory=Constraints)
    targets: tuple[float, ...] = ()
    latency_ref_ms: float | None = None  # hypervolume scale of latency (max child's latency)
    # latency (ms) known before evaluation, e.g. a lookup table's: then --max-latency is
    # checked with the cost, before any evaluation is spent
    latency_fn: Callable[[Arch], float] | None = field(default=None, compare=False,
                                                        repr=False)
    # the hypervolume's frame; None: the fixed fallback of `normalized_objectives`
    hv_frame: HVFrame | None = None

    def __post_init__(self) -> None:
        objs = tuple(self.objectives)
        bad = [o for o in objs if o not in OBJECTIVES]
        if bad or not objs or len(set(objs)) != len(objs):
            raise ValueError(f"objectives: {list(objs)} must be distinct names from "
                             f"{list(OBJECTIVES)}")
        weights = tuple(float(w) for w in self.weights) or (1.0,) * len(objs)
        if len(weights) != len(objs) or any(not w > 0 for w in weights):
            raise ValueError(f"weights: {list(weights)} must be {len(objs)} positive numbers, "
                             f"one per objective {list(objs)}")
        object.__setattr__(self, "objectives", objs)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "targets", tuple(sorted(float(t) for t in self.targets)))

    # ---- cost: closed form, before any evaluation ------------------------------
    def cost(self, arch: Arch) -> tuple[int, int]:
        """(MACs, params) of `arch`."""
        return child_cost(self.space, arch)

    def cost_excess(self, arch: Arch, max_macs: float | None = None) -> float:
        """Relative excess over the MACs/params caps (0 when within); `max_macs` tightens."""
        m, p = self.cost(arch)
        c = self.constraints
        caps = [cap for cap in (c.max_macs, max_macs) if cap is not None]
        excess = 0.0
        if caps:
            excess += max(0.0, m / min(caps) - 1)
        if c.max_params is not None:
            excess += max(0.0, p / c.max_params - 1)
        if c.max_latency is not None and self.latency_fn is not None:
            excess += max(0.0, self.latency_fn(arch) / c.max_latency - 1)
        return excess

    def within_cost(self, arch: Arch, max_macs: float | None = None) -> bool:
        """Whether `arch` meets the cost constraints (and `max_macs`, e.g. a target); pure,
        nothing is counted (`Session.screen` is the check that counts a rejection)."""
        return self.cost_excess(arch, max_macs) == 0.0

    def check_satisfiable(self) -> None:
        """ValueError if no child can meet the cost constraints: the smallest child fails."""
        smallest = self.space.min_arch()  # every gene at its cheapest choice
        if not self.within_cost(smallest):
            m, p = self.cost(smallest)
            lat = ("" if self.latency_fn is None
                   else f" and {self.latency_fn(smallest):.3g} ms in the latency table")
            raise ValueError(
                f"constraints: no child of space {self.space.name!r} can meet them; its "
                f"smallest child has {format_count(m)} MACs and {format_count(p)} params"
                f"{lat}")

    @property
    def needs_latency(self) -> bool:
        """Whether an objective or a constraint is latency: rows need `latency_ms`."""
        return "latency" in self.objectives or self.constraints.max_latency is not None

    # ---- rows -> feasibility, objectives, constraints ---------------------------
    def feasible(self, table: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """Rows meeting every constraint (rows not evaluated are infeasible)."""
        c = self.constraints
        top1 = table["top1"].to_numpy(float)
        ok: npt.NDArray[np.bool_] = np.isfinite(top1)
        if c.max_macs is not None:
            ok &= table["macs"].to_numpy(float) <= c.max_macs
        if c.max_params is not None:
            ok &= table["params"].to_numpy(float) <= c.max_params
        if c.min_acc is not None:
            ok &= top1 >= c.min_acc
        if c.max_latency is not None:
            ok &= table["latency_ms"].to_numpy(float) <= c.max_latency
        return ok

    def objective_matrix(self, table: pd.DataFrame) -> npt.NDArray[np.float64]:
        """pymoo's F: one column per objective, all minimised (top-1 negated; NaN -> 0)."""
        cols: list[npt.NDArray[np.float64]] = []
        for name in self.objectives:
            col, sign = OBJECTIVES[name]
            v = np.nan_to_num(table[col].to_numpy(float), nan=0.0 if sign > 0 else np.inf)
            cols.append(-v if sign > 0 else v)
        return np.column_stack(cols)

    def normalized_objectives(self, table: pd.DataFrame) -> npt.NDArray[np.float64]:
        """F for the hypervolume, the reference point all ones: in `hv_frame` when set;
        else in a fixed fallback frame (1 - top1, MACs and params over the largest child's,
        latency over `latency_ref_ms`)."""
        if self.hv_frame is not None:
            return self.hv_frame.normalize(table)
        big_macs, big_params = self.cost(self.space.max_arch())
        scale = {"top1": 1.0, "macs": big_macs, "params": big_params,
                 "latency": self.latency_ref_ms or 1.0}
        cols: list[npt.NDArray[np.float64]] = []
        for name in self.objectives:
            col, sign = OBJECTIVES[name]
            v = table[col].to_numpy(float)
            cols.append(1.0 - v if sign > 0 else v / scale[name])
        return np.column_stack(cols)

    def constraint_matrix(self, table: pd.DataFrame) -> npt.NDArray[np.float64] | None:
        """pymoo's G (feasible when <= 0), cost first: a cost violation is 1 + its relative
        excess, so it always outweighs an accuracy or latency violation (each below 1)."""
        c = self.constraints
        cols: list[npt.NDArray[np.float64]] = []
        if c.max_macs is not None or c.max_params is not None:
            excess = np.zeros(len(table))
            if c.max_macs is not None:
                excess += np.maximum(0, table["macs"].to_numpy(float) / c.max_macs - 1)
            if c.max_params is not None:
                excess += np.maximum(0, table["params"].to_numpy(float) / c.max_params - 1)
            cols.append(np.where(excess > 0, 1 + excess, -1.0))
        top1 = table["top1"].to_numpy(float)
        if c.min_acc is not None:
            # an unevaluated (cost-rejected) child counts as top-1 0
            cols.append((c.min_acc - np.nan_to_num(top1, nan=0.0)) / c.min_acc * 0.999)
        if c.max_latency is not None:
            lat = table["latency_ms"].to_numpy(float)
            cols.append(np.nan_to_num(np.minimum(lat / c.max_latency - 1, 0.999), nan=0.0))
        return np.column_stack(cols) if cols else None

    @property
    def n_constraints(self) -> int:
        """Columns of pymoo's G: one for MACs and params together, one each for top-1 and
        latency."""
        c = self.constraints
        return (int(c.max_macs is not None or c.max_params is not None)
                + int(c.min_acc is not None) + int(c.max_latency is not None))

    def to_dict(self) -> dict[str, Any]:
        """The problem as a plain dict (the space by name), for summary.json."""
        return {"space": self.space.name, "objectives": list(self.objectives),
                "weights": list(self.weights), "constraints": self.constraints.to_dict(),
                "targets": list(self.targets), "latency_ref_ms": self.latency_ref_ms,
                "hv_frame": None if self.hv_frame is None else self.hv_frame.to_dict()}


# ---- the hypervolume frame of a run ------------------------------------------------------
def with_latency_ref(problem: SearchProblem, evaluator: Evaluator,
                     saved: dict[str, Any]) -> SearchProblem:
    """The problem with the largest child's latency as the hypervolume's latency scale
    (measured once and saved in the run's settings `saved`, so a resumed run keeps the
    same frame)."""
    ref = saved.get("latency_ref_ms")
    if ref is None and problem.latency_fn is not None:
        ref = problem.latency_fn(problem.space.max_arch())
    if ref is None:
        if not hasattr(evaluator, "latency_ms"):  # SupernetEvaluator's
            raise ValueError("objectives: latency needs an evaluator that measures it")
        ref = evaluator.latency_ms(problem.space.max_arch())
    return replace(problem, latency_ref_ms=float(ref))


def with_hv_frame(problem: SearchProblem, evaluator: Evaluator,
                  saved: dict[str, Any]) -> tuple[SearchProblem, pd.DataFrame | None]:
    """The problem with its hypervolume frame, and the evaluator's rows it was built from:
    the saved frame on resume (no rows), else ideal and nadir of the smallest and largest
    child under this evaluator, so every run on the same evaluator shares one frame. The
    two evaluations are not in the budget until the strategy asks for those children."""
    if saved.get("hv_frame"):
        return replace(problem, hv_frame=HVFrame.from_dict(saved["hv_frame"])), None
    space = problem.space
    archs = list(dict.fromkeys([space.min_arch(), space.max_arch()]))
    rows = evaluator.evaluate(archs).reset_index(drop=True)
    answers = rows.copy()
    cost = [problem.cost(a) for a in archs]
    rows["macs"], rows["params"] = [c[0] for c in cost], [c[1] for c in cost]
    if "latency" in problem.objectives and "latency_ms" not in rows:
        if problem.latency_fn is not None:
            latency = problem.latency_fn
        elif hasattr(evaluator, "latency_ms"):
            latency = evaluator.latency_ms
        else:  # `with_latency_ref` says so first
            raise ValueError("objectives: latency needs an evaluator that measures it")
        rows["latency_ms"] = [latency(a) for a in archs]
    frame = HVFrame.from_rows(problem.objectives, rows,
                              f"smallest and largest child under {evaluator.name}")
    return replace(problem, hv_frame=frame), answers
