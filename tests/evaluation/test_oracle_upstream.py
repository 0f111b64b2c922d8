"""The reference oracle on upstream SimCoPilot: the references of a fast subset pass in the sandbox image.

The full oracle (all available tasks, in the TensorFlow image) takes hours on two shared cores;
README ("The reference oracle") says how it runs, and its record is in bench/results. CI runs,
through the CLI, every other task of a Python program that needs no third-party package
(TensorFlow's import alone costs seconds a run) and every fifth of a Java tester (javac and a JVM
each), in the CPU (standard-library) variant of the same Dockerfile, as the image's uid, with
upstream's data installed private to root (0700) as `runner data fetch` leaves it.
"""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from runner.benchmarks import load_benchmark
from runner.cli import main
from runner.evaluation import TaskCheck
from runner.evaluation.evaluator import UPSTREAM_TIMEOUT_SECONDS
from runner.records import Mode, Outcome
from tests.docker_images import SANDBOX_CPU_ENV, engine, sandbox_cpu_image

pytestmark = pytest.mark.timeout(1800)

# A Python program on the standard library only (heapq; 45 tasks, three test cases each) and a Java
# tester with its own jar beside upstream's JUnit console (43 tasks, javac and JUnit each).
FAST_SUBSET = {"simplex_method": 2, "SparseArrayTester": 5}  # program: check every n-th task of each mode


@pytest.fixture(scope="module")
def cpu_sandbox_image():
    return sandbox_cpu_image(engine())


@pytest.mark.parametrize("program", FAST_SUBSET)
def test_the_upstream_references_of_the_program_pass_in_the_sandbox_image(
        program, simcopilot, cpu_sandbox_image, monkeypatch, tmp_path):
    for key, value in SANDBOX_CPU_ENV.items():
        monkeypatch.setenv(key, value)
    # as installed: the sandbox's uid could not read it in place
    assert stat.S_IMODE(simcopilot.resolve().stat().st_mode) == 0o700
    step = FAST_SUBSET[program]
    tasks = [t for mode in Mode for t in load_benchmark("simcopilot").select(program=program, mode=mode)[::step]
             if t.available]
    record = tmp_path / "oracle.jsonl"
    argv = ["tasks", "check", "--benchmark", "simcopilot", "--program", program, "--sandbox", "docker",
            "--record", str(record), "--json", *[a for t in tasks for a in ("--task", t.id)]]

    result = CliRunner().invoke(main, argv)

    assert result.exit_code == 0, result.output[-4000:]
    checks = [TaskCheck.model_validate_json(line) for line in result.stdout.splitlines()]
    assert sorted(c.task_id for c in checks) == sorted(t.id for t in tasks)
    assert {c.mode for c in checks} == {Mode.infill, Mode.completion}
    assert {c.cascade for c in checks} == {"upstream"}  # the oracle judges on the headline path
    failed = [(c.task_id, c.outcome.value, c.suspect, c.stderr_tail[-500:]) for c in checks if c.outcome is not Outcome.passed]
    assert failed == []
    assert all(0 < c.wall_limit_seconds <= UPSTREAM_TIMEOUT_SECONDS for c in checks)
    # each check was appended as it completed; a rerun finds them all and runs nothing again
    assert len(record.read_text().splitlines()) == len(checks)
    rerun = CliRunner().invoke(main, argv)
    assert rerun.exit_code == 0, rerun.output[-2000:]
    assert f"{len(checks)} tasks already checked, 0 to go" in rerun.output
    assert rerun.stdout.splitlines() == result.stdout.splitlines()

