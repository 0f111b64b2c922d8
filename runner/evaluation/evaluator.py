"""Judging answers: the post-processing cascade, the sandboxed check, and a worker pool."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from pathlib import Path

from runner.evaluation import upstream as upstream_code
from runner.evaluation.java_check import JavaToolchain, check_java, java_toolchain
from runner.evaluation.postprocess import assemble, cascade
from runner.evaluation.python_check import CheckResult, check_python, python_interpreter
from runner.evaluation.sandbox import Limits, LocalSandbox, Sandbox
from runner.errors import UserError
from runner.records import Cascade, CascadeVerdict, Language, Outcome, Program, Task, Verdict

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One worker per core: each check is one child process at a time."""
    return os.cpu_count() or 1


class Evaluator:
    """Evaluates answers to tasks of one set of programs, in a sandbox, under scaled time limits."""

    def __init__(
        self,
        programs: dict[str, Program],
        limits: Limits | None = None,
        sandbox: Sandbox | None = None,
        allow_unsandboxed: bool = False,
        python: str | None = None,
        junit_console: os.PathLike | None = None,
        scale_time: bool = True,
        java_fast: bool = False,
        cascade: Cascade | str = Cascade.runner,
        upstream_root: Path | None = None,
        both: bool = False,
    ) -> None:
        self.programs = programs
        self.limits = limits or Limits()
        self.sandbox = sandbox or LocalSandbox(allow_unsandboxed=allow_unsandboxed)
        self.python = python or python_interpreter()
        self._junit_console = junit_console
        self._toolchain: JavaToolchain | None = None
        self.scale_time = scale_time
        self.java_fast = java_fast  # one JVM compiles and tests (see java_check.check_java)
        self._reference_seconds: dict[str, float | None] = {}
        self._calibration_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.cascade = Cascade(cascade)
        # ``both``: the other cascade's verdict is taken too (runs and ``runner score`` keep both;
        # the oracle needs one). Upstream's needs its code installed; as the headline it must be.
        self.both = both
        problem = upstream_code.available(upstream_root)
        if problem and self.cascade is Cascade.upstream:
            raise UserError(problem)
        wanted = self.cascade is Cascade.upstream or both
        self.upstream = upstream_code.load(upstream_root) if wanted and not problem else None

    @property
    def toolchain(self) -> JavaToolchain:
        """The Java tools, looked up on first use so that Python-only runs need no JDK."""
        if self._toolchain is None:
            self._toolchain = java_toolchain(self._junit_console)
        return self._toolchain

    def program(self, task: Task) -> Program:
        return self.programs[task.program]

    def run_source(self, program: Program, source: str, limits: Limits | None = None, compare: bool = True) -> CheckResult:
        """Check one whole program text (the assembled answer) once."""
        limits = limits or self.limits
        if program.language is Language.python:
            return check_python(program, source, self.sandbox, limits, compare=compare, python=self.python)
        return check_java(program, source, self.sandbox, limits, self.toolchain, fast=self.java_fast)

    def reference_seconds(self, program: Program) -> float | None:
        """The longest single run of the program's own source, measured once (``None`` if it does not pass)."""
        with self._lock:
            lock = self._calibration_locks.setdefault(program.name, threading.Lock())
        with lock:
            if program.name not in self._reference_seconds:
                result = self.run_source(program, program.source.read_text(encoding="utf-8").replace("\t", "    "))
                ok = result.outcome is Outcome.passed
                self._reference_seconds[program.name] = result.seconds if ok else None
                log.info("reference run of %s: %s in %.2f s", program.name, result.outcome.value, result.seconds)
            return self._reference_seconds[program.name]

    def limits_for(self, program: Program) -> Limits:
        """The limits for one program: the wall clock scaled from its reference run (EvalPlus habit)."""
        if not self.scale_time:
            return self.limits
        return self.limits.scaled(self.reference_seconds(program))

    def check(self, task: Task, code: str) -> CheckResult:
        """Assemble ``before`` + ``code`` + ``after`` and check it."""
        program = self.program(task)
        return self.run_source(program, assemble(task, code), self.limits_for(program))

    def evaluate(self, task: Task, raw_text: str) -> Verdict:
        """Judge a raw answer with both cascades; the headline fields are ``self.cascade``'s verdict."""
        started = time.monotonic()
        run_ours = self.cascade is Cascade.runner or self.both
        runner = self.evaluate_runner(task, raw_text) if run_ours else None
        upstream = self.evaluate_upstream(task, raw_text) if self.upstream is not None else None
        headline = upstream if self.cascade is Cascade.upstream else runner
        if headline is None:
            raise UserError(f"{task.id}: upstream scoring needs {upstream_code.tests_file(self.program(task))}; "
                            "score this benchmark with --cascade runner")
        return Verdict(outcome=headline.outcome, stage=headline.stage, cleaned_outcome=headline.cleaned_outcome,
                       code=headline.code, stderr_tail=headline.stderr_tail, seconds=time.monotonic() - started,
                       cascade=self.cascade, upstream=upstream, runner=runner)

    def evaluate_runner(self, task: Task, raw_text: str) -> CascadeVerdict:
        """This project's cascade: the first stage that passes gives the verdict, else the last stage's."""
        cleaned_outcome: Outcome | None = None
        result: CheckResult | None = None
        for stage, code in cascade(raw_text, task):
            result = self.check(task, code)
            if cleaned_outcome is None:
                cleaned_outcome = result.outcome
            if result.outcome is Outcome.passed:
                break
        assert result is not None and cleaned_outcome is not None  # the cascade always has the cleaned stage
        return CascadeVerdict(cascade=Cascade.runner, outcome=result.outcome, stage=stage,
                              cleaned_outcome=cleaned_outcome, code=code, stderr_tail=result.stderr_tail[-4000:])

    def upstream_execution(self, program: Program) -> upstream_code.SandboxedExecution:
        """Upstream's test runs for ``program``, in this evaluator's sandbox and limits."""
        java = program.language is Language.java
        return upstream_code.SandboxedExecution(program, self.sandbox, self.limits_for(program), self.python,
                                                toolchain=self.toolchain if java else None,
                                                junit_jar=Path(self._junit_console) if java and self._junit_console else None)

    def evaluate_upstream(self, task: Task, raw_text: str) -> CascadeVerdict | None:
        """SimCoPilot's own scoring: its extraction, post-processing and test comparison, tests run here.

        ``None`` when the program has no test file of upstream's shape (some starter programs).
        """
        up = self.upstream
        program = self.program(task)
        if up is None or not upstream_code.tests_file(program).is_file():
            return None
        execute = self.upstream_execution(program)
        before, _, after = upstream_code.task_parts(task)
        seen: dict[tuple[str, ...], upstream_code.TestRun] = {}
        cleaned_outcome: Outcome | None = None
        for name, lines in upstream_code.candidates(up, raw_text, task):
            key = tuple(lines)
            if key not in seen:  # upstream tests a repeated stage again; its verdict cannot change
                seen[key] = upstream_code.run_tests(up, program, before, lines, after, execute,
                                                    timeout=execute.limits.wall_seconds)
            run = seen[key]
            if cleaned_outcome is None:
                cleaned_outcome = run.outcome
            if run.passed:
                break
        assert cleaned_outcome is not None
        return CascadeVerdict(cascade=Cascade.upstream, outcome=run.outcome,
                              stage=upstream_code.stage_of(name, task.language), cleaned_outcome=cleaned_outcome,
                              code="\n".join(lines), stderr_tail=run.detail, pass_ratio=run.pass_ratio)

    def evaluate_many(self, items: Iterable[tuple[Task, str]], workers: int | None = None) -> Iterator[tuple[Task, Verdict]]:
        """Evaluate ``(task, raw_text)`` pairs on a pool of workers, yielding results in input order."""
        workers = workers or default_workers()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval") as pool:
            # Threads suffice: every check waits on a child process.
            futures = [(task, pool.submit(self.evaluate, task, raw)) for task, raw in items]
            for task, future in futures:
                yield task, future.result()
