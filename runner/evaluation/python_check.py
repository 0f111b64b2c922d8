"""Checking a Python program: each test case appended and run in a private copy of its data folder."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from pydantic import BaseModel

from runner.errors import UserError
from runner.evaluation.sandbox import ExecResult, Limits, Sandbox
from runner.records import Outcome, Program

# Keep numeric libraries single-threaded: the process limit counts threads, and on a small
# shared machine oversubscribed BLAS pools make run times (and time limits) unstable.
PYTHON_ENV = {
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
_SYNTAX = re.compile(r"^(SyntaxError|IndentationError|TabError)\b", re.MULTILINE)


class CheckResult(BaseModel):
    """The verdict on one assembled program, with what its runs printed."""

    outcome: Outcome
    stderr_tail: str = ""
    seconds: float = 0.0  # the longest single run, the basis of scaled time limits
    outputs: list[str] = []  # stdout of each test case (or of the JUnit run)


def python_interpreter() -> str:
    """The interpreter that runs benchmark programs: ``$RUNNER_EVAL_PYTHON`` or this one."""
    return os.environ.get("RUNNER_EVAL_PYTHON") or sys.executable


def answer_keys(program: Program) -> set[Path]:
    """The program's test-case files: ``<stem>.json`` (Python's expected outputs, Java's recorded
    console run) and a re-baselined copy, which the program under test must never read."""
    keys = {program.source.with_suffix(".json"), *([program.tests_json] if program.tests_json else [])}
    return {Path(os.path.realpath(key)) for key in keys}


def copy_data(program: Program, workdir: Path) -> None:
    """Copy the program's data files (not its sources, not its answer key) into the private directory."""
    if not program.data_dir.is_dir():
        return
    keys = answer_keys(program)
    for item in program.data_dir.iterdir():
        if item.suffix in (".py", ".java") or item.name.startswith("."):
            continue
        if Path(os.path.realpath(item)) in keys:
            continue
        if item.is_dir():
            shutil.copytree(item, workdir / item.name, symlinks=False)
        else:
            shutil.copy2(item, workdir / item.name)


def last_line(text: str) -> str:
    """The last non-empty line, stripped (``final_output``)."""
    lines = [l.strip() for l in text.strip().split("\n") if l.strip()]
    return lines[-1] if lines else ""


def outputs_match(actual: str, expected: str, output_to_check: str) -> bool:
    """Compare stdout as upstream does: last non-empty line, or whole output with whitespace runs collapsed."""
    if output_to_check == "all_output":
        return " ".join(actual.split()) == " ".join(expected.split())
    return last_line(actual) == last_line(expected)


def first_difference(actual: str, expected: str) -> str:
    """Where two whole outputs first differ, word by word (for an ``all_output`` mismatch), as a clause."""
    got, want = actual.split(), expected.split()
    for index, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"; word {index + 1} of {len(want)} is {a!r}, expected {b!r}"
    return f"; {len(got)} words, expected {len(want)}"


def classify_run(result: ExecResult) -> Outcome | None:
    """The outcome a failed run implies, or ``None`` when the run ended normally."""
    if result.timed_out:
        return Outcome.timeout
    if result.output_truncated or result.killed_by_signal or result.exit_code != 0:
        if _SYNTAX.search(result.stderr_tail):
            return Outcome.compile_error
        return Outcome.runtime_error
    return None


def _tail(result: ExecResult) -> str:
    if result.timed_out:
        return f"timed out after {result.seconds:.1f} s\n{result.stderr_tail}"
    if result.output_truncated:
        return f"stdout exceeded the output limit; killed\n{result.stderr_tail}"
    if result.killed_by_signal:
        return f"killed by signal {result.killed_by_signal}\n{result.stderr_tail}"
    return result.stderr_tail


def check_python(
    program: Program,
    source: str,
    sandbox: Sandbox,
    limits: Limits,
    compare: bool = True,
    python: str | None = None,
) -> CheckResult:
    """Run ``source`` with each test case; pass when every output matches (or, without ``compare``, every run ends cleanly)."""
    if not program.test_cases:
        raise UserError(f"{program.source}: Python program {program.name!r} has no test cases; add {program.source.stem}.json")
    interpreter = python or python_interpreter()
    filename = program.source.name
    outputs: list[str] = []
    longest = 0.0
    for case in program.test_cases:
        text = source + "\n" + case.code
        try:
            compile(text, filename, "exec")
        except (SyntaxError, ValueError) as exc:
            return CheckResult(outcome=Outcome.compile_error, stderr_tail=f"{type(exc).__name__}: {exc}", outputs=outputs)
        with sandbox.workdir(limits) as workdir:
            copy_data(program, workdir)
            (workdir / filename).write_text(text, encoding="utf-8")
            result = sandbox.run([interpreter, filename], workdir, limits, env=PYTHON_ENV)
        longest = max(longest, result.seconds)
        failed = classify_run(result)
        if failed is not None:
            return CheckResult(outcome=failed, stderr_tail=_tail(result), seconds=longest, outputs=outputs)
        outputs.append(result.stdout)
        if compare and not outputs_match(result.stdout, case.expected_output, program.output_to_check):
            got, want = last_line(result.stdout), last_line(case.expected_output)
            where = first_difference(result.stdout, case.expected_output) if program.output_to_check == "all_output" else ""
            return CheckResult(
                outcome=Outcome.fail,
                stderr_tail=f"output differs (last line {got!r}, expected {want!r}{where})\n{result.stderr_tail}",
                seconds=longest,
                outputs=outputs,
            )
    return CheckResult(outcome=Outcome.passed, seconds=longest, outputs=outputs)
