"""The sandbox's self-check: one known-pass and one known-fail program per language, before any answer.

A sandbox that cannot start the interpreter (a venv hidden by the private ``/tmp``, a home the
sandbox's uid cannot traverse, a missing JDK) would otherwise turn every answer into a
``runtime_error``: the model's failure in every table. The check runs each language's two tiny
programs through the evaluator's real path (its sandbox, interpreter, toolchain and limits) and
stops with one line naming the cause and the fix when either gives the wrong verdict.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from runner.errors import EnvironmentFailure, UserError
from runner.records import Language, Outcome, Program, TestCase

_PYTHON = "def double(x):\n    return 2 * x\n\n"
_PYTHON_CASE = "print(double(21))"
_JAVA = """import junit.framework.TestCase;

public class SelfCheckTester extends TestCase {
    static int twice(int x) { return 2 * x; }
    public void testTwice() { assertEquals(%d, twice(21)); }
}
"""
_FIX = {
    Language.python: "point RUNNER_EVAL_PYTHON at an interpreter every user may run (e.g. /usr/bin/python3), "
                     "or use --sandbox docker",
    Language.java: "install a JDK 17 with Debian's junit5 and junit4 packages (`apt-get install "
                   "openjdk-17-jdk-headless junit5 junit4`), or use --sandbox docker",
}


def self_check(evaluator, languages: set[Language]) -> None:
    """Raise a one-line ``UserError`` unless, for each language, the known-pass program passes and the known-fail one fails."""
    for language in sorted(languages, key=lambda lang: lang.value):
        problem = self_check_problem(evaluator, language)
        if problem:
            raise UserError(problem)


def self_check_problem(evaluator, language: Language) -> str | None:
    """Why the sandbox cannot judge ``language`` here (one line), or ``None`` when both programs get their verdict."""
    folder = Path(tempfile.mkdtemp(prefix="runner-selfcheck-"))
    os.chmod(folder, 0o755)  # the sandbox's uid reads the program's folder
    try:
        for expected in (Outcome.passed, Outcome.fail):
            program, source = _program(folder / expected.value, language, expected)
            try:
                result = evaluator.run_source(program, source, evaluator.limits)
            except EnvironmentFailure as exc:
                return _line(language, f"the sandbox cannot run the {language.value} check ({exc})")
            if result.outcome is not expected:
                why = _telling(result.stderr_tail) or "no output"
                return _line(language, f"the known-{'pass' if expected is Outcome.passed else 'fail'} "
                                       f"{language.value} program gave {result.outcome.value} ({why})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return None


def _program(folder: Path, language: Language, expected: Outcome) -> tuple[Program, str]:
    folder.mkdir(parents=True)
    os.chmod(folder, 0o755)
    if language is Language.python:
        source = folder / "selfcheck.py"
        source.write_text(_PYTHON)
        want = "42" if expected is Outcome.passed else "43"
        program = Program(name="selfcheck", language=language, source=source, data_dir=folder,
                          test_cases=(TestCase(code=_PYTHON_CASE, expected_output=want),))
        return program, _PYTHON
    text = _JAVA % (42 if expected is Outcome.passed else 43)
    source = folder / "SelfCheckTester.java"
    source.write_text(text)
    return Program(name="SelfCheckTester", language=language, source=source, data_dir=folder,
                   tester_class="SelfCheckTester"), text


def _telling(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in lines:
        if "failed to execute" in line or "cannot" in line.lower() or "not found" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else ""


def _line(language: Language, what: str) -> str:
    return f"sandbox self-check failed: {what}; {_FIX[language]}".replace("\n", " ")
