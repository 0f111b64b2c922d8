"""One pass-rate definition (runner.measuring.passrate) in the terminal summary, the report, its CSV and JSON:
a request error counts as a task that did not pass, and is shown apart."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

from runner.measuring.passrate import pass_count
from runner.records import Outcome
from runner.report import render
from runner.running.progress import summary_table
from runner.running.run import RunOutcome
from runner.store import RunStore


def summary_rows(store: RunStore) -> dict[str, dict[str, str]]:
    table = summary_table(store, RunOutcome(run_dir=store.root))
    headers = [str(c.header) for c in table.columns]
    cells = [list(c._cells) for c in table.columns]
    return {row[0]: dict(zip(headers, row)) for row in zip(*cells)}


def test_summary_and_report_give_the_same_passes_tasks_and_request_errors(two_machine_runs, tmp_path):
    run_dir = two_machine_runs[0]
    store = RunStore(run_dir)
    summary = summary_rows(store)
    paths = render([run_dir], tmp_path / "report")
    per_cell: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in json.loads(paths.json.read_text()):
        totals = per_cell[row["cell_id"]]
        totals["passed"] += row["passed"]
        totals["tasks"] += row["tasks"]
        totals["errors"] = row["request_errors"]
        totals["cell_tasks"] = row["cell_tasks"]
        totals["cell_rate"] = row["cell_pass_rate"] or 0.0
    with_errors = 0
    for result in store.cell_results():
        count = pass_count(store.latest_samples(result.cell))
        line = summary[result.cell.id]
        report = per_cell[result.cell.id]
        assert line["pass"] == f"{count.passed}/{count.scoreable}" == f"{report['passed']:.0f}/{report['tasks']:.0f}"
        assert int(line["request errors"]) == count.errors == report["errors"]
        assert count.tasks == report["cell_tasks"]
        assert abs((count.rate or 0.0) - report["cell_rate"]) < 1e-9
        with_errors += count.errors > 0
    assert with_errors  # the fixture's failed cell has request errors: the definitions were put to the test
    with open(paths.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["cell_id"]: r["request_errors"] for r in rows} == {k: f"{v['errors']:.0f}" for k, v in per_cell.items()}


def test_a_request_error_is_a_task_that_did_not_pass(two_machine_runs):
    store = RunStore(two_machine_runs[0])
    for result in store.cell_results():
        samples = store.latest_samples(result.cell)
        accuracy = [s for s in samples if s.phase == "accuracy" and s.outcome is not None]
        count = pass_count(samples)
        assert count.tasks == len(accuracy)  # errors in the denominator
        assert count.errors == sum(s.outcome == Outcome.error for s in accuracy)
        assert count.passed == sum(s.outcome == Outcome.passed for s in accuracy)
