"""Every verdict no stronger than its test, in one vocabulary, in every output: the demo's shape
(F16 9/32, Q4_K_M 10/32, Q3_K_M 6/32, Q2_K 7/32; a KV-cache technique twice as slow that changed one
answer where repetition alone changed none of 12), built sample by sample."""

from __future__ import annotations

import csv
import json
import random
import re
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from runner.cli import main
from runner.measuring.noise import REPEAT
from runner.records import Cell
from runner.report import render
from runner.report.comparison_table import SCHEMA_VERSION, ComparisonRecord, schema_markdown
from runner.store import CellResult, Manifest, RunStore
from tests.report.conftest import T0
from tests.report.test_report_ladder import CPU, sample

MODEL = "qwen2.5-coder-0.5b"
#: per rung, the tasks (of 32) it passes: Q4_K_M gains one, Q3_K_M loses 3 (McNemar p = 0.25), Q2_K loses
#: 3 and gains 1 (p = 0.625)
PASSES = {"f16": set(range(9)), "q4_k_m": set(range(10)), "q3_k_m": set(range(3, 9)),
          "q2_k": set(range(3, 9)) | {20}}
KV = Cell(model=MODEL, runtime="llamacpp", quantization="f16", prompt_style="qwen-fim",
          techniques={"kv_cache": "q8_0"}, label="kv-q8_0")
ROOT = Path(__file__).resolve().parents[2]


def demo_run(root: Path) -> RunStore:
    from runner.benchmarks import load_benchmark

    tasks = [t.id for t in load_benchmark("starter").available()][:32]
    rungs = [Cell(model=MODEL, runtime="llamacpp", quantization=q, prompt_style="qwen-fim", label="baseline")
             for q in PASSES]
    store = RunStore(root / "demo")
    store.write_manifest(Manifest(name="demo", matrix={"name": "demo", "benchmark": "starter"}, cells=[*rungs, KV],
                                  fingerprint=CPU, started_at=T0, finished_at=T0 + timedelta(minutes=20)))
    rng = random.Random(7)
    for cell in [*rungs, KV]:
        passes = PASSES[cell.quantization]
        for i, task in enumerate(tasks):
            s = sample(cell, task, "accuracy", rng, passed=i in passes, e2e=1.0)
            if cell == KV and i == 31:  # the one answer the technique changed (still a failure)
                s = s.model_copy(update={"raw_text": "x = 2"})
            elif cell.quantization != "f16":  # fewer bits: every answer's text moves
                s = s.model_copy(update={"raw_text": f"x = 1  # {cell.quantization}"})
            store.append_sample(cell, s)
        for task in tasks[:8] if cell.quantization == "f16" else []:
            for state in ("cold", "warm"):
                slow = 2.2 if cell == KV else 1.0
                store.append_sample(cell, sample(cell, task, "latency", rng, state=state,
                                                 e2e=slow * rng.uniform(0.95, 1.05)))
        if cell == rungs[0]:  # the baseline asked again: no answer changed
            for task in tasks[:12]:
                again = sample(cell, task, "accuracy", rng, passed=tasks.index(task) in passes, e2e=1.0)
                store.append_sample(cell, again.model_copy(update={"phase": REPEAT}))
        store.write_cell(CellResult(cell=cell, status="done", backend="local", load_seconds=3.0))
    return store


def test_the_demos_verdicts_say_only_what_32_tasks_support(tmp_path):
    store = demo_run(tmp_path / "runs")
    paths = render([store.root], tmp_path / "report")
    html = paths.html.read_text()

    # the quantization card: the baseline's own name, no colour a test does not back
    card = re.search(r'<div class="card" id="card-quantization">.*?</div></div>', html, re.S).group(0)
    assert "Quantization vs f16 (MLPerf 99%)" in card and "BF16" not in card
    assert 'badge verdict answers neutral">answers: not distinguishable with 32 tasks (McNemar p = 0.25)' in card
    assert "McNemar p = 0.62)" in card and "retained 111.1%" in card
    assert " ok\"" not in card and " bad\"" not in card and "kept" not in card
    quantization = html[html.index('id="quantization-table"'):]
    quantization = quantization[:quantization.index("</table>")]
    assert "MLPerf 99% target not decided with 32 tasks (retained 66.7% [" in quantization
    assert "below MLPerf" not in html and 'class="badge ok">yes' not in quantization

    # "most accurate": a one-task lead inside overlapping intervals is a tie, never a crown
    accurate = re.search(r'<div class="card" id="card-accurate">.*?</div></div>', html, re.S).group(0)
    assert "tie: " in accurate and f"{MODEL}/llamacpp/q4_k_m/baseline" in accurate and "/f16/baseline" in accurate

    # the technique: two verdicts, the speed with its interval, the answers beside the noise floor
    technique = html[html.index('id="technique-table"'):]
    technique = technique[:technique.index("</table>")]
    speed = re.search(r'badge verdict speed bad">slower ×(\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\] \(warm cache\)<',
                      technique)
    assert speed and 1 < float(speed.group(2)) <= float(speed.group(1)) <= float(speed.group(3))
    assert 'badge verdict answers neutral">answers: no change beyond the noise floor (+0.0 points' in technique
    speed_badge = re.search(r'badge verdict speed [a-z]+">([^<]*)<', technique).group(1)
    assert "noise" not in speed_badge  # the floor is about the answers, never the speed

    # the comparisons table: the same verdicts, machine-readable, in CSV and JSON alike
    records = json.loads(paths.comparisons_json.read_text())
    with open(paths.comparisons_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(ComparisonRecord.model_fields) == list(records[0])
    assert [r["cell_id"] for r in rows] == [r["cell_id"] for r in records] == [
        KV.id, *(f"{MODEL}/llamacpp/{q}/baseline" for q in ("q4_k_m", "q3_k_m", "q2_k"))]
    by_quant = {r["quantization"]: r for r in records if r["kind"] == "quantization"}
    assert {r["schema_version"] for r in records} == {SCHEMA_VERSION}
    q3 = by_quant["q3_k_m"]
    assert (q3["mcnemar_b"], q3["mcnemar_c"], q3["mcnemar_p"]) == (3, 0, 0.25)
    assert q3["accuracy_verdict"] == "not distinguishable" and q3["mlperf_99"] == "undecided"
    assert q3["retained_low"] < 0.99 < q3["retained_high"] and q3["baseline_quantization"] == "f16"
    assert by_quant["q2_k"]["mcnemar_p"] == 0.625 and by_quant["q4_k_m"]["retained"] > 1
    kv = records[0]
    assert kv["kind"] == "technique" and kv["speed_verdict"] == "slower" and kv["latency_ratio_low"] > 1
    assert (kv["answers_changed"], kv["noise_floor_changed"], kv["noise_floor_tasks"]) == (1, 0, 12)
    assert kv["noise_floor_verdict"] == "within" and kv["accuracy_verdict"] == "within the noise floor"
    assert kv["verdict"] in html.replace("&#39;", "'") or kv["speed_words"] in html
    csv_kv = rows[0]
    assert float(csv_kv["latency_ratio"]) == kv["latency_ratio"] and csv_kv["mlperf_99"] == ""


def test_one_vocabulary_and_only_the_sections_that_apply_on_a_starter_run(tmp_path):
    store = demo_run(tmp_path / "runs")
    paths = render([store.root], tmp_path / "report")
    html, markdown = paths.html.read_text(), paths.markdown.read_text()
    for text in (html, markdown):
        assert "requests failed" not in text and "error samples" not in text and "request errors" in text
        # the starter run kept one cascade's verdicts: no second column, no claim of two judgings
        assert "judged twice" not in text and "upstream —" not in text and "cascade-table" not in text
        assert "published tables" not in text and "SimCoPilot category" not in text
    assert "<th>cell total</th>" in html and "<th>all tasks</th>" not in html
    assert '<th class="l">task_id</th>' in html
    columns = list(json.loads(paths.json.read_text())[0])
    assert "error_samples" not in columns and "request_errors" in columns and "e2e_p50_low_s" in columns
    sections = re.findall(r'<section id="([a-z-]+)"', html)
    assert "reference" not in sections and "cascades" not in sections


def test_the_comparisons_schema_doc_is_generated_from_the_model():
    doc = ROOT / "docs" / "reference" / "comparisons.md"
    assert doc.read_text() == schema_markdown(), "regenerate: python -m runner.report.comparison_table > " + str(doc)
    for name in ComparisonRecord.model_fields:
        assert f"| `{name}` |" in doc.read_text()


def test_the_same_run_given_twice_is_counted_once_and_said(tmp_path):
    store = demo_run(tmp_path / "runs")
    once = json.loads(render([store.root], tmp_path / "once").json.read_text())
    paths = render([store.root, Path(str(store.root) + "/"), store.root / ".." / "demo"], tmp_path / "twice")
    assert json.loads(paths.json.read_text()) == once
    html = paths.html.read_text()
    assert html.count("given twice, counted once") == 2 and "demo-and" not in html
    assert "/demo @ " not in html  # no cell told apart from itself


def test_report_into_an_existing_file_is_one_line_not_a_traceback(tmp_path):
    store = demo_run(tmp_path / "runs")
    taken = tmp_path / "taken.html"
    taken.write_text("mine")
    result = CliRunner().invoke(main, ["report", str(store.root), "-o", str(taken)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0 and f"{taken}: a file, not a folder" in result.output
    assert taken.read_text() == "mine"


def test_kept_needs_many_tasks_and_a_median_interval_is_distribution_free():
    from scipy.stats import binom

    from runner.report.comparisons import retained_interval
    from runner.report.headline import median_interval

    # no pass lost in 32 tasks is not "kept ≥ 99%": up to ~4 losses would go unseen
    few = retained_interval(9, 0, 1, 32)
    assert few.ratio == 10 / 9 and few.interval.low < 0.6 and few.interval.high > 1.5
    # identical verdicts on 1,000 tasks, 500 passes, are
    many = retained_interval(500, 0, 0, 1000)
    assert many.ratio == 1 and 0.99 < many.interval.low < 1 < many.interval.high < 1.01
    assert retained_interval(20, 20, 0, 40).interval.low == 0.0
    # the j-th smallest to the j-th largest of n covers the median with >= 95%, j as large as allows it
    for n in (6, 10, 40, 101):
        low, high = median_interval([float(v) for v in range(1, n + 1)])
        j = int(low)
        assert high == n + 1 - j and 1 - 2 * binom.cdf(j - 1, n, 0.5) >= 0.95
        assert 1 - 2 * binom.cdf(j, n, 0.5) < 0.95
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0) and median_interval([]) is None
