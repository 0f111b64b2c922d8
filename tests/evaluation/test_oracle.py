"""The oracle over the starter set: every reference passes, (nearly) every empty answer fails.

CI checks every other task of each program and mode (references) and every third (empty answers):
both languages, both modes, every program. The whole set is ``runner tasks check --benchmark
starter --solution reference|empty`` (``bench/eval_throughput.py`` times it).
"""

from __future__ import annotations

import json

import pytest

from runner.evaluation import Evaluator, Limits, check_solution, diagnose
from runner.records import Language, Outcome
from tests.conftest import require

# Generous enough for a loaded 2-core machine, short enough that empty answers that hang
# (a loop whose body was removed) cost seconds, not minutes.
LIMITS = Limits(wall_seconds=10, time_factor=5)


@pytest.fixture(scope="module")
def starter():
    from runner.benchmarks import load_benchmark

    bench = load_benchmark("starter")
    require(len(bench.available()) >= 50, "the starter set (runner/benchmarks/starter)")
    return bench


def every(step: int, tasks):
    """Every ``step``-th task of each program and mode, in the set's order."""
    groups: dict[tuple, list] = {}
    for task in tasks:
        groups.setdefault((task.program, task.mode), []).append(task)
    return [t for group in groups.values() for t in group[::step]]


@pytest.fixture(scope="module")
def evaluator(starter):
    from runner.evaluation.sandbox import capabilities

    require(capabilities().complete, "a complete local sandbox")
    return Evaluator(starter.programs, limits=LIMITS, junit_console=starter.junit_jar)


def test_every_reference_solution_passes(starter, evaluator):
    tasks = every(2, starter.available())
    assert {t.program for t in tasks} == {t.program for t in starter.available()}
    checks = check_solution(evaluator, tasks, "reference")
    failed = [(c.task_id, c.outcome.value, c.stderr_tail[-300:]) for c in checks if c.outcome is not Outcome.passed]
    assert failed == []
    assert {c.language for c in checks} == {Language.python, Language.java}
    assert all(c.stage.value == "cleaned" for c in checks)


def test_empty_answers_fail_all_but_a_handful(starter, evaluator):
    checks = check_solution(evaluator, every(3, starter.available()), "empty")
    passed = [c.task_id for c in checks if c.outcome is Outcome.passed]
    assert len(passed) <= max(3, len(checks) // 20), passed
    # Both failure families show up: a removed line breaks the syntax or the behaviour.
    outcomes = {c.outcome for c in checks}
    assert Outcome.compile_error in outcomes and Outcome.fail in outcomes


def test_diagnosis_separates_limits_missing_files_environment_drift_and_bugs():
    assert diagnose("ModuleNotFoundError: No module named 'tensorflow'") == "environment"
    assert diagnose("error: package org.apache.commons does not exist") == "environment"
    assert diagnose("AssertionError: expected 3 but was 4") == "bug"
    assert diagnose("timed out after 20.0 s\n", Outcome.timeout) == "limit"
    assert diagnose("Traceback ...\nMemoryError\n", Outcome.runtime_error) == "limit"
    assert diagnose("killed by signal 9\n[out of memory]", Outcome.runtime_error) == "limit"
    assert diagnose("FileNotFoundError: [Errno 2] No such file or directory: 'bankfullclean.csv'") == "missing_file"
    drifted = "output differs (last line '0.1234', expected '0.1235')\n"
    assert diagnose(drifted, Outcome.fail) == "drift"
    assert diagnose(drifted, Outcome.runtime_error) == "bug"


def test_a_reference_that_silently_misses_a_named_data_file_is_diagnosed_as_missing_file(world_dir, sandbox):
    # cv2.VideoCapture('./alice.avi') reads nothing and raises no FileNotFoundError: upstream's
    # Image_Filtering fails that way, its video not being in upstream's repository
    from runner.evaluation.oracle import missing_named_files
    from runner.records import Mode, Task
    from tests.evaluation.conftest import python_program

    source = "import os\nframes = [1] if os.path.exists('./alice.avi') else []\nprint(frames[0], open('./apple.jpeg').read())\n"
    program = python_program(world_dir, "video", source, [("", "1 x")], data={"apple.jpeg": "x"})
    lines = source.split("\n")
    task = Task(id="python/infill/video/3-3", benchmark="test", language=Language.python, mode=Mode.infill,
                program="video", span=(3, 3), before="\n".join(lines[:2]), reference=lines[2],
                after="\n".join(lines[3:]))
    evaluator = Evaluator({program.name: program}, limits=LIMITS, sandbox=sandbox)

    [check] = check_solution(evaluator, [task], "reference")

    assert missing_named_files(program) == ["alice.avi"]
    assert check.outcome is Outcome.runtime_error and check.suspect == "missing_file"
    assert check.stderr_tail.startswith("the program reads alice.avi, not in ") and "IndexError" in check.stderr_tail


def test_a_drifted_reference_broken_by_a_later_cascade_stage_is_still_drift(world_dir):
    # upstream's GAN_model/152-154: the cleaned reference prints drifted floats (fail), and the
    # re-indented stage after it does not even compile; the verdict shown is the last stage's
    from runner.evaluation.oracle import reference_suspect
    from runner.records import Stage, Verdict
    from tests.evaluation.conftest import python_program

    program = python_program(world_dir, "gan", "print(0.1)\n", [("", "0.2")], output_to_check="all_output")
    verdict = Verdict(outcome=Outcome.compile_error, stage=Stage.reindented, cleaned_outcome=Outcome.fail, code="",
                      stderr_tail="IndentationError: unindent does not match any outer indentation level")
    suspect, note = reference_suspect(program, verdict)
    assert suspect == "drift" and "reindented stage then gave compile_error" in note
    assert reference_suspect(program, verdict.model_copy(update={"cleaned_outcome": Outcome.compile_error}))[0] == "bug"


def test_the_oracle_hands_upstreams_cascade_the_reference_in_a_fence_and_ours_the_bare_span(starter):
    from runner.evaluation.oracle import solution_text
    from runner.records import Cascade

    task = starter.available()[0]
    fenced = solution_text(task, "reference", Cascade.upstream)
    assert fenced == f"```{task.language.value}\n{task.reference}\n```"
    assert solution_text(task, "reference", Cascade.runner) == task.reference
    assert solution_text(task, "empty", Cascade.upstream) == ""
