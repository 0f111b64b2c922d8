"""The evaluator end to end: cascade stages on real programs, parallel evaluation, scaled time limits."""

from __future__ import annotations

import pytest

from runner.errors import UserError
from runner.evaluation.evaluator import Evaluator
from runner.evaluation.java_check import java_toolchain
from runner.evaluation.sandbox import Limits
from runner.records import Language, Mode, Outcome, Stage, Task
from tests.conftest import require
from tests.evaluation.conftest import FAST, JAVA, java_program, python_program

PY = """def mean(xs):
    total = 0
    for x in xs:
        total += x
    return total / len(xs)

print(mean([1, 2, 3, 6]))
"""

BOX = """import junit.framework.TestCase;

class Box {
    int v;
    Box(int v) {
        this.v = v;
    }
    int twice() {
        return 2 * v;
    }
}

public class BoxTester extends TestCase {
    public void testTwice() {
        assertEquals(8, new Box(4).twice());
    }
}
"""


def task_for(program, text: str, start: int, end: int, mode: Mode = Mode.infill) -> Task:
    lines = text.split("\n")
    return Task(
        id=f"{program.language.value}/{mode.value}/{program.name}/{start}-{end}",
        benchmark="test",
        language=program.language,
        mode=mode,
        program=program.name,
        span=(start, end),
        before="\n".join(lines[: start - 1]),
        reference="\n".join(lines[start - 1 : end]),
        after="\n".join(lines[end:]),
    )


@pytest.fixture
def py_setup(world_dir, sandbox):
    program = python_program(world_dir, "mean", PY, [("", "3.0")])
    return Evaluator({program.name: program}, limits=FAST, sandbox=sandbox), program


@pytest.fixture
def java_setup(world_dir, sandbox):
    try:
        java_toolchain()
    except UserError as exc:
        require(False, f"JDK and JUnit jars ({exc})")
    program = java_program(world_dir, "BoxTester", BOX)
    return Evaluator({program.name: program}, limits=JAVA, sandbox=sandbox), program


def test_reference_passes_at_the_cleaned_stage(py_setup):
    evaluator, program = py_setup
    task = task_for(program, PY, 4, 4)
    verdict = evaluator.evaluate(task, task.reference)
    assert (verdict.outcome, verdict.stage, verdict.cleaned_outcome) == (Outcome.passed, Stage.cleaned, Outcome.passed)


def test_a_chatty_answer_with_repeated_context_and_no_indentation_passes_only_when_reindented(py_setup):
    evaluator, program = py_setup
    task = task_for(program, PY, 4, 4)
    raw = "Here you go:\n```python\n    for x in xs:\ntotal += x\n    return total / len(xs)\n```\nHope it helps."
    verdict = evaluator.evaluate(task, raw)
    assert verdict.outcome is Outcome.passed
    assert verdict.stage is Stage.reindented
    assert verdict.cleaned_outcome is Outcome.compile_error
    assert verdict.code == "        total += x"


def test_a_wrong_answer_fails_through_every_stage(py_setup):
    evaluator, program = py_setup
    task = task_for(program, PY, 4, 4)
    verdict = evaluator.evaluate(task, "total -= x")
    assert verdict.outcome is Outcome.fail
    assert verdict.stage is Stage.reindented  # the last stage tried gives the verdict
    assert verdict.cleaned_outcome is Outcome.compile_error


def test_java_answer_with_a_surplus_brace_passes_when_balanced(java_setup):
    evaluator, program = java_setup
    task = task_for(program, BOX, 9, 9)
    verdict = evaluator.evaluate(task, "        return 2 * v; }")
    assert verdict.cleaned_outcome is Outcome.compile_error
    assert (verdict.outcome, verdict.stage) == (Outcome.passed, Stage.balanced)


def test_java_completion_still_runs_the_hidden_after(java_setup):
    evaluator, program = java_setup
    task = task_for(program, BOX, 9, 9, Mode.completion)
    # ``after`` holds the tester: a wrong body must be caught by it.
    assert evaluator.evaluate(task, "        return 3 * v;").outcome is Outcome.fail


def test_parallel_evaluation_keeps_input_order_and_verdicts(py_setup):
    evaluator, program = py_setup
    task = task_for(program, PY, 4, 4)
    answers = ["        total += x", "        total += 2 * x", "        total +=", "        total += x"]
    results = list(evaluator.evaluate_many([(task, a) for a in answers], workers=2))
    assert [v.outcome for _, v in results] == [Outcome.passed, Outcome.fail, Outcome.compile_error, Outcome.passed]


def test_time_limits_scale_from_the_reference_run(py_setup, world_dir, sandbox):
    evaluator, program = py_setup
    seconds = evaluator.reference_seconds(program)
    assert seconds is not None and 0 < seconds < FAST.wall_seconds
    limits = Limits(wall_seconds=1, time_factor=4)
    assert limits.scaled(3.0).wall_seconds == 12.0
    assert limits.scaled(0.1).wall_seconds == 1
    broken = python_program(world_dir, "broken", "raise SystemExit(1)\n", [("", "x")])
    assert Evaluator({broken.name: broken}, limits=FAST, sandbox=sandbox).reference_seconds(broken) is None


def test_every_verdict_keeps_both_cascades_and_the_headline_is_upstreams(simcopilot, sandbox):
    from runner.benchmarks import load_benchmark
    from runner.records import Cascade

    bench = load_benchmark("simcopilot")
    task = bench.task("python/infill/simplex_method/16-16")
    evaluator = Evaluator(bench.programs, sandbox=sandbox, cascade="upstream", both=True)
    # prose before unfenced code: upstream's clean_code keeps only lines its code regex knows;
    # our cascade keeps the prose and the program does not compile
    verdict = evaluator.evaluate(task, "Here is the missing line.\n" + task.reference)
    assert verdict.cascade is Cascade.upstream
    assert verdict.upstream.outcome is Outcome.passed and verdict.upstream.pass_ratio == "3/3"
    assert verdict.runner.outcome is Outcome.compile_error
    assert (verdict.outcome, verdict.stage) == (verdict.upstream.outcome, verdict.upstream.stage)
    ours = Evaluator(bench.programs, sandbox=sandbox, cascade="runner", both=True).evaluate(task, task.reference)
    assert ours.cascade is Cascade.runner and ours.upstream is not None and ours.runner.outcome is Outcome.passed
