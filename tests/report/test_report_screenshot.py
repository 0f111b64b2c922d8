"""The README's picture of the report: the small real run's page in headless Chromium, above the fold.

``make screenshot`` refreshes the committed ``docs/img/report.png`` (``RUNNER_SCREENSHOT_OUT``);
otherwise the test takes it into tmp and checks it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import require
from tests.report.chromium import Chromium, find_chromium

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "img" / "report.png"
WIDTH, HEIGHT = 1400, 900


def take_screenshot(html: Path, out: Path, profile: Path) -> dict:
    """Screenshot the top of the report page into ``out``; return where its key elements sit."""
    binary = find_chromium()
    require(binary is not None, "chromium (Debian package `chromium`)")
    with Chromium(binary, profile, width=WIDTH, height=HEIGHT) as browser:
        seen = browser.load(html.resolve().as_uri())
        assert seen.console_errors == []
        boxes = browser.evaluate("""Object.fromEntries(['h1', '#plot-pareto svg', '#glance .cards'].map(sel => {
            const el = document.querySelector(sel); const b = el ? el.getBoundingClientRect() : null;
            return [sel, b ? [Math.round(b.top), Math.round(b.bottom), Math.round(b.width)] : null];
        }))""")
        browser.screenshot(out, full_page=False)
    return boxes


def test_report_screenshot_shows_the_title_and_the_trade_off_chart(small_run, tmp_path):
    out = Path(os.environ.get("RUNNER_SCREENSHOT_OUT") or tmp_path / "report.png")
    boxes = take_screenshot(small_run.paths.html, out, tmp_path / "profile")
    # the title and the trade-off chart are inside the picture, the chart at a readable width
    assert boxes["h1"] is not None and 0 <= boxes["h1"][0] < boxes["h1"][1] <= HEIGHT
    top, _, width = boxes["#plot-pareto svg"]
    assert 0 < top < HEIGHT // 2 and width > 600, boxes
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
        grey = image.convert("L")
        # not a blank page: a fair share of ink, and many shades (text, axes, points)
        dark = sum(grey.histogram()[:200])
        assert dark > 0.02 * WIDTH * HEIGHT, dark
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_committed_screenshot_is_a_report_picture():
    # the committed picture the README shows: present, a PNG of the same size as the test takes
    assert COMMITTED.is_file(), "run `make screenshot` to take docs/img/report.png"
    with Image.open(COMMITTED) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
