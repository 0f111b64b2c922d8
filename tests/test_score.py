"""`runner score`: re-scoring raw answers from any tool, and its refusals of bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runner.benchmarks import load_benchmark
from runner.cli import main
from runner.evaluation.sandbox import capabilities
from tests.conftest import require

TASK = "python/infill/expr_interpreter/49-50"


def write(path, *lines):
    path.write_text("".join(l + "\n" for l in lines))
    return path


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not JSON"),
    ('["a list"]', "line 2: expected a JSON object, found list"),
    ('{"task_id": "python/infill/expr_interpreter/53-53"}', "line 2: field 'text' is missing"),
    ('{"task_id": "python/infill/expr_interpreter/53-53", "text": 7}', "line 2: field 'text' is 7, expected a string"),
    ('{"task_id": "python/infill/nope/1-2", "text": ""}', "line 2: task_id 'python/infill/nope/1-2' is not a task"),
    (json.dumps({"task_id": TASK, "text": "x"}), f"line 2: task_id '{TASK}' was already answered on line 1"),
])
def test_bad_answers_are_one_clear_error_each(tmp_path, line, message):
    answers = write(tmp_path / "answers.jsonl", json.dumps({"task_id": TASK, "text": "x"}), line)
    result = CliRunner().invoke(main, ["score", str(answers), "--benchmark", "starter", "--cascade", "runner"])
    assert result.exit_code == 2
    assert f"{answers}: {message}" in result.output and "Traceback" not in result.output


def test_upstream_cascade_without_the_fetched_copy_says_how_to_get_it(tmp_path):
    answers = write(tmp_path / "answers.jsonl", json.dumps({"task_id": TASK, "text": "x"}))
    result = CliRunner().invoke(main, ["score", str(answers), "--benchmark", "starter", "--cascade", "upstream",
                                       "--sandbox", "local"])
    assert result.exit_code == 2 and "runner data fetch simcopilot" in result.output


def test_score_judges_raw_answers_and_prints_one_line_per_task(tmp_path):
    require(capabilities().complete, "a complete local sandbox")
    task = load_benchmark("starter").task(TASK)
    answers = write(tmp_path / "answers.jsonl",
                    json.dumps({"task_id": TASK, "text": f"Sure:\n```python\n{task.reference}\n```"}),
                    json.dumps({"task_id": "python/infill/expr_interpreter/53-53", "text": "pass"}))
    result = CliRunner().invoke(main, ["score", str(answers), "--benchmark", "starter", "--cascade", "runner",
                                       "--json", "--sandbox", "local"])
    assert result.exit_code == 0, result.output
    first, second = (json.loads(l) for l in result.stdout.splitlines())
    assert (first["task_id"], first["outcome"], first["stage"], first["cascade"]) == (TASK, "pass", "cleaned", "runner")
    assert second["outcome"] != "pass" and second["runner"]["outcome"] == second["outcome"]
    # off a terminal the progress is a log line on stderr, with an ETA until the last answer
    assert "1/2 scored, 1 passed" in result.stderr and ", ETA " in result.stderr
    assert "2/2 scored, 1 passed" in result.stderr
    table = CliRunner().invoke(main, ["score", str(answers), "--benchmark", "starter", "--cascade", "runner",
                                      "--sandbox", "local"])
    assert table.exit_code == 0 and "python" in table.stdout and "infill" in table.stdout and "Wilson" in table.stdout


def test_every_benchmark_option_defaults_to_the_starter_set_and_says_so(tmp_path):
    commands = {"score": main.commands["score"]}
    commands.update({f"tasks {n}": c for n, c in main.commands["tasks"].commands.items()})
    defaults = {name: p.default for name, c in commands.items() for p in c.params if "--benchmark" in p.opts}
    assert set(defaults.values()) == {"starter"} and {"score", "tasks list", "tasks check"} <= set(defaults)
    help_text = CliRunner().invoke(main, ["score", "--help"], env={"COLUMNS": "200"}).output
    assert "[default: starter]" in help_text
    # the default taken, a SimCoPilot id says which option it needs; nothing is scored
    answers = write(tmp_path / "answers.jsonl", json.dumps({"task_id": "python/infill/nope/1-2", "text": ""}))
    result = CliRunner().invoke(main, ["score", str(answers), "--cascade", "runner"])
    assert result.exit_code == 2 and "not a task of 'starter' (SimCoPilot answers need --benchmark simcopilot)" \
        in result.output
