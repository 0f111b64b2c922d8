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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.errors import EnvironmentFailure, UserError
from runner.records import Language, Outcome, Program, TestCase

_PYTHON = "import json, sys\n\ndef double(x):\n    return 2 * x\n\n"
_PYTHON_CASE = "print(json.dumps(double(21)))"
_JAVA = """import junit.framework.TestCase;

public class SelfCheckTester extends TestCase {
    static int twice(int x) { return 2 * x; }
    public void testTwice() { assertEquals(%d, twice(21)); }
}
"""
_FIX = {
    Language.python: "set RUNNER_EVAL_PYTHON to an interpreter every user may run (e.g. RUNNER_EVAL_PYTHON=/usr/bin/python3), "
                     "or use --sandbox docker",
    Language.java: "install a JDK 17 with Debian's junit5 and junit4 packages (`apt-get install "
                   "openjdk-17-jdk-headless junit5 junit4`), or use --sandbox docker",
}
_ORDER = (Language.python, Language.java)
# the first stderr line that says why, in this order of preference
_TELLING = ("failed to execute", "Fatal Python error", "Error", "cannot", "not found")


#: sandboxes that passed in this process (a CLI test suite or a Ray worker asks many times)
_PASSED: set[tuple] = set()


def self_check(evaluator, languages: set[Language]) -> None:
    """Raise a one-line ``UserError`` unless, for each language, the known-pass program passes and the known-fail one fails."""
    sandbox = evaluator.sandbox
    key = (type(sandbox).__name__, getattr(sandbox, "image_digest", None), tuple(getattr(sandbox, "interpreters", ())),
           evaluator.python, str(getattr(evaluator, "_junit_console", None)), frozenset(languages))
    if key in _PASSED:
        return
    problem = self_check_message(evaluator, languages)
    if problem:
        raise UserError(problem)
    _PASSED.add(key)


def self_check_message(evaluator, languages: set[Language]) -> str | None:
    """The self-check's one-line failure message (the first failing language's, Python first), or ``None``."""
    ordered = [lang for lang in _ORDER if lang in languages] + sorted(set(languages) - set(_ORDER), key=str)
    if not ordered:
        return None
    # the languages' checks run side by side: a JVM's start is most of the check's time
    with ThreadPoolExecutor(max_workers=len(ordered), thread_name_prefix="selfcheck") as pool:
        problems = list(pool.map(lambda lang: self_check_problem(evaluator, lang), ordered))
    return next((p for p in problems if p), None)


def self_check_problem(evaluator, language: Language) -> str | None:
    """Why the sandbox cannot judge ``language`` here (one line), or ``None`` when both programs get their verdict."""
    folder = Path(tempfile.mkdtemp(prefix="runner-selfcheck-"))
    os.chmod(folder, 0o755)  # the sandbox's uid reads the program's folder
    try:
        expected = (Outcome.passed, Outcome.fail)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="selfcheck") as pool:
            problems = list(pool.map(lambda want: _verdict_problem(evaluator, folder, language, want), expected))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return next((p for p in problems if p), None)


def _verdict_problem(evaluator, folder: Path, language: Language, expected: Outcome) -> str | None:
    program, source = _program(folder / expected.value, language, expected)
    try:
        result = evaluator.run_source(program, source, evaluator.limits)
    except (EnvironmentFailure, UserError) as exc:
        return _line(language, f"the sandbox cannot run the {language.value} check: {exc}")
    if result.outcome is expected:
        return None
    why = _telling(result.stderr_tail) or "no output"
    kind = "pass" if expected is Outcome.passed else "fail"
    return _line(language, f"the known-{kind} {language.value} program gave {result.outcome.value} ({why})")


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
    for word in _TELLING:
        for line in lines:
            if word.lower() in line.lower():
                return line[:300]
    return lines[-1][:300] if lines else ""


def _line(language: Language, what: str) -> str:
    return " ".join(f"sandbox self-check failed: {what}; {_FIX[language]}".split())
