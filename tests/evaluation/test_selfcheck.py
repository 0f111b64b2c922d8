"""The sandbox's self-check: a known-pass and a known-fail program per language, through the real path."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.evaluation import Evaluator
from runner.evaluation.sandbox import LocalSandbox
from runner.evaluation.selfcheck import self_check, self_check_message, self_check_problem
from runner.records import Language
from tests.conftest import require
from tests.evaluation.conftest import FAST, JAVA


def evaluator_for(python: str | None = None, limits=JAVA) -> Evaluator:
    return Evaluator({}, limits=limits, sandbox=LocalSandbox(), python=python)


def test_the_self_check_passes_here_for_python_and_java_quickly(sandbox):
    require(shutil.which("javac") is not None, "javac (openjdk-17-jdk-headless)")
    evaluator = evaluator_for()
    started = time.monotonic()
    self_check(evaluator, {Language.python})
    assert time.monotonic() - started < 5  # before every score and run: it must stay cheap
    self_check(evaluator, {Language.python, Language.java})
    assert self_check_message(evaluator, {Language.python, Language.java}) is None


def test_a_venv_under_tmp_passes_the_self_check(sandbox):
    """The issue's case: before, every answer there was a runtime_error (``setpriv: failed to execute``)."""
    parent = Path(tempfile.mkdtemp(prefix="runner-test-venv-", dir="/tmp"))
    try:
        require(Path("/usr/bin/python3").is_file(), "/usr/bin/python3")
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(parent / ".venv")], check=True, timeout=120)
        self_check(evaluator_for(str(parent / ".venv" / "bin" / "python3"), FAST), {Language.python})
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("broken", ["missing", "not-executable"])
def test_an_interpreter_the_sandbox_cannot_start_fails_the_self_check_in_one_line(broken, sandbox, world_dir):
    python = world_dir / "bin" / "python3"
    python.parent.mkdir(mode=0o755)
    if broken == "not-executable":
        python.write_text('#!/bin/sh\nexec /usr/bin/python3 "$@"\n')
        python.chmod(0o700)  # root may run it (so the sandbox learns its prefix), the private uid may not
    evaluator = evaluator_for(str(python), FAST)
    problem = self_check_problem(evaluator, Language.python)
    assert problem is not None and "\n" not in problem, problem
    assert problem.startswith("sandbox self-check failed") and str(python) in problem
    assert ("No such file" if broken == "missing" else "Permission denied") in problem  # the cause
    assert "RUNNER_EVAL_PYTHON=/usr/bin/python3" in problem  # the fix
    with pytest.raises(UserError) as raised:
        self_check(evaluator, {Language.python, Language.java})
    assert str(raised.value) == problem
    assert self_check_message(evaluator, {Language.python}) == problem


def test_an_interpreter_that_gets_every_verdict_wrong_fails_the_self_check(sandbox, world_dir):
    """One that starts but prints nothing: the known-pass program would be the model's failure."""
    python = world_dir / "bin" / "python3"
    python.parent.mkdir(mode=0o755)
    python.write_text("#!/bin/sh\necho 'ImportError: this interpreter is broken' >&2\nexit 1\n")
    python.chmod(0o755)
    problem = self_check_problem(evaluator_for(str(python), FAST), Language.python)
    assert problem is not None and "\n" not in problem
    assert "known-pass python program gave runtime_error" in problem and "this interpreter is broken" in problem


def test_a_java_toolchain_that_cannot_run_fails_the_self_check_in_one_line(sandbox, world_dir):
    jar = world_dir / "no-such-console.jar"
    evaluator = Evaluator({}, limits=JAVA, sandbox=LocalSandbox(), junit_console=jar)
    problem = self_check_problem(evaluator, Language.java)
    assert problem is not None and "\n" not in problem
    assert str(jar) in problem and "junit5" in problem
    # python still passes: the message is the failing language's
    with pytest.raises(UserError, match="junit5"):
        self_check(evaluator, {Language.python, Language.java})
