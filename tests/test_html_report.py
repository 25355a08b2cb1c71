"""The HTML report (`nas-search report RUN... --html`, report.html in a run folder): its
content without a browser (one front trace per run, greyed infeasible children, hover data,
front tables with working nas-export commands, settings, offline), the same series in the
PNG and HTML figures, and in headless Chromium: no console error, one front trace per
run drawn, the hover shows the arch string, sorting by top-1 orders the table."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from nas_search import SearchConfig, run_search  # noqa: E402
from nas_search.cli import main  # noqa: E402
from nas_search.export_cli import export_parser  # noqa: E402
from nas_search.figures import (  # noqa: E402
    FRONT,
    INFEASIBLE,
    PALETTE,
    fronts_figure,
    hover_data,
    hypervolume_figure,
)
from nas_search.html_report import REPORT, write_report, write_run_report  # noqa: E402
from nas_search.plots import draw_children, draw_fronts  # noqa: E402
from nas_search.report import read_runs  # noqa: E402
from nas_search.testing import OracleEvaluator  # noqa: E402
from supernet import load_space  # noqa: E402

TINY = load_space("tiny")
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    """Three finished searches of the tiny space scored by the oracle (about a second
    each); the nsga2 one has an accuracy floor, so some of its children are infeasible."""
    root = tmp_path_factory.mktemp("runs")
    settings = [("nsga2", {"pop_size": 10, "min_acc": 0.7}), ("random", {}),
                ("coarse2fine", {})]
    for strategy, extra in settings:
        run_search(SearchConfig(strategy=strategy, out=str(root / strategy), budget=40,
                                seed=0, space="tiny", **extra),
                   evaluator=OracleEvaluator(TINY, noise=0.08))
    return [root / s for s, _ in settings]


@pytest.fixture(scope="module")
def page_file(run_dirs, tmp_path_factory) -> Path:
    return write_report(run_dirs, tmp_path_factory.mktemp("report") / "all.html")


# ---- content, without a browser ---------------------------------------------------------
def test_the_fronts_figure_has_one_front_trace_per_run_and_every_child_once(run_dirs):
    runs = read_runs(run_dirs)
    fig = fronts_figure(runs.children)
    fronts = [t for t in fig.data if t.meta["kind"] == FRONT]
    assert [t.meta["run"] for t in fronts] == runs.labels
    assert [t.line.color for t in fronts] == list(PALETTE[:3])  # one colour per run
    for t, table in zip(fronts, runs.tables):
        f = table[table["pareto"]].sort_values("macs", kind="stable")
        np.testing.assert_allclose(t.x, f["macs"] / 1e6)
        np.testing.assert_allclose(t.y, f["top1"] * 100)
        assert [c[0] for c in t.customdata] == list(f["arch"])
    others = [t for t in fig.data if t.meta["kind"] != FRONT]
    assert sum(len(t.x) for t in others) == len(runs.children)
    grey = [t for t in others if t.meta["kind"] == "infeasible"]
    assert len(grey) == 1 and grey[0].marker.color == INFEASIBLE
    assert len(grey[0].x) == (~runs.children["feasible"]).sum() > 0
    assert "%{customdata[0]}" in fronts[0].hovertemplate  # the arch string first


def test_hover_data_formats_macs_params_and_latency():
    rows = pd.DataFrame({"arch": ["a", "b"], "macs": [3.2e6, 1e9], "params": [2.5e5, 4e6],
                         "latency_ms": [1.234, np.nan]})
    assert hover_data(rows).tolist() == [["a", "3.2M", "250k", "1.23 ms"],
                                         ["b", "1G", "4M", "n/a"]]
    assert hover_data(rows.drop(columns="latency_ms"))[0, 3] == "n/a"


def test_the_png_and_html_figures_draw_the_same_series(run_dirs):
    runs = read_runs(run_dirs)
    fig = fronts_figure(runs.children)
    ax = plt.subplots()[1]
    draw_fronts(ax, runs.children)
    for line, trace in zip(ax.lines, [t for t in fig.data if t.meta["kind"] == FRONT]):
        assert line.get_label() == trace.name and to_hex(line.get_color()) == trace.line.color
        np.testing.assert_allclose(line.get_xdata(), trace.x)
        np.testing.assert_allclose(line.get_ydata(), trace.y)
    ax = plt.subplots()[1]
    draw_children(ax, runs.children)
    children = [t for t in fig.data if t.meta["kind"] != FRONT]
    assert [c.get_label() for c in ax.collections] == [t.name for t in children]
    for c, t in zip(ax.collections, children):
        np.testing.assert_allclose(c.get_offsets(), np.column_stack([t.x, t.y]))
        assert to_hex(c.get_facecolor()[0], keep_alpha=False) == t.marker.color
    hv = hypervolume_figure(runs.history, runs.frame.source)
    assert [t.line.color for t in hv.data] == list(PALETTE[:3])
    plt.close("all")


def test_the_page_is_self_contained_and_holds_tables_commands_and_settings(run_dirs,
                                                                            page_file):
    text = page_file.read_text(encoding="utf-8")
    assert "<script src" not in text and "<link" not in text  # plotly.js inlined: offline
    assert len(text) > 3e6  # the bundle is there
    runs = read_runs(run_dirs)
    for i, (run, table) in enumerate(zip(run_dirs, runs.tables)):
        body = text.split(f'<table class="sortable" id="front-{i}">')[1].split("</table>")[0]
        body = body.split("<tbody>")[1]
        rows = re.findall(r"<tr>(.*?)</tr>", body)
        front = table[table["pareto"]].sort_values("macs", kind="stable")
        assert len(rows) == len(front)
        for row, arch in zip(rows, front["arch"]):
            command = re.findall(r"<td>(nas-export .*?)</td>", row)[0].replace("&#x27;", "'")
            args = export_parser().parse_args(shlex.split(command)[1:])
            assert args.arch == arch and args.supernet == str(run / "supernet" / "supernet.pt")
        assert f"<b>{runs.labels[i]}</b>" in text
    assert "min_acc</td><td>0.7</td>" in text  # the settings of the nsga2 run
    assert "smallest and largest child under oracle" in text  # the shared frame


def test_a_run_folder_gets_its_own_report(run_dirs, tmp_path):
    run = tmp_path / "one"
    shutil.copytree(run_dirs[1], run)
    assert write_run_report(run) == run / REPORT
    text = (run / REPORT).read_text(encoding="utf-8")
    assert "nas-search report: one (random, seed 0)" in text and 'id="front-0"' in text
    assert not list(run.glob(f".{REPORT}.*"))  # written through a temporary file


def test_the_report_command_writes_html_and_or_png(run_dirs, tmp_path, capsys):
    page = tmp_path / "cmp.html"
    assert main(["report", *map(str, run_dirs), "--html", str(page)]) == 0
    assert page.is_file() and not (Path.cwd() / "report.png").exists()
    assert f"wrote {page}" in capsys.readouterr().out
    png = tmp_path / "cmp.png"
    assert main(["report", str(run_dirs[0]), "--html", str(page), "--png", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "nothing"), "--html", str(page)]) == 2


# ---- in a real browser ----------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by playwright (which cannot fetch its own here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def loaded(browser, page_file):
    """The report loaded with every request but the file itself refused (offline)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    errors, remote = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def offline(route):
        if not route.request.url.startswith("file://"):
            remote.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.route("**/*", offline)
    page.goto(page_file.as_uri())
    page.wait_for_selector("#fronts .scatterlayer .trace")
    page.wait_for_selector("#hypervolume .scatterlayer .trace")
    yield SimpleNamespace(page=page, errors=errors, remote=remote)
    page.close()


def test_the_report_loads_offline_without_console_errors(loaded):
    assert loaded.errors == [] and loaded.remote == []


@pytest.fixture
def page(loaded):
    return loaded.page


def test_the_plot_draws_one_front_trace_per_run(page, run_dirs):
    kinds = page.evaluate("() => document.getElementById('fronts').data"
                          ".map(t => [t.meta.kind, t.meta.run])")
    labels = read_runs(run_dirs).labels
    assert [run for kind, run in kinds if kind == FRONT] == labels
    drawn = page.locator("#fronts .scatterlayer .trace").count()
    assert drawn == len(kinds)  # every trace rendered, fronts among them
    assert page.locator("#hypervolume .scatterlayer .trace").count() == len(labels)


def test_hovering_a_front_point_shows_its_arch_string(page, run_dirs):
    runs = read_runs(run_dirs)
    children = runs.children
    # a front point of the last run that no other child shares (the hover picks the
    # closest point; a tie would be ambiguous)
    j = [i for i, t in enumerate(page.evaluate(
        "() => document.getElementById('fronts').data.map(t => t.meta.kind)")) if t == FRONT][-1]
    front = runs.tables[-1][runs.tables[-1]["pareto"]].sort_values("macs", kind="stable")
    key = list(zip(children["macs"], children["top1"]))
    k = next(k for k, (m, t) in enumerate(zip(front["macs"], front["top1"]))
             if key.count((m, t)) == 1)
    page.locator("#fronts").scroll_into_view_if_needed()
    x, y = page.evaluate("""([j, k]) => {
        const gd = document.getElementById('fronts'), L = gd._fullLayout;
        const r = gd.getBoundingClientRect(), t = gd._fullData[j];
        return [r.left + L.xaxis._offset + L.xaxis.d2p(t.x[k]),
                r.top + L.yaxis._offset + L.yaxis.d2p(t.y[k])];
    }""", [j, k])
    page.mouse.move(x + 1, y + 1)
    page.mouse.move(x, y)
    hover = page.locator("#fronts .hoverlayer .hovertext")
    hover.first.wait_for(timeout=5000)
    text = hover.first.text_content()
    assert front["arch"].iloc[k] in text and "top-1" in text and "MACs" in text


def test_sorting_the_front_table_by_top1_orders_it(page, run_dirs):
    table = page.locator("#front-0")
    top1 = table.locator("th", has_text="top-1")
    col = [h.strip() for h in table.locator("th").all_text_contents()].index("top-1 (%)")

    def column() -> list[float]:
        return [float(v) for v in table.locator(f"tbody tr td:nth-child({col + 1})")
                .all_text_contents()]

    front = read_runs(run_dirs).tables[0]
    expected = sorted(round(100 * v, 2) for v in front.loc[front["pareto"], "top1"])
    assert len(set(expected)) > 2
    table.locator("th", has_text="arch").click()  # along a front top-1 follows MACs: shuffle
    assert column() != expected
    top1.click()
    assert column() == expected and top1.get_attribute("data-order") == "asc"
    top1.click()
    assert column() == expected[::-1] and top1.get_attribute("data-order") == "desc"
