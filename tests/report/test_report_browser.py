"""The page in a real headless Chromium, from disk: no console error, no request leaves the file, every chart drawn."""

from __future__ import annotations

from runner.report import render
from tests.conftest import require
from tests.report.chromium import Chromium, find_chromium


def test_report_opens_offline_in_chromium_with_every_chart(two_machine_runs, tmp_path):
    binary = find_chromium()
    require(binary is not None, "chromium (Debian package `chromium`)")
    paths = render(two_machine_runs, tmp_path / "report")
    url = paths.html.resolve().as_uri()
    with Chromium(binary, tmp_path / "profile") as browser:
        seen = browser.load(url)
        assert seen.console_errors == []
        # the page itself, and the images matplotlib embeds in its SVG as data: URLs; nothing else
        assert seen.requests[0] == url
        assert all(r == url or r.startswith("data:") for r in seen.requests), seen.requests
        charts = browser.evaluate("""[...document.querySelectorAll('figure.plot')].map(f => {
            const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : null;
            return [f.dataset.plot, box ? Math.round(box.width) : 0, box ? Math.round(box.height) : 0];
        })""")
        assert sorted(name for name, _, _ in charts) == ["categories", "latency-cdf", "pareto", "throughput",
                                                         "underload-llama3-70b"]
        assert all(width > 600 and height > 200 for _, width, height in charts), charts
        # the trade-off chart is the first thing on the page, above the fold
        top = browser.evaluate("document.querySelector('#plot-pareto').getBoundingClientRect().top")
        assert top < 400
        # drill-down collapsed by default; every section the brief names is there
        assert browser.evaluate("[...document.querySelectorAll('details')].every(d => !d.open)")
        sections = browser.evaluate("[...document.querySelectorAll('section')].map(s => s.id)")
        # a starter run: no published tables, no SimCoPilot-only section
        assert sections == ["glance", "headline", "environment", "judging", "timing", "techniques", "quantization",
                            "noise", "underload", "cascades", "hardware", "charts", "failures", "definitions",
                            "provenance", "tasks"]
        # accuracy under load: a row per judged point (three cells, five points each), the chart drawn
        assert browser.evaluate("document.querySelectorAll('#underload table.underload-table tbody tr').length") == 15
        assert browser.evaluate("document.querySelector('#plot-underload-llama3-70b svg').getBoundingClientRect()"
                                ".height") > 300
        # ... and its last column, pass-goodput, in view at 1,400 px without scrolling the table
        assert browser.evaluate("""(() => {
            const table = document.querySelector('#underload table.underload-table');
            const frame = table.parentElement.getBoundingClientRect();
            return [...table.querySelectorAll('td.pass-goodput')].every(td => td.getBoundingClientRect().right <= frame.right);
        })()""")
        # at 1,400 px every cell's pass rates and e2e latency are in view, no horizontal scrolling
        assert browser.evaluate("window.innerWidth") == 1400
        seen = browser.evaluate("""(() => {
            const table = document.querySelector('#headline-table');
            const frame = table.parentElement.getBoundingClientRect();
            const right = Math.min(frame.right, window.innerWidth);
            return [...table.querySelectorAll('tbody tr')].map(tr => {
                const wanted = [...tr.querySelectorAll('td.split, td.cell-total, td.e2e')];
                const hidden = wanted.filter(td => { const r = td.getBoundingClientRect();
                                                     return r.left < frame.left || r.right > right; });
                return [tr.cells[0].innerText.split('\\n')[0], wanted.length, hidden.length,
                        Math.round(Math.max(...wanted.map(td => td.getBoundingClientRect().right))), Math.round(right)];
            });
        })()""")
        assert len(seen) == 6 and all(n == 6 and hidden == 0 for _, n, hidden, _, _ in seen), seen
        assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot = browser.screenshot(tmp_path / "report.png")
    assert shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
