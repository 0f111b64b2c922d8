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
    records = json.loads(result.stdout)
    assert len(records) == 7
    assert {r["outcome"] for r in records} == {"pass"}
    assert all(r["task_id"].startswith("python/completion/job_scheduler/") for r in records)


def test_empty_check_prints_the_pass_table_and_exits_0(cli):
    result = cli.invoke(main, ["tasks", "check", "--solution", "empty", "--language", "java", "--mode", "completion",
                               "--program", "LRUCacheTester"])
    assert result.exit_code == 0, result.output
    assert "java" in result.stdout and "completion" in result.stdout
    assert "pass %" in result.stdout


def _rebaseline_file(home, program: str, data: dict) -> None:
    folder = home / "rebaseline" / "starter"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{program}.json").write_text(json.dumps(data))


def test_failing_reference_names_the_task_calls_it_a_drifted_output_and_exits_1(cli, isolated_home):
    # Wrong expectations, as a stale baseline would have them.
    _rebaseline_file(isolated_home, "job_scheduler", {"test_case1": "", "expected_output1": "not what it prints"})
    result = cli.invoke(main, ["tasks", "check", "--program", "job_scheduler", "--mode", "completion"])
    assert result.exit_code == 1
    assert "FAILED python/completion/job_scheduler/" in result.stdout
    assert "the expected output drifted (runner tasks rebaseline)" in result.stdout
    assert "output differs" in result.stdout


def test_a_missing_module_is_reported_as_an_environment_problem(cli, isolated_home):
    _rebaseline_file(isolated_home, "job_scheduler",
                     {"test_case1": "import module_that_is_not_installed", "expected_output1": "x"})
    result = cli.invoke(main, ["tasks", "check", "--program", "job_scheduler", "--mode", "completion"])
    assert result.exit_code == 1
    assert "looks like an environment problem" in result.stdout
    assert "module_that_is_not_installed" in result.stdout


def test_rebaseline_then_check_passes_against_the_new_expectations(cli, isolated_home):
    result = cli.invoke(main, ["tasks", "rebaseline", "--benchmark", "starter"])
    assert result.exit_code == 0, result.output
    folder = isolated_home / "rebaseline" / "starter"
    assert (folder / "environment.json").is_file() and (folder / "lu_solver.json").is_file()
    assert "rebaselined lu_solver" in result.stdout
    check = cli.invoke(main, ["tasks", "check", "--program", "lu_solver", "--mode", "completion"])
    assert check.exit_code == 0, check.output
