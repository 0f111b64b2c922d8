"""The report on a run whose environment check set programs apart: rates two ways, the programs listed."""

from __future__ import annotations

import json
from pathlib import Path

from runner.benchmarks import load_benchmark
from runner.evaluation.environment import Drift, EnvironmentReport, ProgramCheck
from runner.records import Cascade, Cell, ExpectedOutputs, Language, Outcome, Sample
from runner.report import render
from runner.store import CellResult, Manifest, RunStore

CELL = Cell(model="qwen-0.5b", runtime="llamacpp", quantization="q4_k_m", label="baseline")


def _sample(task_id: str, outcome: Outcome, **fields) -> Sample:
    return Sample(task_id=task_id, cell_id=CELL.id, prompt_style="prefix", prompt_sha256="0" * 64, raw_text="x",
                  outcome=outcome, cleaned_outcome=outcome, cascade=Cascade.runner, **fields)


def write_checked_run(root: Path) -> Path:
    """Python infill of the starter set: expr_interpreter unscoreable, lu_solver judged against re-recorded outputs."""
    tasks = [t for t in load_benchmark("starter").tasks if t.language is Language.python and t.mode.value == "infill"]
    report = EnvironmentReport(
        benchmark="starter", commit="starter-0.1.0", cascade=Cascade.runner, sandbox="local:" + "a" * 64,
        expected="auto", programs=[
            ProgramCheck(program="expr_interpreter", language=Language.python, task_id="t", scoreable=False,
                         outcome=Outcome.runtime_error, suspect="missing_file",
                         reason="a data file is missing: the program reads alice.avi"),
            ProgramCheck(program="lu_solver", language=Language.python, task_id="t", scoreable=True,
                         outcome=Outcome.fail, expected_outputs=ExpectedOutputs.re_recorded,
                         drift=Drift(values_moved=7, values_compared=40, max_relative_change=2.5e-7)),
        ])
    store = RunStore(root / "checked")
    store.write_manifest(Manifest(name="checked", matrix={"name": "checked", "benchmark": "starter"}, cells=[CELL],
                                  environment=report))
    passes = 0
    for task in tasks:
        if task.program == "shortest_paths" and not passes % 5:  # the sandbox failed on this answer, in the cell
            sample = _sample(task.id, Outcome.unscoreable, unscoreable_reason="environment: setpriv: failed to execute python3")
            passes += 1
        elif task.program == "expr_interpreter":
            sample = _sample(task.id, Outcome.unscoreable, unscoreable_reason="a data file is missing")
        else:
            outcome = Outcome.passed if passes % 2 == 0 else Outcome.fail
            passes += 1
            extra = {"expected_outputs": ExpectedOutputs.re_recorded} if task.program == "lu_solver" else {}
            sample = _sample(task.id, outcome, **extra)
        store.append_sample(CELL, sample)
    store.write_cell(CellResult(cell=CELL, status="done", backend="local"))
    return store.root


def test_unscoreable_tasks_leave_the_headline_rate_and_both_ways_are_labelled(tmp_path):
    run = write_checked_run(tmp_path)
    samples = [json.loads(line) for line in (next(run.rglob("samples.jsonl"))).read_text().splitlines()]
    unscoreable = sum(s["outcome"] == "unscoreable" for s in samples)
    scoreable = [s for s in samples if s["outcome"] != "unscoreable"]
    passed = sum(s["outcome"] == "pass" for s in scoreable)
    assert unscoreable > 0 and passed > 0

    paths = render([run], tmp_path / "report")
    [row] = [r for r in json.loads(paths.json.read_text()) if r["language"] == "python" and r["mode"] == "infill"]
    assert row["unscoreable"] == unscoreable and row["tasks"] == len(scoreable)
    assert abs(row["pass_rate"] - passed / len(scoreable)) < 1e-9  # the headline: scoreable tasks only
    assert abs(row["all_tasks_pass_rate"] - passed / len(samples)) < 1e-9  # the paper's denominator
    assert row["re_recorded_samples"] == sum(s["task_id"].split("/")[2] == "lu_solver" for s in samples)

    markdown = paths.markdown.read_text()
    assert "## Environment check: what can be scored here" in markdown
    missing = sum(s["task_id"].split("/")[2] == "expr_interpreter" for s in samples)
    assert f"| checked | expr_interpreter | python | unscoreable | {missing} | a data file is missing" in markdown
    assert "| lu_solver | python | re-recorded |" in markdown and "7 of 40 printed values moved" in markdown
    assert f"{100 * passed / len(samples):.1f} (n={len(samples)})" in markdown
    in_cell = sum((s.get("unscoreable_reason") or "").startswith("environment:") for s in samples)
    assert in_cell and f"| shortest_paths | python | environment failure | {in_cell} | the sandbox could not run" in markdown

    html = paths.html.read_text()
    assert 'id="environment-table"' in html and "alice.avi" in html
    assert f"{unscoreable} unscoreable · all tasks {100 * passed / len(samples):.1f}" in html


def test_a_run_without_an_environment_check_says_so(tmp_path):
    run = write_checked_run(tmp_path)
    manifest = RunStore(run).read_manifest()
    RunStore(run).write_manifest(manifest.model_copy(update={"environment": None}))
    paths = render([run], tmp_path / "report")
    assert "no environment check recorded" in paths.markdown.read_text()
