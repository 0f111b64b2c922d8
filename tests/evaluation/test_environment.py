"""The environment check: each program's reference judged on the judging path decides what its verdicts mean.

Real programs in the real local sandbox: a drifted float is re-recorded for that program alone, a
missing data file or library makes a program unscoreable (never the model's failure), and the
result is cached per environment.
"""

from __future__ import annotations

import json
import time

import pytest

from runner.evaluation import Evaluator
from runner.evaluation.environment import check_environment, float_drift
from runner.records import ExpectedOutputs, Language, Mode, Outcome, Program, Task
from tests.evaluation.conftest import FAST, python_program


def task_of(program: Program, span: tuple[int, int]) -> Task:
    """The task whose reference is lines ``span`` (1-indexed, inclusive) of the program's source."""
    lines = program.source.read_text().split("\n")
    start, end = span
    return Task(id=f"python/infill/{program.name}/{start}-{end}", benchmark="test", language=Language.python,
                mode=Mode.infill, program=program.name, span=span, before="\n".join(lines[:start - 1]),
                reference="\n".join(lines[start - 1:end]), after="\n".join(lines[end:]))


DRIFTING = "import math\n\ndef loss(x):\n    return math.exp(-x) / 3\n\nfor i in range(3):\n    print('loss', loss(i))\n"
TRUE_OUTPUT = "".join(f"loss {__import__('math').exp(-i) / 3}\n" for i in range(3))
# the recorded outputs of another library version: the 7th significant digit moved on two values
RECORDED = "loss 0.3333333333333333\nloss 0.12262648\nloss 0.045111761\n"


@pytest.fixture
def home(isolated_home):
    return isolated_home


def evaluator_for(*programs: Program) -> Evaluator:
    return Evaluator({p.name: p for p in programs}, limits=FAST, cascade="runner")


def test_float_drift_counts_moved_values_and_refuses_anything_else():
    drift = float_drift("loss 0.1234567 acc 2\nok", "loss  0.1234568 acc 2 ok")
    assert drift is not None and drift.values_moved == 1 and drift.values_compared == 2
    assert 0 < drift.max_relative_change < 1e-5
    assert float_drift("loss 0.1234567 acc 2", "loss 0.1234567 acc 3") is None  # an integer changed
    assert float_drift("loss 0.5", "loss 0.6") is None  # beyond float digits
    assert float_drift("loss 0.5", "gain 0.5") is None  # the text changed
    assert float_drift("loss 0.5 0.5", "loss 0.5") is None



def test_float_drift_ignores_numpy_padding_that_a_shorter_number_brings_or_takes():
    """numpy pads every element of an array to the widest one: when a moved value prints a digit
    shorter (or longer), a space appears or vanishes before the bracket or between elements
    (GAN_model's ``-0.07414072]`` printed as ``-0.0741407 ]``). Only the numbers' digits moved."""
    recorded = ("conv2d_equal tf.Tensor(\n[[[[-0.02501526 -0.02027172 -0.00292641 ... -0.00107993 -0.01935822\n"
                "    -0.07414072]\n   [-0.0356211  0.07685356]]]], shape=(1, 2, 2), dtype=float32)\n")
    here = ("conv2d_equal tf.Tensor(\n[[[[-0.02501527 -0.02027172 -0.00292641 ... -0.00107993 -0.01935822\n"
            "    -0.0741407 ]\n   [-0.03562111 0.07685356]]]], shape=(1, 2, 2), dtype=float32)\n")
    drift = float_drift(here, recorded)
    assert drift is not None and drift.values_moved == 3 and drift.max_relative_change < 1e-6
    assert float_drift("[ 0.1234568 -0.5]", "[ 0.1234567 -0.5      ]").values_moved == 1
    # the text itself must still agree, and no number may appear or vanish with the spaces
    assert float_drift("[ 0.1234568 -0.5 ]!", "[ 0.1234567 -0.5 ]") is None
    assert float_drift("[0.1 2]", "[0.1 2 ]x") is None
    assert float_drift("[0.5 1]", "[0.51]") is None

def test_a_drifted_program_is_re_recorded_alone_and_its_reference_then_passes(sandbox, world_dir, home):
    drifting = python_program(world_dir, "gan", DRIFTING, [("", RECORDED)], output_to_check="all_output")
    steady = python_program(world_dir, "steady", "print('ok')\n", [("", "ok")])
    evaluator = evaluator_for(drifting, steady)
    tasks = [task_of(drifting, (4, 4)), task_of(steady, (1, 1))]
    upstream_json = drifting.source.with_suffix(".json").read_text()

    before = evaluator.evaluate(tasks[0], tasks[0].reference)
    assert before.outcome is Outcome.fail  # what every answer got before the check

    report = check_environment(evaluator, tasks, benchmark="test", commit="c0")
    checks = report.by_program()
    assert checks["gan"].scoreable and checks["gan"].expected_outputs is ExpectedOutputs.re_recorded
    assert checks["gan"].drift.values_moved == 2 and checks["gan"].drift.max_relative_change < 1e-6
    assert checks["steady"].expected_outputs is ExpectedOutputs.upstream and checks["steady"].drift is None
    assert [p.program for p in report.re_recorded()] == ["gan"]
    # upstream's file is untouched; the re-recorded one holds this environment's output
    assert drifting.source.with_suffix(".json").read_text() == upstream_json
    recorded = json.loads(checks["gan"].re_recorded.read_text())["expected_output1"]
    assert recorded.replace("\\n", "\n") == TRUE_OUTPUT

    verdict = evaluator.evaluate(tasks[0], tasks[0].reference)
    assert verdict.outcome is Outcome.passed and verdict.expected_outputs is ExpectedOutputs.re_recorded
    wrong = evaluator.evaluate(tasks[0], "    return math.exp(-x) / 4")
    assert wrong.outcome is Outcome.fail  # re-recorded outputs still judge
    assert evaluator.evaluate(tasks[1], tasks[1].reference).expected_outputs is ExpectedOutputs.upstream


def test_expected_upstream_keeps_the_recorded_outputs_and_the_drifted_program_is_unscoreable(sandbox, world_dir, home):
    drifting = python_program(world_dir, "gan", DRIFTING, [("", RECORDED)], output_to_check="all_output")
    evaluator = evaluator_for(drifting)
    task = task_of(drifting, (4, 4))
    report = check_environment(evaluator, [task], benchmark="test", commit="c0", expected="upstream")
    check = report.by_program()["gan"]
    assert not check.scoreable and check.suspect == "drift" and "--expected upstream" in check.reason
    verdict = evaluator.evaluate(task, task.reference)
    assert verdict.outcome is Outcome.unscoreable and "drifted" in verdict.unscoreable_reason


def test_a_missing_data_file_makes_the_program_unscoreable_with_its_name(sandbox, world_dir, home):
    # like Image_Filtering: the program reads a video the copy lacks, and a library reads it silently
    source = ("import os\n\ndef rate(path):\n    return 78.0 if os.path.exists(path) else 0.0\n\n"
              "print(f'Heart Rate: {rate(\"./alice.avi\"):.2f}')\n")
    video = python_program(world_dir, "video", source, [("", "Heart Rate: 78.00")])
    evaluator = evaluator_for(video)
    task = task_of(video, (4, 4))
    check = check_environment(evaluator, [task], benchmark="test", commit="c0").by_program()["video"]
    assert not check.scoreable and check.suspect == "missing_file"
    assert "alice.avi" in check.reason and "a data file is missing" in check.reason
    started = time.monotonic()
    verdict = evaluator.evaluate(task, "    return 78.0")  # even a right answer: nothing can pass here
    assert verdict.outcome is Outcome.unscoreable and "alice.avi" in verdict.unscoreable_reason
    assert time.monotonic() - started < 0.5  # judged without running the program

    (world_dir / "video" / "alice.avi").write_bytes(b"frames")  # the user supplies the file
    again = check_environment(evaluator, [task], benchmark="test", commit="c0").by_program()["video"]
    assert again.scoreable and not again.cached  # the folder changed: the cached result does not apply
    assert evaluator.evaluate(task, task.reference).outcome is Outcome.passed


def test_a_missing_library_is_an_environment_problem_not_a_failure(sandbox, world_dir, home):
    program = python_program(world_dir, "needs", "import module_that_is_not_installed\nprint(1)\n", [("", "1")])
    evaluator = evaluator_for(program)
    task = task_of(program, (2, 2))
    check = check_environment(evaluator, [task], benchmark="test", commit="c0").by_program()["needs"]
    assert not check.scoreable and check.suspect == "environment"
    assert "module_that_is_not_installed" in check.reason


def test_an_output_that_differs_beyond_float_digits_is_not_re_recorded(sandbox, world_dir, home):
    program = python_program(world_dir, "other", "print('total', 41)\n", [("", "total 42")], output_to_check="all_output")
    evaluator = evaluator_for(program)
    task = task_of(program, (1, 1))
    check = check_environment(evaluator, [task], benchmark="test", commit="c0").by_program()["other"]
    assert not check.scoreable and check.re_recorded is None and "beyond float digits" in check.reason


def test_the_check_is_cached_per_environment_and_taken_again_when_the_expected_outputs_change(sandbox, world_dir, home):
    drifting = python_program(world_dir, "gan", DRIFTING, [("", RECORDED)], output_to_check="all_output")
    task = task_of(drifting, (4, 4))
    first = check_environment(evaluator_for(drifting), [task], benchmark="test", commit="c0").programs[0]
    assert not first.cached
    second = check_environment(evaluator_for(drifting), [task], benchmark="test", commit="c0").programs[0]
    assert second.cached and second.re_recorded == first.re_recorded
    other_commit = check_environment(evaluator_for(drifting), [task], benchmark="test", commit="c1").programs[0]
    assert not other_commit.cached
    json_path = drifting.source.with_suffix(".json")
    json_path.write_text(json.dumps({"test_case1": "", "expected_output1": TRUE_OUTPUT}))
    fresh = check_environment(evaluator_for(drifting), [task], benchmark="test", commit="c0").programs[0]
    assert not fresh.cached


def test_a_program_slower_than_the_floor_is_re_recorded_under_the_ceiling(sandbox, world_dir, home):
    # TensorFlow programs take minutes on a loaded machine: their new outputs must not time out at the floor
    from runner.evaluation import Limits

    source = "import time\n\ntime.sleep(1.5)\nprint('loss', 1 / 3)\n"
    program = python_program(world_dir, "slow", source, [("", "loss 0.33333334")], output_to_check="all_output")
    evaluator = Evaluator({program.name: program}, limits=Limits(wall_seconds=0.5), cascade="runner", ceiling_seconds=30)
    check = check_environment(evaluator, [task_of(program, (3, 3))], benchmark="test", commit="c0").programs[0]
    assert check.scoreable and check.expected_outputs is ExpectedOutputs.re_recorded, check.reason
    assert json.loads(check.re_recorded.read_text())["expected_output1"] == f"loss {1 / 3}\\n"  # escaped, as upstream stores it
