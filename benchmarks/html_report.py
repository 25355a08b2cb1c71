"""How long `nas-search report --html` takes, and how large the page is, printed (not a timed
test): N fabricated runs of M children each (real `nas-search` run folders whose children
the deterministic oracle scores, so no supernet is needed), the report written R times.

    python benchmarks/html_report.py [--runs 10] [--children 1000] [--space attentive-mbv3]
        [--root runs/bench/html-report] [--repeats 3] [--screenshot docs/img/report.png]

The run folders are made once under --root and reused. With playwright and Chromium
(Debian's, /usr/bin/chromium) it also times the page in headless Chromium until both plots
are drawn, and with --screenshot saves the top of the page with a front point hovered.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from plotly.offline import get_plotlyjs

from nas_search import SearchConfig, run_search
from nas_search.html_report import write_report
from nas_search.report import read_runs
from nas_search.results import SUMMARY
from nas_search.testing import OracleEvaluator
from supernet.spaces.space import load_space

STRATEGIES = ("nsga2", "random")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def fabricate(root: Path, runs: int, children: int, space: str) -> list[Path]:
    """`runs` finished searches of `children` evaluations each (alternately NSGA-II with an
    accuracy floor, so some children are infeasible, and random), reused when present."""
    evaluator = OracleEvaluator(load_space(space), noise=0.08)
    dirs = []
    for i in range(runs):
        strategy = STRATEGIES[i % len(STRATEGIES)]
        out = root / f"{strategy}-seed{i}"
        if not (out / SUMMARY).is_file():
            extra = {"min_acc": 0.7} if strategy == "nsga2" else {}
            run_search(SearchConfig(strategy=strategy, out=str(out), budget=children, seed=i,
                                    space=space, **extra), evaluator=evaluator)
        dirs.append(out)
    return dirs


def browse(page_path: Path, screenshot: Path | None) -> float | None:
    """Seconds until Chromium has drawn both plots (None without playwright or Chromium);
    saves the top of the page with a front point hovered to `screenshot`."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        start = time.perf_counter()
        page.goto(page_path.resolve().as_uri())
        page.wait_for_selector("#fronts .scatterlayer .trace")
        page.wait_for_selector("#hypervolume .scatterlayer .trace")
        seconds = time.perf_counter() - start
        if screenshot is not None:
            page.locator("h2", has_text="Pareto fronts").scroll_into_view_if_needed()
            page.evaluate("() => window.scrollBy(0, -40)")
            x, y = page.evaluate("""() => {
                const gd = document.getElementById('fronts'), L = gd._fullLayout;
                const t = gd._fullData.filter(t => t.meta.kind === 'front')[0];
                const k = Math.floor(t.x.length * 0.35), r = gd.getBoundingClientRect();
                return [r.left + L.xaxis._offset + L.xaxis.d2p(t.x[k]),
                        r.top + L.yaxis._offset + L.yaxis.d2p(t.y[k])];
            }""")
            page.mouse.move(x, y)
            page.wait_for_selector("#fronts .hoverlayer .hovertext")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        browser.close()
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--children", type=int, default=1000)
    p.add_argument("--space", default="attentive-mbv3")
    p.add_argument("--root", type=Path, default=Path("runs/bench/html-report"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--screenshot", type=Path)
    a = p.parse_args(argv)
    t = time.perf_counter()
    dirs = fabricate(a.root / f"{a.space}-{a.runs}x{a.children}", a.runs, a.children, a.space)
    print(f"{a.runs} runs of {a.children} children ({a.space}): ready in "
          f"{time.perf_counter() - t:.1f} s")
    page = a.root / f"report-{a.space}-{a.runs}x{a.children}.html"
    reads, totals = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        runs = read_runs(dirs)
        _ = runs.children, runs.history  # read and recomputed in the shared frame
        reads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        write_report(dirs, page)  # reads again, builds the figures and tables, writes
        totals.append(time.perf_counter() - t0)
    size, bundle = page.stat().st_size, len(get_plotlyjs().encode())
    rows = len(runs.children)
    print(f"report of {rows} children: {statistics.median(totals):.2f} s (median of "
          f"{a.repeats}; reading the runs and the hypervolume histories "
          f"{statistics.median(reads):.2f} s of it), {size / 2**20:.1f} MiB: plotly.js "
          f"{bundle / 2**20:.1f} MiB, {(size - bundle) / rows:.0f} bytes per child")
    seconds = browse(page, a.screenshot)
    if seconds is None:
        print("headless Chromium: not timed (no playwright or no chromium)")
    else:
        print(f"headless Chromium: both plots drawn {seconds:.2f} s after opening the page")
    if a.screenshot is not None and seconds is not None:
        print(f"screenshot: {a.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
