"""One self-contained HTML report of finished runs (`nas-search report RUN... --html`, and
report.html in each run folder): the interactive fronts and hypervolume curves of
`figures` with plotly's JavaScript inlined (works offline, can be mailed), a sortable table
of each front with the `nas-export` command of every child, and the runs' settings."""

from __future__ import annotations

import html
import json
import numbers
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd

from supernet.utils import atomic_write

from .export import run_supernet
from .figures import colour, fronts_figure, hypervolume_figure
from .report import RunDirs, Runs, read_runs
from .units import format_count

REPORT = "report.html"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}

# A cell is its text, or (text, sort key) where the shown text does not sort (e.g. "3.2M").
Cell = Any

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order=asc]::after { content: " \\25B2"; }
table.sortable th[data-order=desc]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; user-select: all; word-break: break-all; }
.swatch { display: inline-block; width: .9em; height: .9em; margin-right: .4em;
          vertical-align: -.1em; border-radius: 2px; }
.note { color: #666; }
"""

# Sort a table by the clicked header: numbers by their data-v key, text as text; a second
# click on the same header reverses the order.
_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.dataset.order !== "asc";
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? "asc" : "desc";
      var key = function (row) {
        var cell = row.cells[col];
        return cell.dataset.v !== undefined ? parseFloat(cell.dataset.v) : cell.textContent;
      };
      var body = table.tBodies[0];
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def export_command(run: Path, summary: dict[str, Any], arch: str, out: str) -> str:
    """The `nas-export` command that writes child `arch` of `run` to `out`, with the run's
    supernet, data and BN calibration (so it reproduces the search's figures)."""
    settings = summary.get("settings", {})
    args = ["nas-export", "--supernet", run_supernet(run), "--arch", arch, "--out", out]
    if settings.get("data"):
        args += ["--data", str(settings["data"])]
    if settings.get("calib_images"):
        args += ["--calib-images", str(settings["calib_images"])]
    return shlex.join(args)


def _cell(value: Cell) -> str:
    text, key = value if isinstance(value, tuple) else (value, None)
    if key is None and isinstance(text, numbers.Real) and not isinstance(text, bool):
        key = text
    if key is None or pd.isna(key):
        return f"<td>{html.escape('' if text is None else str(text))}</td>"
    return f'<td class="num" data-v="{float(key)!r}">{html.escape(str(text))}</td>'


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Cell]],
               sortable: bool = True, table_id: str = "") -> str:
    """An HTML table (headers escaped, cells through `_cell`); sortable by clicking a
    header when `sortable`."""
    attrs = (' class="sortable"' if sortable else "") + (f' id="{table_id}"' if table_id else "")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _front_table(runs: Runs, i: int) -> str:
    run, summary, table = runs.paths[i], runs.summaries[i], runs.tables[i]
    front = table[table["pareto"].astype(bool)].sort_values("macs", kind="stable")
    latency = "latency_ms" in front and front["latency_ms"].notna().any()
    headers = ["#", "arch", "top-1 (%)", "MACs", "params",
               *(["latency (ms)"] if latency else []), "nas-export"]
    rows = []
    # records, not itertuples: pandas-stubs types a named tuple's fields as any scalar
    # (dates, bytes, ...), a record's values as Any; both give Python numbers here
    for k, r in enumerate(front.to_dict("records"), 1):
        rows.append([k, r["arch"], (f"{100 * r['top1']:.2f}", 100 * r["top1"]),
                     (format_count(r["macs"]), r["macs"]),
                     (format_count(r["params"]), r["params"]),
                     *([(f"{r['latency_ms']:.3g}", r["latency_ms"])] if latency else []),
                     export_command(run, summary, r["arch"], f"exports/{run.name}-front-{k}")])
    return html_table(headers, rows, table_id=f"front-{i}")


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _settings(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """What a run was: strategy, evaluator, counts, hypervolume, then every setting."""
    own = {"strategy": summary["strategy"], "seed": summary["seed"],
           "evaluator": summary.get("evaluator", ""),
           "counts": summary.get("counts", {}), "steps": summary.get("steps"),
           "wall time (s)": summary.get("wall_time_s"),
           "front size": summary.get("front_size"),
           "hypervolume (own frame)": summary.get("hypervolume", {}).get("final"),
           "best per target": summary.get("best_per_target", {}),
           "picks": summary.get("picks", [])}
    return [(k, _value(v)) for k, v in {**own, **summary.get("settings", {})}.items()]


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{colour}"></span>'


def render(runs: Runs, title: str) -> str:
    """The report page of `runs` as one HTML string (plotly's JavaScript inlined)."""
    children, history = runs.children, runs.history
    fronts = fronts_figure(children).to_html(
        full_html=False, include_plotlyjs=True, div_id="fronts", config=PLOT_CONFIG)
    hv = hypervolume_figure(history, runs.frame.source).to_html(
        full_html=False, include_plotlyjs=False, div_id="hypervolume", config=PLOT_CONFIG)
    comparison = runs.comparison()
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{len(runs.paths)} run(s), {len(children)} evaluated children. '
        "Hypervolumes are in one frame shared by the runs: "
        f"{html.escape(runs.frame.source)}. Export commands run from the folder nas-search "
        "ran in.</p>",
        "<h2>Runs</h2>",
        html_table(list(comparison.columns), comparison.itertuples(index=False),
                   table_id="runs"),
        "<h2>Pareto fronts</h2>",
        '<p class="note">Hover a point for its arch string, top-1, MACs, params and latency; '
        "click a legend entry to hide it. Infeasible children (over a constraint) are grey "
        "crosses.</p>",
        fronts,
        "<h2>Hypervolume against evaluations</h2>",
        hv,
        "<h2>Front children</h2>",
        '<p class="note">Click a header to sort.</p>',
    ]
    for i, label in enumerate(runs.labels):
        parts += [f"<details open><summary>{_swatch(colour(i))}<b>{html.escape(label)}</b> "
                  f"({html.escape(str(runs.paths[i]))})</summary>",
                  _front_table(runs, i), "</details>"]
    parts.append("<h2>Settings</h2>")
    for i, label in enumerate(runs.labels):
        parts += [f"<details{' open' if len(runs.labels) == 1 else ''}><summary>"
                  f"{_swatch(colour(i))}<b>{html.escape(label)}</b></summary>",
                  html_table(["setting", "value"], _settings(runs.summaries[i]),
                             sortable=False),
                  "</details>"]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body>\n{body}\n<script>{_SORT_JS}</script>\n</body></html>\n")


def write_report(runs: RunDirs | Runs, path: str | Path, title: str | None = None) -> Path:
    """Write the report of `runs` to `path` atomically; returns `path`."""
    runs = runs if isinstance(runs, Runs) else read_runs(runs)
    title = title or (f"nas-search report: {runs.labels[0]}" if len(runs.labels) == 1
                      else f"nas-search report: {len(runs.labels)} runs")
    page = render(runs, title).encode("utf-8")

    def write(f: IO[bytes]) -> None:
        f.write(page)

    atomic_write(path, write, binary=True)
    return Path(path)


def write_run_report(run_dir: str | Path) -> Path:
    """Write `report.html` into the finished run folder `run_dir`; returns its path."""
    return write_report([run_dir], Path(run_dir) / REPORT)
