"""Oracle checks of the evaluator itself (reference and empty solutions), and the sandbox's environment probe."""

from __future__ import annotations

import json
import platform
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from runner.evaluation.evaluator import Evaluator
from runner.evaluation.java_check import java_version
from runner.evaluation.python_check import PYTHON_ENV
from runner.records import Cascade, ExpectedOutputs, Language, Mode, Outcome, Program, Stage, Task, Verdict

SOLUTIONS = ("reference", "empty")

# Why a reference fails, most specific first: a resource limit of ours, a data file the copy
# lacks, the machine (a missing module, jar or permission); an output mismatch of a run that
# ended cleanly is an expected output that drifted (``runner tasks rebaseline``); else a bug.
_LIMIT = re.compile(
    r"^timed out after|javac timed out|stdout exceeded the output limit|killed by signal|\[out of memory\]|"
    r"MemoryError|OutOfMemoryError|std::bad_alloc|Resource temporarily unavailable|"
    r"unable to create native thread|File size limit exceeded",
    re.MULTILINE,
)
_MISSING_FILE = re.compile(r"FileNotFoundError|No such file or directory|NoSuchFileException")
_ENVIRONMENT = re.compile(
    r"ModuleNotFoundError|No module named|ImportError|cannot open shared object|"
    r"NoClassDefFoundError|ClassNotFoundException|package [\w.]+ does not exist|"
    r"error: cannot access|Network is unreachable|Permission denied"
)
# Data files a program names by a bare relative path ('./alice.avi'): a missing one fails the
# reference without a FileNotFoundError when a library reads it silently (cv2.VideoCapture).
_NAMED_FILE = re.compile(
    r"""['"](?:\./)?([\w.-]+\.(?:avi|mp4|mov|wav|csv|tsv|jpe?g|png|gif|bmp|pkl|pickle|npy|npz|h5|txt|dat))['"]""",
    re.IGNORECASE,
)
_DRIFT = re.compile(r"^output differs \(", re.MULTILINE)
SUSPECTS = {
    "limit": "hit a resource limit of ours",
    "missing_file": "a data file is missing",
    "environment": "looks like an environment problem",
    "drift": "the expected output drifted (runner tasks rebaseline)",
    "bug": "looks like a bug",
}


class TaskCheck(BaseModel):
    """The outcome of one oracle solution on one task."""

    task_id: str
    language: Language
    mode: Mode
    program: str
    solution: str
    outcome: Outcome
    stage: Stage | None = None
    cleaned_outcome: Outcome
    seconds: float
    stderr_tail: str = ""
    suspect: str | None = None  # for a failing reference: a key of SUSPECTS
    wall_limit_seconds: float | None = None  # the wall-clock limit its runs had
    cascade: str | None = None  # the cascade that judged it
    expected_outputs: ExpectedOutputs | None = None  # Python: upstream's or re-recorded here
    unscoreable_reason: str | None = None  # outcome unscoreable: why no answer can pass here


def solution_text(task: Task, solution: str, cascade: Cascade = Cascade.runner) -> str:
    """The oracle's answer to a task: the reference span, or nothing.

    For upstream's cascade the reference comes in a fenced block, as an answer that follows the
    prompt gives its code: upstream's ``clean_code`` takes a fenced block whole, while unfenced text
    keeps only the lines its code expression recognises (which drops, e.g., the continuation line
    ``shape=(*self.kernel_size,`` of GAN_model's references). Our cascade takes the bare span.
    """
    if solution != "reference":
        return ""
    if cascade is Cascade.upstream:
        return f"```{task.language.value}\n{task.reference}\n```"
    return task.reference


def diagnose(stderr_tail: str, outcome: Outcome | None = None) -> str:
    """Why a reference failed: ``limit``, ``missing_file``, ``environment``, ``drift`` or ``bug`` (see ``SUSPECTS``)."""
    if outcome is Outcome.timeout or _LIMIT.search(stderr_tail):
        return "limit"
    if _MISSING_FILE.search(stderr_tail):
        return "missing_file"
    if _ENVIRONMENT.search(stderr_tail):
        return "environment"
    if outcome in (None, Outcome.fail) and _DRIFT.search(stderr_tail):
        return "drift"
    return "bug"


def missing_named_files(program: Program) -> list[str]:
    """Files the program's source names by a bare relative path that its folder lacks."""
    try:
        source = program.source.read_text(encoding="utf-8")
    except OSError:
        return []
    names = sorted(set(_NAMED_FILE.findall(source)))
    return [name for name in names if not (program.data_dir / name).exists()]


def reference_suspect(program: Program, verdict: Verdict) -> tuple[str, str]:
    """Why a reference failed (a key of ``SUSPECTS``), and a note to put before its stderr."""
    suspect = diagnose(verdict.stderr_tail, verdict.outcome)
    if suspect == "limit":
        return suspect, ""
    missing = missing_named_files(program)
    if missing:
        return "missing_file", f"the program reads {', '.join(missing)}, not in {program.data_dir}\n"
    if program.language is Language.python and verdict.cleaned_outcome is Outcome.fail and verdict.outcome is not Outcome.fail:
        # the cleaned reference ran to its end with another output; a later cascade stage then
        # broke the code (re-indenting a nested block): the verdict shown is that stage's
        return "drift", (f"the cleaned reference's output differs from the expected one; the {verdict.stage.value} "
                         f"stage then gave {verdict.outcome.value}:\n")
    return suspect, ""


def check_solution(
    evaluator: Evaluator,
    tasks: list[Task],
    solution: str,
    workers: int | None = None,
    progress: Callable[[TaskCheck], None] | None = None,
) -> list[TaskCheck]:
    """Run an oracle solution on every task through the full evaluation, in parallel.

    ``progress`` sees each check as it completes, in task order (``append_check`` records it).
    """
    checks = []
    items = [(task, solution_text(task, solution, evaluator.cascade)) for task in tasks]
    for task, verdict in evaluator.evaluate_many(items, workers=workers):
        failing_reference = solution == "reference" and verdict.outcome not in (Outcome.passed, Outcome.unscoreable)
        program = evaluator.program(task)
        suspect, note = reference_suspect(program, verdict) if failing_reference else (None, "")
        check = TaskCheck(
            task_id=task.id,
            language=task.language,
            mode=task.mode,
            program=task.program,
            solution=solution,
            outcome=verdict.outcome,
            stage=verdict.stage,
            cleaned_outcome=verdict.cleaned_outcome,
            seconds=round(verdict.seconds, 3),
            stderr_tail=note + verdict.stderr_tail[-2000:] if verdict.outcome is not Outcome.passed else "",
            suspect=suspect,
            wall_limit_seconds=None if verdict.outcome is Outcome.unscoreable else round(evaluator.limits_for(program).wall_seconds, 1),
            cascade=verdict.cascade.value, expected_outputs=verdict.expected_outputs,
            unscoreable_reason=verdict.unscoreable_reason,
        )
        if progress:
            progress(check)
        checks.append(check)
    return checks


def append_check(path: Path, check: TaskCheck) -> None:
    """Append one check to a JSON-lines record, flushed at once: a long oracle run loses nothing."""
    with path.open("a", encoding="utf-8") as out:
        out.write(check.model_dump_json() + "\n")
        out.flush()


def load_checks(path: Path, solution: str) -> dict[str, TaskCheck]:
    """The checks an earlier run of ``solution`` recorded in ``path``, by task id (a rerun skips them)."""
    from runner.errors import UserError

    if not path.is_file():
        return {}
    done: dict[str, TaskCheck] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            check = TaskCheck.model_validate_json(line)
        except ValueError as exc:
            raise UserError(f"{path}:{number}: not a task check record ({str(exc).splitlines()[0]}); "
                            "remove the line or choose another --record file") from None
        if check.solution == solution:
            done[check.task_id] = check
    return done


_PROBE = """
import json, platform, sys
from importlib import metadata
packages = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    if name:
        packages[name.lower()] = dist.version
print(json.dumps({"python": sys.version.split()[0], "implementation": platform.python_implementation(),
                  "executable": sys.executable, "packages": dict(sorted(packages.items()))}))
"""


def environment(evaluator: Evaluator) -> dict:
    """Python (as the sandbox sees it), package and Java versions, platform and date."""
    probe: dict = {}
    with evaluator.sandbox.workdir(evaluator.ceiling_limits()) as workdir:
        (workdir / "probe.py").write_text(_PROBE)
        result = evaluator.sandbox.run([evaluator.python, "probe.py"], workdir, evaluator.ceiling_limits(), env=PYTHON_ENV)
    try:
        probe = json.loads(result.stdout)
    except json.JSONDecodeError:
        probe = {"python": "unknown", "probe_error": result.stderr_tail[-500:]}
    return {
        **probe,
        "java": java_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "runner_python": sys.version.split()[0],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
