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
        assert sorted(name for name, _, _ in charts) == ["categories", "latency-cdf", "pareto", "throughput"]
        assert all(width > 600 and height > 200 for _, width, height in charts), charts
        # the trade-off chart is the first thing on the page, above the fold
        top = browser.evaluate("document.querySelector('#plot-pareto').getBoundingClientRect().top")
        assert top < 400
        # drill-down collapsed by default; every section the brief names is there
        assert browser.evaluate("[...document.querySelectorAll('details')].every(d => !d.open)")
        sections = browser.evaluate("[...document.querySelectorAll('section')].map(s => s.id)")
        assert sections == ["glance", "headline", "environment", "judging", "timing", "techniques", "quantization", "reference", "cascades",
                            "hardware", "charts", "failures", "definitions", "provenance", "tasks"]
        shot = browser.screenshot(tmp_path / "report.png")
    assert shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
