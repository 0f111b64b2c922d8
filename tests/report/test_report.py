"""The report from hand-built run directories: two machines, a Llama-3-70B matrix, a failed cell."""

from __future__ import annotations

import csv
import json
import random
import re
import statistics
from pathlib import Path

from click.testing import CliRunner

from runner.cli import main
from runner.measuring import stats
from runner.records import Outcome
from runner.report import render
from runner.report.data import load_runs, load_tasks
from runner.report.tables import build
from runner.store import CellResult, Manifest, RunStore
from tests.report.conftest import (A100, BASELINE, FP8, GGUF, H100, SPEC, make_sample, prompt_sha, write_run)


def latest_accuracy(run_dir: Path, cell) -> dict[str, Outcome]:
    store = RunStore(run_dir)
    return {s.task_id: s.outcome for s in store.latest_samples(cell) if s.phase == "accuracy" and s.outcome}


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table of a Markdown text as rows of cells (separator rows dropped)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_two_machine_report_shows_hardware_reference_failures_and_errors(two_machine_runs, tmp_path):
    paths = render(two_machine_runs, tmp_path / "report")
    html = paths.html.read_text()

    # hardware: the same cell side by side, with the speed-up of the A100 run against the H100 run
    assert 'id="hardware"' in html
    h100_dir, a100_dir = two_machine_runs
    medians = [statistics.median(s.e2e_s for s in RunStore(d).latest_samples(BASELINE)
                                 if s.phase == "latency" and s.outcome is None) for d in two_machine_runs]
    assert f"×{medians[0] / medians[1]:.2f}" in html
    assert "NVIDIA A100-SXM4-80GB" in html and "GPU-b1" in html  # full fingerprint, second GPU included

    # a starter run is never set beside SimCoPilot's published tables, whatever its model
    assert 'id="reference"' not in html and "published tables" not in html

    # the failed cell and the error samples still render, the superseded error does not
    assert "CUDA error: out of memory" in html
    errors = re.search(r'<table id="error-table">.*?</table>', html, re.S).group(0)
    assert errors.count("server disconnected: ConnectError") == 3
    assert errors.count("ReadTimeout after 300 s") == 5  # the last task of each finished cell
    assert "RemoteProtocolError (superseded)" not in html

    # answers are escaped, never markup
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert paths.html.stat().st_size < 5_000_000
    assert {p.name for p in paths.plots} == {"pareto.png", "latency-cdf.png", "categories.png", "throughput.png",
                                             "underload-llama3-70b.png"}


def test_a_simcopilot_run_stands_beside_the_published_row_its_model_names(tmp_path):
    run = write_run(tmp_path / "runs", "paper-h100", H100, [BASELINE, FP8], speed=1.0, seed=1, benchmark="simcopilot")
    html = render([run.root], tmp_path / "report").html.read_text()
    outcomes = [o for t, o in latest_accuracy(run.root, BASELINE).items() if t.startswith("python/infill/")]
    rate = 100 * outcomes.count(Outcome.passed) / len(outcomes)
    row = re.search(r"llama3-70b/vllm/bf16/baseline</td><td class=\"l\" title=\"[^\"]*\">"
                    r"2024: LLaMA 3 70B<br>.*?</td><td class=\"l\">python infill</td>.*?</tr>", html, re.S)
    assert row and "54.4 ± 5.0" in row.group(0) and "mj33rice/SimCoPilot@90c5560 README.md" in row.group(0)
    if abs(rate - 54.4) <= 5.0:
        assert "inside the published interval" in row.group(0)
    else:
        assert "intervals overlap" in row.group(0) or "no overlap" in row.group(0)
    # the run holds 121 starter tasks, not SimCoPilot's 382 Python infill ones: said, not hidden
    assert f"{382 - len(outcomes)} of 382 tasks not asked or unavailable" in row.group(0)


def test_csv_json_and_markdown_carry_the_same_rows(two_machine_runs, tmp_path):
    paths = render(two_machine_runs, tmp_path / "report")
    with open(paths.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    records = json.loads(paths.json.read_text())
    assert len(rows) == len(records) == 6 * 4  # six cells (four + two) x python/java x infill/completion
    assert list(rows[0]) == list(records[0])

    # one figure checked against a count made here from the samples
    outcomes = latest_accuracy(two_machine_runs[1], FP8)
    java = [o for t, o in outcomes.items() if t.startswith("java/completion/")]
    record = next(r for r in records if r["cell_id"] == FP8.id and r["run"] == "paper-a100"
                  and (r["language"], r["mode"]) == ("java", "completion"))
    assert record["tasks"] == len(java) and record["passed"] == java.count(Outcome.passed)
    assert record["pass_wilson_low"] < record["pass_rate"] < record["pass_wilson_high"]
    assert record["requests_per_s_c16"] > record["requests_per_s_c1"]
    failed = [r for r in records if r["cell_id"] == GGUF.id]
    assert {r["status"] for r in failed} == {"failed"} and failed[0]["request_errors"] == 3

    tables = markdown_tables(paths.markdown.read_text())
    full = next(t for t in tables if t[0] == list(rows[0]))
    assert len(full) - 1 == len(rows)
    assert all(len(r) == len(rows[0]) for r in full)
    results = next(t for t in tables if t[0][:4] == ["cell", "status", "language", "mode"])
    assert len(results) - 1 == len(rows) and all(len(r) == len(results[0]) for r in results)
    for plot in paths.plots:
        assert f"]({plot.relative_to(paths.markdown.parent).as_posix()})" in paths.markdown.read_text()


def test_technique_verdict_follows_the_paired_outcomes(tmp_path):
    # a technique that breaks 24 tasks the baseline passed and fixes none: McNemar p = 2 / 2**24
    run = write_run(tmp_path / "runs", "paired", H100, [BASELINE, SPEC], speed=1.0, seed=5)
    tasks = sorted(latest_accuracy(run.root, BASELINE))
    rng = random.Random(9)
    for index, task_id in enumerate(tasks):  # the rerun's answers supersede the first ones
        same = Outcome.passed if index % 3 else Outcome.fail
        run.append_sample(BASELINE, make_sample(BASELINE, task_id, "accuracy", rng, outcome=same))
        broken = Outcome.fail if index < 36 and same == Outcome.passed else same
        run.append_sample(SPEC, make_sample(SPEC, task_id, "accuracy", rng, outcome=broken))
    built = build(load_runs([run.root]), load_tasks(load_runs([run.root])))
    (comparison,) = built.techniques
    base, spec = latest_accuracy(run.root, BASELINE), latest_accuracy(run.root, SPEC)
    only_base = sum(base[t] == Outcome.passed and spec[t] != Outcome.passed for t in base)
    only_spec = sum(spec[t] == Outcome.passed and base[t] != Outcome.passed for t in base)
    assert (comparison.only_baseline, comparison.only_cell) == (only_base, only_spec)
    assert (only_base, only_spec) == (24, 0)  # two in three of the first 36 tasks
    assert comparison.p_value == stats.mcnemar_exact(24, 0) == 2 / 2**24
    # the spec cell's profile is about twice as fast: the whole bootstrap interval sits below 1
    assert comparison.latency_ratio.interval.high < 1 and comparison.latency_source == "latency"
    points = 100 * (only_base - only_spec) / len(base)
    ratio = comparison.latency_ratio
    assert comparison.verdict == f"faster ×{ratio.ratio:.2f} [{ratio.interval.low:.2f}, {ratio.interval.high:.2f}]; " \
                                 f"answers: lost {points:.1f} points (McNemar p = {comparison.p_value:.2g}; noise " \
                                 "floor not measured)"
    assert comparison.noise.words == f"answers changed: 0 of {comparison.noise.pairs} · noise floor not measured"
    (quant_note,) = built.quantization_notes or ["none"]
    assert "none" in quant_note or "no full-precision cell" in quant_note


def test_quantization_gets_the_mlperf_verdict_against_bf16(two_machine_runs):
    runs = load_runs(two_machine_runs)
    built = build(runs, load_tasks(runs))
    h100 = next(q for q in built.quantizations if q.comparison.cell.run.name == "paper-h100")
    base, fp8 = latest_accuracy(two_machine_runs[0], BASELINE), latest_accuracy(two_machine_runs[0], FP8)
    common = set(base) & set(fp8)
    retained = sum(fp8[t] == Outcome.passed for t in common) / sum(base[t] == Outcome.passed for t in common)
    assert h100.retained == retained
    # ~120 paired tasks with a handful of flips each way cannot settle a 1% target either way
    interval = h100.comparison.retained.interval
    assert interval.low < 0.99 < interval.high and h100.meets_99.value == "undecided"
    assert h100.mlperf.startswith(f"MLPerf 99% target not decided with {h100.comparison.pairs} tasks (retained ")


def test_a_prompt_that_differs_between_cells_is_flagged_with_its_task(two_machine_runs, tmp_path):
    store = RunStore(two_machine_runs[0])
    task_id = "java/infill/"
    victim = next(s for s in store.latest_samples(FP8) if s.phase == "accuracy" and s.task_id.startswith(task_id))
    store.append_sample(FP8, victim.model_copy(update={"prompt_sha256": "f" * 64}))
    paths = render(two_machine_runs, tmp_path / "report")
    html = paths.html.read_text()
    alert = re.search(r'<div class="alert" id="prompt-mismatch-instruct">.*?</div>', html, re.S)
    assert alert and victim.task_id in alert.group(0) and "1 of 121 tasks" in alert.group(0)
    assert "ffffffffffff" in alert.group(0) and prompt_sha("instruct", victim.task_id)[:12] in alert.group(0)
    assert "**MISMATCH**" in paths.markdown.read_text()


def test_missing_benchmark_leaves_a_note_instead_of_categories(tmp_path):
    run = write_run(tmp_path / "runs", "elsewhere", A100, [BASELINE], speed=1.0, seed=3, benchmark="simcopilot")
    paths = render([run.root], tmp_path / "report")
    html = paths.html.read_text()
    assert "benchmark &#39;simcopilot&#39; is not available here" in html
    assert 'id="plot-categories"' not in html and 'id="plot-pareto"' in html
    assert 'id="hardware"' not in html  # one machine: nothing to compare


def test_cli_report_writes_the_page_and_its_tables_and_refuses_a_non_run(two_machine_runs, tmp_path):
    result = CliRunner().invoke(main, ["report", *map(str, two_machine_runs), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.split() == [str(tmp_path / "out" / n) for n in
                                     ("index.html", "README.md", "results.csv", "results.json", "comparisons.csv",
                                      "comparisons.json", "load_points.csv", "load_points.json")]
    bad = CliRunner().invoke(main, ["report", str(tmp_path), "-o", str(tmp_path / "out2")])
    assert bad.exit_code == 2 and "manifest.json: not found" in bad.output and "Traceback" not in bad.output


def test_a_run_whose_cells_all_failed_before_answering_still_renders(tmp_path):
    store = RunStore(tmp_path / "runs" / "nothing")
    store.write_manifest(Manifest(name="nothing", matrix={"benchmark": "starter"}, cells=[BASELINE, GGUF],
                                  fingerprint=H100))
    store.write_cell(CellResult(cell=BASELINE, status="failed", reason="image pull refused: no registry access"))
    store.write_cell(CellResult(cell=GGUF, status="skipped", reason="runtime llamacpp: no GPU with 48 GiB free"))
    paths = render([store.root], tmp_path / "report")
    html = paths.html.read_text()
    assert "image pull refused: no registry access" in html and "no GPU with 48 GiB free" in html
    assert "so there is no trade-off chart" in html and paths.plots == ()
    records = json.loads(paths.json.read_text())
    assert len(records) == 2 * 4 and all(r["tasks"] == 0 and r["pass_rate"] is None for r in records)


def test_pareto_frontier_keeps_only_cells_no_other_beats_on_both_axes():
    from runner.report.tradeoff import frontier

    # (latency, pass rate): point 1 is slower and worse than 0; point 3 is slower than 2 at the same rate
    points = [(1.0, 50.0), (2.0, 40.0), (3.0, 60.0), (4.0, 60.0), (0.5, 10.0)]
    assert frontier(points) == [4, 0, 2]


def test_report_puts_both_cascades_side_by_side_and_counts_flips(two_machine_runs, tmp_path):
    h100_dir = two_machine_runs[0]
    samples = [s for s in RunStore(h100_dir).latest_samples(BASELINE) if s.phase == "accuracy" and s.upstream]
    java_infill = [s for s in samples if s.task_id.startswith("java/infill/")]
    flips = sum((s.upstream.outcome == Outcome.passed) != (s.runner.outcome == Outcome.passed) for s in java_infill)
    ours = sum(s.runner.outcome == Outcome.passed for s in java_infill)
    assert 0 < flips < len(java_infill)
    paths = render(two_machine_runs, tmp_path / "report")
    html = paths.html.read_text()
    table = re.search(r'<table id="cascade-table">.*?</table>', html, re.S).group(0)
    row = re.search(r"llama3-70b/vllm/bf16/baseline @ H100 80GB HBM3</td><td class=\"l\">java</td>"
                    r"<td class=\"l\">infill</td>.*?</tr>", table, re.S).group(0)
    assert f"{flips} / {len(java_infill)}" in row and "upstream" in row
    assert f"{100 * ours / len(java_infill):.1f}" in row
    # upstream's ± (bootstrap) is what the tables print, labelled beside Wilson
    assert "bootstrap" in html and "Wilson" in html
    markdown = paths.readme.read_text() if hasattr(paths, "readme") else (tmp_path / "report" / "README.md").read_text()
    assert "## Scoring: upstream's cascade and ours" in markdown


def hostile_run(root: Path) -> RunStore:
    """A run made elsewhere: markup in a label, a host name and a reason, a 300 KB error text,
    and task ids that are not ``language/mode/program/span``."""
    from runner.records import Cell, Sample

    cell = Cell(model="llama3-70b", runtime="vllm", quantization="bf16", label='<img src=x onerror="alert(1)">')
    store = RunStore(root / "hostile")
    fingerprint = H100.model_copy(update={"hostname": "<b>box</b>"})
    store.write_manifest(Manifest(name="hostile", matrix={"benchmark": "starter"}, cells=[cell], fingerprint=fingerprint))
    huge = "Traceback: " + "x" * 300_000 + " END-OF-ERROR"
    store.write_cell(CellResult(cell=cell, status="failed", reason="<script>alert(2)</script> " + "y" * 300_000))
    for task_id, outcome, error in [("plain-id", Outcome.fail, None), ("python/infill/lu_solver/3-4", Outcome.passed, None),
                                    ("weird/", Outcome.error, huge), ("7", Outcome.fail, None)]:
        store.append_sample(cell, Sample(task_id=task_id, cell_id=cell.id, prompt_style="instruct",
                                         prompt_sha256="0" * 64, raw_text="x", code="x", outcome=outcome,
                                         cleaned_outcome=outcome if outcome != Outcome.error else None, error=error,
                                         stderr_tail="z" * 300_000))
    return store


def test_a_hostile_run_renders_escaped_and_capped_in_every_output(tmp_path):
    store = hostile_run(tmp_path / "runs")
    paths = render([store.root], tmp_path / "report")  # task ids without "/" sort instead of crashing
    outputs = {"html": paths.html.read_text(), "markdown": paths.markdown.read_text(),
               "csv": paths.csv.read_text(), "json": paths.json.read_text()}
    for name, text in outputs.items():
        assert "y" * 5000 not in text and "x" * 5000 not in text and "z" * 5000 not in text, name
        assert "END-OF-ERROR" not in text, name
    for name in ("html", "markdown"):
        text = outputs[name]
        assert "<script>" not in text and "<img" not in text and "<b>box" not in text, name
        assert "&lt;script&gt;" in text and "&lt;img src=x" in text, name
        assert "more characters" in text, name
    assert "more characters]" in outputs["csv"] and "more characters]" in outputs["json"]


def test_markdown_cells_escape_html_pipes_and_links():
    from runner.report.writers import _environment, md

    template = _environment(False).from_string("| {{ v|md }} |")
    out = template.render(v='<a href="x">[click](javascript:1)</a> | `x`\nnext')
    assert out == '| &lt;a href="x"&gt;\\[click\\](javascript:1)&lt;/a&gt; \\| \\`x\\` next |'
    assert md(None) == " "


def test_cli_report_defaults_to_a_folder_per_run_so_two_runs_never_overwrite(two_machine_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h100, a100 = map(str, two_machine_runs)
    written = {}
    for args in ([h100], [a100 + "/"], [h100, a100]):
        result = CliRunner().invoke(main, ["report", *args])
        assert result.exit_code == 0, result.output
        written[tuple(args)] = result.output.split()[0]
    assert list(written.values()) == [str(Path("report") / n / "index.html")
                                      for n in ("paper-h100", "paper-a100", "paper-h100-and-1-more")]
    assert "paper-a100" not in (tmp_path / "report" / "paper-h100" / "results.csv").read_text()
    assert "[default: report/RUN for one run" in " ".join(CliRunner().invoke(main, ["report", "--help"]).output.split())
