"""Upstream SimCoPilot programs run in the local sandbox, as root, with the data under a 0700 folder.

This is how the upstream Java oracle once failed (issue 8, item 8): the sandbox's uid could not
read the benchmark's own JUnit launcher inside root's private folders (0 of 53 tasks of
DoubleVectorTester passed). What a program needs is now copied into its private directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.benchmarks import load_benchmark
from runner.evaluation import Evaluator
from runner.evaluation.sandbox import LocalSandbox, capabilities
from runner.records import Outcome
from tests.conftest import require
from tests.evaluation.conftest import JAVA

pytestmark = pytest.mark.timeout(900)


def private_ancestor(path: Path) -> Path | None:
    """The nearest folder above ``path`` that other users cannot enter."""
    for parent in Path(os.path.realpath(path)).parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


@pytest.fixture
def upstream_evaluator(simcopilot) -> tuple[Evaluator, object]:
    caps = capabilities()
    require(caps.complete, f"a complete local sandbox (missing: {caps.missing()})")
    bench = load_benchmark("simcopilot")
    assert os.geteuid() == 0
    folder = private_ancestor(bench.junit_jar)
    assert folder is not None and folder.stat().st_mode & 0o777 == 0o700, "the data must sit under a 0700 folder"
    evaluator = Evaluator(bench.programs, sandbox=LocalSandbox(), junit_console=bench.junit_jar, limits=JAVA)
    return evaluator, bench


@pytest.mark.parametrize("program, count", [("DoubleVectorTester", 3), ("simplex_method", 2)])
def test_upstream_references_pass_as_another_uid_with_the_data_in_a_private_folder(upstream_evaluator, program, count):
    evaluator, bench = upstream_evaluator
    tasks = [t for t in bench.tasks if t.program == program][:count]
    assert tasks, f"no task of {program}"
    for task in tasks:
        verdict = evaluator.evaluate(task, task.reference)
        assert verdict.outcome is Outcome.passed, f"{task.id}: {verdict.stderr_tail[-600:]}"
