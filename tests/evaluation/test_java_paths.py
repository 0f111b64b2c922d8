"""Upstream's Java check in one JVM (``java_path="one-jvm"``, ours) against upstream's own two JVMs
(``javac+java``, the default), on a real SimCoPilot task: the same verdict for each kind of answer.

Real javac/java, the real local sandbox, upstream's cascade and test runner. One task of
DoubleVectorTester (its constructor's last line), answered six ways: the reference (pass), a wrong
value (tests fail), a missing semicolon (compile error), a thrown exception (the tests error), an
exit before JUnit reports (no completion record: a runtime error) and an endless loop (timeout).
The verdict cache keeps the two paths' verdicts apart (``java_fast`` is in its key).
"""

from __future__ import annotations

import pytest

from runner.benchmarks import benchmark_commit, load_benchmark
from runner.evaluation import upstream, verdicts
from runner.evaluation.java_paths import JavaPathEvaluator, differences, result_kind, summary
from runner.evaluation.sandbox import Limits, LocalSandbox, capabilities
from runner.records import Cascade, Outcome
from tests.conftest import require

pytestmark = pytest.mark.timeout(900)

TASK = "java/infill/DoubleVectorTester/224-224"  # "    baselineData = initialValue;"
#: answer -> (the code in a fenced block, the outcome both paths must give, the kind of upstream's
#: answer from the test run)
ANSWERS = {
    "pass": (None, Outcome.passed, "stdout"),
    "fail": ("    baselineData = initialValue + 1;", Outcome.fail, "error_tests_failed"),
    "compile_error": ("    baselineData = initialValue", Outcome.compile_error, "compile_error"),
    "exception": ('    if (true) throw new IllegalStateException("boom");', Outcome.fail, "error_tests_failed"),
    "exit": ("    System.exit(0);", Outcome.runtime_error, "no_record"),
    "timeout": ("    while (System.nanoTime() > 0) { }", Outcome.timeout, "timeout"),
}
ROOMY = Limits(wall_seconds=120, cpu_seconds=240)
SHORT = Limits(wall_seconds=10, cpu_seconds=30)  # an endless loop times out under any limit


@pytest.fixture
def bench(simcopilot):
    require(capabilities().complete, f"a complete local sandbox (missing: {capabilities().missing()})")
    return load_benchmark("simcopilot")


def evaluator(bench, one_jvm: bool, limits: Limits = ROOMY) -> JavaPathEvaluator:
    return JavaPathEvaluator(bench.programs, sandbox=LocalSandbox(), junit_console=bench.junit_jar, limits=limits,
                             scale_time=False, cascade=Cascade.upstream, java_fast=one_jvm)


def fenced(code: str) -> str:
    return f"```java\n{code}\n```"


def test_upstreams_two_jvms_stay_the_default():
    assert upstream.DEFAULT_JAVA_PATH == "javac+java"
    assert upstream.SandboxedExecution(None, None, None, "python").java_path == "javac+java"
    with pytest.raises(ValueError, match="java_path"):
        upstream.SandboxedExecution(None, None, None, "python", java_path="in-memory")


def test_one_jvm_gives_upstreams_verdict_for_every_kind_of_answer(bench):
    task = bench.task(TASK)
    paths = {False: evaluator(bench, False), True: evaluator(bench, True)}
    short = {False: evaluator(bench, False, SHORT), True: evaluator(bench, True, SHORT)}
    assert [paths[one].java_path for one in (False, True)] == ["javac+java", "one-jvm"]
    problems = []
    for name, (code, outcome, kind) in ANSWERS.items():
        raw = fenced(task.reference if code is None else code)
        judged = {}
        for one_jvm in (False, True):
            chosen = short if name == "timeout" else paths
            judged[one_jvm] = summary(*chosen[one_jvm].judge(task, raw))
        two, one = judged[False], judged[True]
        if two["outcome"] != outcome.value or set(two["result_kinds"]) != {kind}:
            problems.append(f"{name}: upstream's path gave {two['outcome']} ({two['result_kinds']}), "
                            f"the test expects {outcome.value} ({kind}): {two['detail'][-300:]}")
        diff = differences(two, one)
        if diff:
            problems.append(f"{name}: the paths differ: {'; '.join(diff)}\n  javac+java: {two['detail'][-300:]}"
                            f"\n  one-jvm: {one['detail'][-300:]}")
    assert not problems, "\n".join(problems)


def test_a_compile_error_reads_as_upstreams_javac_wrote_it(bench):
    """javac's diagnostics, byte for byte, behind upstream's "Error: Compilation error: " (and nothing
    of a successful compile's notes leaks into a test run's output)."""
    task = bench.task(TASK)
    program = bench.programs[task.program]
    before, _, after = upstream.task_parts(task)
    texts = {}
    for one_jvm in (False, True):
        ev = evaluator(bench, one_jvm)
        run = upstream.run_tests(ev.upstream, program, before, ["    baselineData = initialValue"], after,
                                 ev.upstream_execution(program), timeout=ROOMY.wall_seconds)
        assert run.outcome is Outcome.compile_error and run.pass_ratio.startswith("0/")
        texts[one_jvm] = run.detail
    assert texts[False].startswith("Error: Compilation error: DoubleVectorTester.java:224: error: ';' expected")
    assert texts[True] == texts[False]


def test_result_kinds():
    assert result_kind("") == "stdout"
    assert result_kind("Timeout: Execution exceeded time limit.") == "timeout"
    assert result_kind("Error: Compilation error: X.java:1: error") == "compile_error"
    assert result_kind("Error: the JVM ended without the launcher's completion record\n") == "no_record"
    assert result_kind("Error: [ 1 tests failed ]") == "error_tests_failed"
    assert result_kind("Error: boom") == "error"
    assert result_kind("some output") == "stdout"


def test_the_verdict_cache_keeps_the_two_paths_apart(bench, isolated_home):
    task = bench.task(TASK)
    raw = fenced(task.reference)
    cache = verdicts.attach(evaluator(bench, False), benchmark=bench.name, commit=benchmark_commit(bench),
                            edition=bench.edition, run="r1")
    two, one = evaluator(bench, False), evaluator(bench, True)
    for ev in (two, one):
        ev.sandbox_fingerprint = "local:fixed"  # the same sandbox: only the Java path differs
    assert cache.key(two, task, raw) != cache.key(one, task, raw)
    first = cache.judge(two, task, raw, "cell")
    assert first.verdict.outcome is Outcome.passed and first.cached and first.sandbox_runs > 0
    again = cache.judge(one, task, raw, "cell")
    assert again.reused_from is None and again.sandbox_runs > 0, "the one-JVM path reused javac+java's verdict"
    assert cache.judge(one, task, raw, "cell").reused_from == "r1/cell"
