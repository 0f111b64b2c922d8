"""The report of a real small run (`small_run`, tests/report/conftest.py): llama.cpp, Gemma 3 270M, judged for real."""

from __future__ import annotations

import json

import pytest

from runner.store import RunStore
from tests.conftest import require
from tests.report.chromium import Chromium, find_chromium

pytestmark = pytest.mark.slow


def test_report_of_a_real_small_run(small_run, tmp_path):
    outcome, paths = small_run.outcome, small_run.paths

    records = json.loads(paths.json.read_text())
    store = RunStore(outcome.run_dir)
    for result in outcome.results:
        judged = [s for s in store.latest_samples(result.cell) if s.phase == "accuracy"]
        rows = [r for r in records if r["cell_id"] == result.cell.id]
        assert {(r["language"], r["mode"]) for r in rows} == {("python", "infill"), ("python", "completion")}
        assert sum(r["tasks"] for r in rows) == len(judged) == 4
        assert sum(r["passed"] for r in rows) == sum(s.outcome.value == "pass" for s in judged)
        # one request at a time with a warm cache, the cold TTFT beside it, the server's reused tokens
        assert all(r["latency_source"] == "latency/warm" and r["e2e_p50_s"] > r["ttft_p50_s"] > 0 for r in rows)
        assert all(r["ttft_cold_p50_s"] > 0 and r["cached_tokens_p50"] is not None for r in rows)
        assert all(r["requests_per_s_c1"] > 0 and r["requests_per_s_c2"] > 0 for r in rows)

    html = paths.html.read_text()
    assert "gemma3-report/llamacpp/q4_k_m/ngram-spec" in html
    technique = html[html.index('<table id="technique-table">'):]
    baseline, spec = (r.cell for r in outcome.results)
    assert baseline.techniques == {"parallel": "2"} and spec.techniques == {"parallel": "2", "spec": "ngram"}
    row = technique[:technique.index("</table>")]
    assert f"<b>{spec.id}</b></td><td class=\"l\">{baseline.id}</td><td>4</td>" in row
    # two timed pairs give a ratio, not a verdict
    assert "too few timed pairs to judge speed (2;" in row
    assert "all 2 cells saw identical prompts" in html
    assert {p.name for p in paths.plots} == {"pareto.png", "latency-cdf.png", "categories.png", "throughput.png",
                                             "underload-gemma3-report.png"}
    # the sweep judged what it generated: each cell's points, with their changes against the accuracy phase
    points = json.loads(paths.load_points_json.read_text())
    assert sorted((r["cell_id"], r["load"]) for r in points) == sorted(
        (result.cell.id, load) for result in outcome.results for load in ("c1", "c2"))
    for point in points:
        sweep = [s for s in store.latest_samples(next(r.cell for r in outcome.results if r.cell.id == point["cell_id"]))
                 if s.phase == "sweep" and s.load == point["load"]]
        assert point["requests"] == len(sweep) == 2 and point["paired"] <= 2
        assert point["passed"] == sum(s.outcome is not None and s.outcome.value == "pass" for s in sweep)
        assert f"answers changed: {point['answers_changed']} of {point['paired']}" in point["changes_words"]
    assert 'id="underload"' in html and 'id="plot-underload-gemma3-report"' in html

    binary = find_chromium()
    require(binary is not None, "chromium (Debian package `chromium`)")
    with Chromium(binary, tmp_path / "profile") as browser:
        seen = browser.load(paths.html.resolve().as_uri())
        assert seen.console_errors == []
        assert all(r.startswith(("file:", "data:")) for r in seen.requests)
        browser.screenshot(tmp_path / "demo-report.png")
