"""``runner tasks check`` and ``runner tasks rebaseline`` through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.evaluation.sandbox import capabilities
from tests.conftest import require


@pytest.fixture
def cli():
    require(capabilities().complete, "a complete local sandbox")
    return CliRunner()


def test_unknown_benchmark_is_exit_2_with_one_line(cli):
    for command in (["tasks", "check", "--benchmark", "nope"], ["tasks", "rebaseline", "--benchmark", "nope"]):
        result = cli.invoke(main, command)
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1 and "nope" in result.stderr


def test_unknown_program_is_exit_2_naming_it(cli):
    result = cli.invoke(main, ["tasks", "check", "--program", "no_such_program"])
    assert result.exit_code == 2 and "no_such_program" in result.stderr


def test_reference_check_prints_one_json_record_per_task(cli):
    result = cli.invoke(main, ["tasks", "check", "--program", "job_scheduler", "--mode", "completion", "--json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines, as every --json
    assert len(records) == 7
    assert {r["outcome"] for r in records} == {"pass"}
    assert all(r["task_id"].startswith("python/completion/job_scheduler/") for r in records)
    # off a terminal the progress is a log line with an ETA, the last one without
    assert "1/7 checked, 1 passed" in result.stderr and ", ETA " in result.stderr
    assert "7/7 checked, 7 passed" in result.stderr


def test_task_narrows_the_check_to_the_named_tasks_and_an_unknown_one_is_one_line(cli):
    result = cli.invoke(main, ["tasks", "check", "--task", "python/completion/job_scheduler/36-36", "--task",
                               "python/completion/job_scheduler/46-47", "--json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(line)["task_id"] for line in result.stdout.splitlines()) == [
        "python/completion/job_scheduler/36-36", "python/completion/job_scheduler/46-47"]
    wrong = cli.invoke(main, ["tasks", "check", "--task", "python/completion/job_scheduler/36-36", "--task", "nope/1-1"])
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output
    assert wrong.stderr.strip() == ("Error: --task 'nope/1-1': not a task of 'starter'; list them with "
                                    "`runner tasks list --benchmark starter --json`")


def test_empty_check_prints_the_pass_table_and_exits_0(cli):
    # three tasks: each empty Java answer costs a javac and a JVM
    picks = ["java/completion/LRUCacheTester/49-52", "java/completion/LRUCacheTester/102-102",
             "java/completion/LRUCacheTester/143-143"]
    result = cli.invoke(main, ["tasks", "check", "--solution", "empty", "--language", "java", "--mode", "completion",
                               "--program", "LRUCacheTester", *[a for t in picks for a in ("--task", t)]])
    assert result.exit_code == 0, result.output
    assert "java" in result.stdout and "completion" in result.stdout
    assert "pass %" in result.stdout


def test_rebaseline_checks_every_program_again_and_re_records_none_that_did_not_drift(cli, isolated_home):
    result = cli.invoke(main, ["tasks", "rebaseline", "--benchmark", "starter", "--sandbox", "local"])
    assert result.exit_code == 0, result.output
    assert "unchanged lu_solver: its reference passes against upstream's expected outputs" in result.stdout
    assert "re-recorded" not in result.stdout
    assert "environment checked" in result.stderr and "0 unscoreable, 0 re-recorded" in result.stderr
    check = cli.invoke(main, ["tasks", "check", "--program", "lu_solver", "--mode", "completion", "--sandbox", "local"])
    assert check.exit_code == 0, check.output
    assert "from the cache" in check.stderr  # one reference run per program, once per environment
