"""The figures of finished runs, decided once: which points each run contributes (its
front, its feasible children, its infeasible ones greyed), their colours and labels
(`Series`), and the interactive plotly figures built from them. The matplotlib PNGs
(`plots`) and the notebook's static figures (`notebook`) draw the same `Series`, so the
notebook, the HTML report and the PNGs never disagree.

Tables here are results.csv rows with a `run` column (one label per run, in the order the
runs were loaded; `nas_search.report.read_runs` builds them); a table without one is a
single run.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .units import format_count

if TYPE_CHECKING:
    import plotly.graph_objects as go

# matplotlib's default colours (C0..C9) without its grey, which marks infeasible children
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#393b79")
INFEASIBLE = "#a0a0a0"
MACS_AXIS, TOP1_AXIS = "MACs (millions)", "top-1 accuracy (%)"
EVALUATIONS_AXIS = "evaluations"
HV_AXIS = "hypervolume (shared frame: ideal 0, nadir 1)"
FRONT, FEASIBLE, INFEASIBLE_KIND, HYPERVOLUME = "front", "feasible", "infeasible", "hypervolume"


@dataclass(frozen=True)
class Series:
    """One set of points exactly as every renderer draws it; `rows` are the table rows
    behind the points, in the same order (for hover text)."""

    run: str
    kind: str  # FRONT, FEASIBLE, INFEASIBLE_KIND or HYPERVOLUME
    label: str
    colour: str
    x: np.ndarray
    y: np.ndarray
    rows: pd.DataFrame


def colour(i: int) -> str:
    """The colour of the i-th run (cycling after ten runs)."""
    return PALETTE[i % len(PALETTE)]


def by_run(table: pd.DataFrame) -> Iterator[tuple[int, str, pd.DataFrame]]:
    """(index, label, rows) of each run in the order the runs were loaded; a table without
    a `run` column is one run labelled ''."""
    if "run" not in table:
        table = table.assign(run="")
    for i, (label, rows) in enumerate(table.groupby("run", sort=False)):
        yield i, str(label), rows


def _label(run: str, what: str) -> str:
    return f"{run}: {what}" if run else what


def front_series(children: pd.DataFrame) -> list[Series]:
    """Each run's Pareto front (its `pareto` rows), top-1 (%) against MACs (M), by MACs."""
    out = []
    for i, run, rows in by_run(children):
        f = rows[rows["pareto"].astype(bool)].sort_values("macs", kind="stable")
        out.append(Series(run, FRONT, _label(run, f"{len(f)} on the front"), colour(i),
                          f["macs"].to_numpy(float) / 1e6, f["top1"].to_numpy(float) * 100,
                          f))
    return out


def children_series(children: pd.DataFrame) -> list[Series]:
    """Every evaluated child once: per run its feasible children in the run's colour and
    its infeasible ones (over a constraint) in grey, where it has any."""
    out = []
    for i, run, rows in by_run(children):
        ok = rows["feasible"].astype(bool)
        for kind, part, c, label in ((FEASIBLE, rows[ok], colour(i),
                                      _label(run, f"{len(rows)} children")),
                                     (INFEASIBLE_KIND, rows[~ok], INFEASIBLE,
                                      _label(run, "infeasible"))):
            if kind == FEASIBLE or len(part):
                out.append(Series(run, kind, label, c, part["macs"].to_numpy(float) / 1e6,
                                  part["top1"].to_numpy(float) * 100, part))
    return out


def hypervolume_series(history: pd.DataFrame) -> list[Series]:
    """Each run's hypervolume against evaluations spent (`report.Runs.history` rows)."""
    return [Series(run, HYPERVOLUME, run, colour(i), rows["evaluations"].to_numpy(float),
                   rows["hypervolume"].to_numpy(float), rows)
            for i, run, rows in by_run(history)]


# ---- plotly -----------------------------------------------------------------------------
HOVER = ("<b>%{customdata[0]}</b><br>top-1 %{y:.2f}%<br>MACs %{customdata[1]}<br>"
         "params %{customdata[2]}<br>latency %{customdata[3]}")


def hover_data(rows: pd.DataFrame) -> np.ndarray:
    """Per point: arch string, MACs, params and latency as the hover text shows them."""
    lat = rows["latency_ms"] if "latency_ms" in rows else pd.Series(np.nan, index=rows.index)
    return np.array([[a, format_count(m), format_count(p),
                      "n/a" if pd.isna(t) else f"{t:.3g} ms"]
                     for a, m, p, t in zip(rows["arch"], rows["macs"], rows["params"], lat)],
                    dtype=object).reshape(len(rows), 4)


def _layout(title: str, xaxis: str, yaxis: str) -> dict[str, Any]:
    return {"title": {"text": title}, "xaxis": {"title": {"text": xaxis}},
            "yaxis": {"title": {"text": yaxis}}, "template": "plotly_white",
            "hovermode": "closest", "height": 560, "legend": {"font": {"size": 11}}}


def fronts_figure(children: pd.DataFrame, title: str = "Pareto fronts") -> go.Figure:
    """Interactive top-1 against MACs: per run its children (infeasible ones greyed) and
    exactly one front trace (`meta.kind == "front"`), drawn last so it is on top and the
    run's one legend entry (a click hides the whole run); the hover shows the arch string,
    top-1, MACs, params and latency."""
    import plotly.graph_objects as go

    traces = []
    for s in children_series(children) + front_series(children):
        front = s.kind == FRONT
        traces.append(go.Scatter(
            x=s.x, y=s.y, name=s.label, legendgroup=s.run, showlegend=front,
            mode="lines+markers" if front else "markers",
            line={"color": s.colour, "width": 2} if front else None,
            marker={"color": s.colour, "size": 8 if front else 6,
                    "symbol": "x" if s.kind == INFEASIBLE_KIND else "circle",
                    "opacity": 1.0 if front else 0.45},
            customdata=hover_data(s.rows), meta={"kind": s.kind, "run": s.run},
            hovertemplate=HOVER + f"<extra>{html.escape(s.run)}</extra>"))
    return go.Figure(traces, _layout(title, MACS_AXIS, TOP1_AXIS))


def hypervolume_figure(history: pd.DataFrame, frame: str = "") -> go.Figure:
    """Interactive hypervolume against evaluations, one line per run, in the shared frame
    (described by `frame`)."""
    import plotly.graph_objects as go

    traces = [go.Scatter(x=s.x, y=s.y, name=s.label, mode="lines+markers",
                         line={"color": s.colour}, marker={"size": 4},
                         meta={"kind": s.kind, "run": s.run},
                         hovertemplate="%{x} evaluations<br>hypervolume %{y:.4f}"
                                       f"<extra>{html.escape(s.run)}</extra>")
              for s in hypervolume_series(history)]
    title = "Hypervolume against evaluations" + (f"<br><sup>frame: {html.escape(frame)}</sup>"
                                                 if frame else "")
    return go.Figure(traces, _layout(title, EVALUATIONS_AXIS, HV_AXIS))
