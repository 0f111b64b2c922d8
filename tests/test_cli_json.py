"""One --json convention across commands: JSON lines, one object per line (README, Other commands)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from runner.benchmarks import load_benchmark
from runner.cli import main


def objects(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    parsed = [json.loads(line) for line in lines]
    assert lines and all(isinstance(p, dict) for p in parsed)
    return parsed


def test_tasks_list_and_doctor_print_json_lines():
    listed = CliRunner().invoke(main, ["tasks", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [t["task_id"] for t in objects(listed.stdout)] == [t.id for t in load_benchmark("starter").tasks]
    doctor = CliRunner().invoke(main, ["doctor", "--json"])
    assert doctor.exit_code == 0, doctor.output
    (report,) = objects(doctor.stdout)  # one record: the host, the data, the token
    assert {"host", "data", "hf_token", "cells"} <= set(report)


def test_a_task_is_task_id_in_every_json_output_that_names_one():
    # `score` reads `task_id`, and `tasks check --json` and `score --json` write it: `tasks list --json`,
    # whose ids are what `score` is fed, says the same, and nothing else called `id`
    listed = CliRunner().invoke(main, ["tasks", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    tasks = objects(listed.stdout)
    assert all("task_id" in t and "id" not in t for t in tasks)
    checked = CliRunner().invoke(main, ["tasks", "check", "--json", "--sandbox", "local", "--allow-unsandboxed",
                                        "--task", tasks[0]["task_id"]])
    assert checked.exit_code == 0, checked.output
    (check,) = objects(checked.stdout)
    assert check["task_id"] == tasks[0]["task_id"] and "id" not in check


def test_a_cell_is_cell_id_in_doctor_plan_and_dry_run_as_in_the_reports_files():
    # results.json, comparisons.json and load_points.json name a cell `cell_id`; the plan's outputs say
    # the same (beside their older `id` and `cell`)
    ids = None
    for args in (["doctor", "matrices/demo.toml", "--json"],
                 ["reproduce", "matrices/demo.toml", "--dry-run", "--json"]):
        done = CliRunner().invoke(main, args)
        assert done.exit_code == 0, done.output
        records = objects(done.stdout)
        cells = records[0]["cells"] if args[0] == "doctor" else records
        found = [c["cell_id"] for c in cells]
        assert found and (ids is None or found == ids)
        ids = found
    assert ids[0] == "qwen2.5-coder-0.5b/llamacpp/q4_k_m/baseline"
