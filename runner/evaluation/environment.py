"""The environment check: each program's own reference judged on the path that will judge answers.

Before any answer is judged (``runner reproduce``, ``score``, ``tasks check``), every selected
program's reference runs once through the evaluator's headline test harness (upstream's
``load_test_cases_w_expected_output`` for SimCoPilot, ours for the starter set), in the sandbox
actually used, against the expected outputs in force. What it finds decides what a verdict on
that program can mean here:

- the reference passes: the program is **scoreable** against upstream's expected outputs;
- its outputs differ from the recorded ones in float digits only (a library version moved
  them): they are **re-recorded** in this environment, for that program alone, upstream's kept
  beside them, and the program is judged against them (the default; ``expected="upstream"``
  keeps upstream's, and the program is then unscoreable);
- it fails for a reason no answer can change (a missing data file or library, an output that
  differs beyond float digits, a limit): the program is **unscoreable**, with the reason.

Post-processing is not part of the check: it depends on the answer, not on the machine.
Results are cached under the runner home by (benchmark commit, program, expected-outputs hash,
sandbox fingerprint, harness), so a check costs one reference run per program once per
environment.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, Field

from runner import paths
from runner.errors import EnvironmentFailure, UserError
from runner.evaluation.sandbox import Limits, work_limit_works
from runner.records import Cascade, ExpectedOutputs, Language, Outcome, Program, Task, TestCase

#: bump when the check's logic changes: every cached result is then taken again
CHECK_VERSION = 2
#: two printed floats are "the same value drifted" when they agree to this relative tolerance
#: (GAN_model's move in the 7th significant digit is ~1e-6; a real change is far larger)
DRIFT_RELATIVE = 1e-3
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b", re.IGNORECASE)


class Drift(BaseModel):
    """How a reference's outputs moved from the recorded ones: every difference a float's digits."""

    values_moved: int = Field(description="printed numbers that differ from the recorded ones")
    values_compared: int = Field(description="printed numbers in the recorded outputs")
    max_relative_change: float = Field(description="largest |here - recorded| / |recorded| among them")


def float_drift(actual: str, expected: str, tolerance: float = DRIFT_RELATIVE) -> Drift | None:
    """The drift between two outputs when they differ only in the digits of numbers, else ``None``.

    The numbers are compared in order, each moved one within ``tolerance`` of the recorded one;
    the text between them must agree with whitespace normalised: runs collapsed (as
    ``all_output`` compares) and none at a number's side, where numpy pads every element of an
    array to the widest one, so a value printed a digit shorter gains a space (``-0.0741407 ]``).
    """
    got_text, want_text = _between_numbers(actual), _between_numbers(expected)
    got_numbers, want_numbers = _NUMBER.findall(actual), _NUMBER.findall(expected)
    if got_text != want_text or len(got_numbers) != len(want_numbers):
        return None
    moved, worst = 0, 0.0
    for here, recorded in zip(got_numbers, want_numbers):
        if here == recorded:
            continue
        try:
            a, b = float(here), float(recorded)
        except ValueError:
            return None
        if math.isnan(a) and math.isnan(b):
            continue
        change = abs(a - b) / abs(b) if b else abs(a - b)
        if not change <= tolerance:  # also refuses nan/inf against a number
            return None
        moved += 1
        worst = max(worst, change)
    return Drift(values_moved=moved, values_compared=len(want_numbers), max_relative_change=worst)


def _between_numbers(output: str) -> list[str]:
    """The text between the printed numbers, each piece's whitespace collapsed and trimmed."""
    return [" ".join(piece.split()) for piece in _NUMBER.split(output)]


class ProgramCheck(BaseModel):
    """What the reference of one program did on the judging path, and what that makes its tasks."""

    program: str = Field(description="upstream Task_Name")
    language: Language
    task_id: str = Field(description="the task whose reference span was judged")
    scoreable: bool = Field(description="whether an answer to this program can be judged here")
    expected_outputs: ExpectedOutputs | None = Field(None, description="Python: the expected outputs in force")
    outcome: Outcome = Field(description="the reference's outcome against upstream's expected outputs")
    reason: str | None = Field(None, description="for an unscoreable program: why no answer can pass here")
    suspect: str | None = Field(None, description="the diagnosis of a failing reference (a key of oracle.SUSPECTS)")
    drift: Drift | None = Field(None, description="re-recorded programs: how far the outputs moved")
    re_recorded: Path | None = Field(None, description="the re-recorded test file (upstream's format)")
    seconds: float = 0.0
    cached: bool = Field(False, description="taken from an earlier check in the same environment")


class EnvironmentReport(BaseModel):
    """Every selected program's check, with the environment it was made in."""

    version: int = CHECK_VERSION
    benchmark: str
    commit: str = Field(description="the benchmark's pinned commit (or the runner version for the starter set)")
    cascade: Cascade = Field(description="the harness that judged the references (the headline cascade)")
    sandbox: str = Field(description="the sandbox fingerprint: local:<hash of the interpreter and packages> or docker:<image id>")
    expected: str = Field(description="the policy: auto (re-record drifted outputs) or upstream")
    limits: Limits | None = Field(None, description="every sandboxed run's resource limits (before scaling to "
                                                    "a program's reference time); work_mb: its working folder's size")
    work_folder_limited: bool | None = Field(None, description="whether the working folder was a tmpfs of "
                                                               "limits.work_mb here (it needs root), else the host's disk")
    programs: list[ProgramCheck] = Field(default_factory=list)

    def unscoreable(self) -> list[ProgramCheck]:
        return [p for p in self.programs if not p.scoreable]

    def re_recorded(self) -> list[ProgramCheck]:
        return [p for p in self.programs if p.expected_outputs is ExpectedOutputs.re_recorded]

    def by_program(self) -> dict[str, ProgramCheck]:
        return {p.program: p for p in self.programs}


EXPECTED_POLICIES = ("auto", "upstream")


def check_environment(evaluator, tasks: list[Task], *, benchmark: str, commit: str, expected: str = "auto",
                      refresh: bool = False, workers: int | None = None,
                      progress: Callable[[ProgramCheck], None] | None = None) -> EnvironmentReport:
    """Check the programs ``tasks`` come from (one reference each), then apply the result to ``evaluator``.

    ``refresh`` ignores cached results. Raises ``EnvironmentFailure`` when the sandbox itself
    cannot run a program (the self-check should have caught it first).
    """
    if expected not in EXPECTED_POLICIES:
        raise UserError(f"--expected {expected!r}: choose auto (re-record drifted outputs) or upstream")
    first: dict[str, Task] = {}
    for task in tasks:
        if task.available:
            first.setdefault(task.program, task)
    sandbox_id = sandbox_fingerprint(evaluator)
    report = EnvironmentReport(benchmark=benchmark, commit=commit, cascade=evaluator.cascade, sandbox=sandbox_id,
                               expected=expected, limits=evaluator.limits, work_folder_limited=work_limit_works())
    folder = paths.runner_home() / "environment" / benchmark / _short(sandbox_id)

    def one(task: Task) -> ProgramCheck:
        program = evaluator.upstream_programs.get(task.program) or evaluator.programs[task.program]
        key = _key(report, program)
        cached = folder / f"{program.name}-{key[:16]}.json"
        if not refresh and cached.is_file():
            try:
                check = ProgramCheck.model_validate_json(cached.read_text(encoding="utf-8"))
                if check.re_recorded is None or check.re_recorded.is_file():
                    return check.model_copy(update={"cached": True})
            except ValueError:
                pass  # a damaged cache entry is taken again
        check = _check_program(evaluator, program, task, folder, key, expected)
        folder.mkdir(parents=True, exist_ok=True)
        cached.write_text(check.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return check

    from runner.evaluation.evaluator import default_workers

    with ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="envcheck") as pool:
        for check in pool.map(one, first.values()):
            report.programs.append(check)
            if progress is not None:
                progress(check)
    apply(evaluator, report)
    return report


def apply(evaluator, report: EnvironmentReport) -> None:
    """Make ``evaluator`` judge as ``report`` says: re-recorded expected outputs, unscoreable programs."""
    from runner.benchmarks import parse_test_json

    for check in report.programs:
        program = evaluator.upstream_programs.get(check.program) or evaluator.programs[check.program]
        evaluator.upstream_programs.setdefault(check.program, program)
        if not check.scoreable:
            evaluator.unscoreable[check.program] = check.reason or "its reference fails here"
            continue
        evaluator.unscoreable.pop(check.program, None)
        if check.expected_outputs is ExpectedOutputs.re_recorded and check.re_recorded is not None:
            cases = parse_test_json(json.loads(check.re_recorded.read_text(encoding="utf-8")))
            evaluator.programs[check.program] = program.model_copy(update={"test_cases": cases,
                                                                          "tests_json": check.re_recorded})
        else:
            evaluator.programs[check.program] = program
        if program.language is Language.python:
            evaluator.expected_outputs[check.program] = check.expected_outputs or ExpectedOutputs.upstream


def _check_program(evaluator, program: Program, task: Task, folder: Path, key: str, expected: str) -> ProgramCheck:
    from runner.evaluation.oracle import SUSPECTS, missing_named_files, reference_suspect

    run = evaluator.judge_reference(task, program)
    base = {"program": program.name, "language": program.language, "task_id": task.id, "outcome": run.outcome,
            "seconds": round(run.seconds, 2)}
    python = program.language is Language.python
    if run.outcome is Outcome.passed:
        return ProgramCheck(**base, scoreable=True, expected_outputs=ExpectedOutputs.upstream if python else None)
    if python and run.outcome is Outcome.fail and not missing_named_files(program):  # it ran to its end
        return _drifted(evaluator, program, task, folder, key, expected, base)
    suspect, note = reference_suspect(program, run.verdict())
    why = note.strip() or _telling_line(run.stderr_tail)
    if suspect == "missing_file":
        why += f"; put it in {program.data_dir} and rerun (the check runs again)"
    return ProgramCheck(**base, scoreable=False, suspect=suspect,
                        reason=f"{SUSPECTS[suspect]}: {why}" if why else SUSPECTS[suspect])


def _drifted(evaluator, program: Program, task: Task, folder: Path, key: str, expected: str, base: dict) -> ProgramCheck:
    """A reference whose outputs differ: re-record them when only float digits moved."""
    from runner.benchmarks import dump_test_json

    source = program.source.read_text(encoding="utf-8").replace("\t", "    ")
    ran = evaluator.run_source(program, source, evaluator.ceiling_limits(), compare=False)
    if ran.outcome is not Outcome.passed or len(ran.outputs) != len(program.test_cases):
        return ProgramCheck(**base, scoreable=False, suspect="bug",
                            reason=f"its reference does not run cleanly here: {_telling_line(ran.stderr_tail)}")
    moved, compared, worst = 0, 0, 0.0
    for case, output in zip(program.test_cases, ran.outputs):
        drift = float_drift(output, case.expected_output)
        if drift is None:
            return ProgramCheck(**base, scoreable=False, suspect="bug",
                                reason="its reference's output differs from the recorded one beyond float digits "
                                       f"(test case {program.test_cases.index(case) + 1})")
        moved, compared = moved + drift.values_moved, compared + drift.values_compared
        worst = max(worst, drift.max_relative_change)
    drift = Drift(values_moved=moved, values_compared=compared, max_relative_change=worst)
    if expected == "upstream":
        return ProgramCheck(**base, scoreable=False, suspect="drift", drift=drift,
                            reason=f"its outputs drifted here ({moved} of {compared} printed values, at most "
                                   f"{worst:.1e} relative) and --expected upstream keeps the recorded ones")
    cases = [TestCase(code=c.code, expected_output=out) for c, out in zip(program.test_cases, ran.outputs)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{program.name}-{key[:16]}.expected.json"
    path.write_text(json.dumps(dump_test_json(cases), indent=4) + "\n", encoding="utf-8")
    again = evaluator.judge_reference(task, program.model_copy(update={"test_cases": tuple(cases), "tests_json": path}))
    if again.outcome is not Outcome.passed:
        return ProgramCheck(**base, scoreable=False, suspect="bug", drift=drift,
                            reason=f"its reference fails even against its re-recorded outputs: {_telling_line(again.stderr_tail)}")
    return ProgramCheck(**base, scoreable=True, expected_outputs=ExpectedOutputs.re_recorded, drift=drift, re_recorded=path)


def _telling_line(stderr: str) -> str:
    """The line of a failure's output a reader needs: the last exception or error line, else the last line."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^(\w+(Error|Exception|Exit)\b|error:|Error:|Caused by:|output differs)", line):
            return line[:300]
    return lines[-1][:300] if lines else ""


# -- keys ------------------------------------------------------------------------------------------

_FINGERPRINT_LOCK = threading.Lock()


def sandbox_fingerprint(evaluator) -> str:
    """``docker:<image id>``, or ``local:<sha256>`` of what the local sandbox's interpreter sees
    (its path, version, installed distributions) and the Java toolchain: once per evaluator."""
    with _FINGERPRINT_LOCK:
        known = getattr(evaluator, "sandbox_fingerprint", None)
        if known:
            return known
        digest = getattr(evaluator.sandbox, "image_digest", None)  # the Docker sandbox's image id
        if isinstance(digest, str) and digest:
            value = f"docker:{digest}"
        else:
            from runner.evaluation.oracle import environment

            seen = environment(evaluator)
            for volatile in ("date", "runner_python"):
                seen.pop(volatile, None)
            value = "local:" + hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()
        evaluator.sandbox_fingerprint = value
        return value


def expected_sha256(program: Program) -> str:
    """The hash of what judges the program: upstream's test file (Python) or the tester's source (Java)."""
    path = program.source.with_suffix(".json") if program.language is Language.python else program.source
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


def _key(report: EnvironmentReport, program: Program) -> str:
    parts = [str(CHECK_VERSION), report.benchmark, report.commit, program.name, expected_sha256(program),
             hashlib.sha256(program.source.read_bytes()).hexdigest(), report.sandbox, report.cascade.value,
             report.expected, ",".join(sorted(p.name for p in program.data_dir.iterdir()) if program.data_dir.is_dir() else [])]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _short(fingerprint: str) -> str:
    kind, _, digest = fingerprint.partition(":")
    return f"{kind}-{digest.removeprefix('sha256:')[:16]}"


__all__ = ["CHECK_VERSION", "Drift", "EnvironmentFailure", "EnvironmentReport", "ProgramCheck", "apply",
           "check_environment", "expected_sha256", "float_drift", "sandbox_fingerprint"]


def prepared_evaluator(bench, tasks: list[Task], *, sandbox_kind: str = "auto", cascade: str | None = None,
                       both: bool = True, expected: str = "auto", allow_unsandboxed: bool = False,
                       hide: tuple[Path, ...] = (), refresh: bool = False, workers: int | None = None,
                       note: Callable[[str], None] | None = None,
                       progress: Callable[[ProgramCheck], None] | None = None):
    """The evaluator that will judge ``tasks``, checked first: the sandbox's self-check (one known
    pass and one known fail per language), then every program's reference on the judging path.

    Returns ``(evaluator, report)``. A sandbox that cannot run a program is a one-line
    ``UserError`` here, before any model is loaded.
    """
    from runner.benchmarks import benchmark_commit, default_cascade, scoring_root
    from runner.evaluation.docker_sandbox import choose_sandbox
    from runner.evaluation.evaluator import Evaluator
    from runner.evaluation.selfcheck import self_check

    sandbox = choose_sandbox(sandbox_kind, allow_unsandboxed=allow_unsandboxed, progress=note, hide=hide)
    evaluator = Evaluator(bench.programs, sandbox=sandbox, junit_console=bench.junit_jar,
                          cascade=cascade or default_cascade(bench.name), both=both,
                          upstream_root=scoring_root(bench))
    self_check(evaluator, {t.language for t in tasks if t.available})
    try:
        report = check_environment(evaluator, tasks, benchmark=bench.name, commit=benchmark_commit(bench),
                                   expected=expected, refresh=refresh, workers=workers, progress=progress)
    except EnvironmentFailure as exc:
        raise UserError(f"the sandbox cannot run the benchmark's programs: {exc}") from None
    return evaluator, report
