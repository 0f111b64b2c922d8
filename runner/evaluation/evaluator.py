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
from runner.errors import EnvironmentFailure, UserError
from runner.records import Cascade, CascadeVerdict, ExpectedOutputs, Language, Outcome, Program, Task, Verdict

log = logging.getLogger(__name__)

# Upstream's own per-run timeout (SimCoPilot helper_functions/eval_code.py, ``timeout=5*60``):
# no limit of ours exceeds it, and the reference's timing run gets all of it.
UPSTREAM_TIMEOUT_SECONDS = 300.0
# how much slower a re-timed reference must be to replace the first timing
_SLOWER = 1.25


class ReferenceRun:
    """A reference judged by the headline test harness, without post-processing (the environment check)."""

    def __init__(self, outcome: Outcome, stderr_tail: str, seconds: float) -> None:
        self.outcome, self.stderr_tail, self.seconds = outcome, stderr_tail, seconds

    def verdict(self) -> Verdict:
        return Verdict(outcome=self.outcome, cleaned_outcome=self.outcome, code="", stderr_tail=self.stderr_tail,
                       seconds=self.seconds)


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
        ceiling_seconds: float = UPSTREAM_TIMEOUT_SECONDS,
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
        self.ceiling_seconds = ceiling_seconds
        self.java_fast = java_fast  # one JVM compiles and tests (see java_check.check_java)
        self._reference_seconds: dict[str, float | None] = {}
        self._calibration_locks: dict[str, threading.RLock] = {}
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
        # set by the environment check (runner.evaluation.environment.apply): programs no answer can
        # pass here, with why; the expected outputs in force; the programs as loaded, before re-recording
        self.unscoreable: dict[str, str] = {}
        self.expected_outputs: dict[str, ExpectedOutputs] = {}
        self.upstream_programs: dict[str, Program] = {}
        self.sandbox_fingerprint: str | None = None  # what the environment check's cache is keyed by

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

    def ceiling_limits(self) -> Limits:
        """The limits at the ceiling (upstream's 300 s per run), with CPU time to match."""
        wall = self.ceiling_seconds
        return self.limits.model_copy(update={"wall_seconds": wall, "cpu_seconds": max(self.limits.cpu_seconds, int(wall * 2) + 1)})

    def reference_seconds(self, program: Program) -> float | None:
        """The longest single run of the program's own source, measured once (``None`` if it does not run cleanly).

        Timed under the ceiling limits, not the floor: a heavy program (TensorFlow's import on a
        loaded machine) must not lose its timing, and with it every scaled limit, to the floor.
        Outputs are not compared (``compare=False``): an expected output that drifted with a
        library version does not change how long the program runs.
        """
        with self._calibration_lock(program):
            if program.name not in self._reference_seconds:
                self._reference_seconds[program.name] = self._time_reference(program)
            return self._reference_seconds[program.name]

    def _calibration_lock(self, program: Program) -> threading.RLock:
        # re-entrant: retime() asks limits_for() while holding it
        with self._lock:
            return self._calibration_locks.setdefault(program.name, threading.RLock())

    def _time_reference(self, program: Program) -> float | None:
        source = program.source.read_text(encoding="utf-8").replace("\t", "    ")
        result = self.run_source(program, source, self.ceiling_limits(), compare=False)
        # a Java tester whose JUnit tests fail still ran to its end: its time counts
        timed = result.outcome is Outcome.passed or (program.language is Language.java and result.outcome is Outcome.fail)
        log.info("reference run of %s: %s in %.2f s", program.name, result.outcome.value, result.seconds)
        return result.seconds if timed else None

    def retime(self, program: Program, timed_out_under: Limits) -> bool:
        """Time the reference again after a run timed out under ``timed_out_under``; whether the limit grew.

        The machine may have slowed since the reference was timed (others' load on a shared
        host); a limit scaled from an old timing would then fail answers, the reference included,
        that run as fast as the reference does now. A slower timing replaces the old one.
        """
        if not self.scale_time or timed_out_under.wall_seconds >= self.ceiling_seconds:
            return False
        with self._calibration_lock(program):
            if self.limits_for(program).wall_seconds > timed_out_under.wall_seconds:
                return True  # another worker already timed it again
            seconds = self._time_reference(program)
            # jitter is not a slowdown: only a clearly slower reference moves the limit
            if seconds is not None and seconds > _SLOWER * (self._reference_seconds.get(program.name) or 0.0):
                self._reference_seconds[program.name] = seconds
        return self.limits_for(program).wall_seconds > timed_out_under.wall_seconds

    def limits_for(self, program: Program) -> Limits:
        """The limits for one program: the wall clock scaled from its reference run (EvalPlus habit), capped at the ceiling.

        A program whose reference does not run cleanly gets the ceiling itself, as upstream
        gives every run: a scaled limit needs a time to scale.
        """
        if not self.scale_time:
            return self.limits
        seconds = self.reference_seconds(program)
        if seconds is None:
            return self.ceiling_limits()
        scaled = self.limits.scaled(seconds)
        if scaled.wall_seconds > self.ceiling_seconds:
            return self.ceiling_limits()
        return scaled

    def check(self, task: Task, code: str) -> CheckResult:
        """Assemble ``before`` + ``code`` + ``after`` and check it.

        A timeout under a scaled limit is final only once the reference, timed again now, does
        not raise that limit (see ``retime``); otherwise the answer runs again under the new one.
        """
        program = self.program(task)
        limits = self.limits_for(program)
        result = self.run_source(program, assemble(task, code), limits)
        if result.outcome is Outcome.timeout and self.retime(program, limits):
            result = self.run_source(program, assemble(task, code), self.limits_for(program))
        return result

    def evaluate(self, task: Task, raw_text: str) -> Verdict:
        """Judge a raw answer with both cascades; the headline fields are ``self.cascade``'s verdict.

        A task of a program the environment check found unscoreable, or one whose run the sandbox
        could not start, is ``unscoreable`` with its reason: never a verdict on the answer.
        """
        started = time.monotonic()
        reason = self.unscoreable.get(task.program)
        if reason is not None:
            return self.unscoreable_verdict(reason)
        try:
            run_ours = self.cascade is Cascade.runner or self.both
            runner = self.evaluate_runner(task, raw_text) if run_ours else None
            upstream = self.evaluate_upstream(task, raw_text) if self.upstream is not None else None
        except EnvironmentFailure as exc:
            log.warning("%s: the environment stopped the check: %s", task.id, exc)
            return self.unscoreable_verdict(f"environment: {exc}")
        headline = upstream if self.cascade is Cascade.upstream else runner
        if headline is None:
            raise UserError(f"{task.id}: upstream scoring needs {upstream_code.tests_file(self.program(task))}; "
                            "score this benchmark with --cascade runner")
        return Verdict(outcome=headline.outcome, stage=headline.stage, cleaned_outcome=headline.cleaned_outcome,
                       code=headline.code, stderr_tail=headline.stderr_tail, seconds=time.monotonic() - started,
                       cascade=self.cascade, upstream=upstream, runner=runner,
                       expected_outputs=self.expected_outputs.get(task.program))

    def unscoreable_verdict(self, reason: str) -> Verdict:
        """The verdict for a task no answer can pass here."""
        return Verdict(outcome=Outcome.unscoreable, cleaned_outcome=Outcome.unscoreable, code="", cascade=self.cascade,
                       stderr_tail=reason, unscoreable_reason=reason)

    def judge_reference(self, task: Task, program: Program | None = None) -> ReferenceRun:
        """The task's reference span through the headline test harness (no post-processing), against
        ``program``'s expected outputs (default: the ones in force)."""
        program = program or self.program(task)
        started = time.monotonic()
        if self.cascade is Cascade.upstream and self.upstream is not None and upstream_code.tests_file(program).is_file():
            before, between, after = upstream_code.task_parts(task)
            execute = self.upstream_execution(program)
            run = upstream_code.run_tests(self.upstream, program, before, between, after, execute,
                                          timeout=execute.limits.wall_seconds)
            return ReferenceRun(run.outcome, run.detail, time.monotonic() - started)
        result = self.run_source(program, assemble(task, task.reference), self.limits_for(program))
        return ReferenceRun(result.outcome, result.stderr_tail, time.monotonic() - started)

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
        # java_fast is in the verdict cache's key: upstream's check must follow it, as ours does
        return upstream_code.SandboxedExecution(program, self.sandbox, self.limits_for(program), self.python,
                                                toolchain=self.toolchain if java else None,
                                                junit_jar=Path(self._junit_console) if java and self._junit_console else None,
                                                java_path="one-jvm" if self.java_fast else "javac+java")

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
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval")
        try:
            # Threads suffice: every check waits on a child process.
            futures = [(task, pool.submit(self.evaluate, task, raw)) for task, raw in items]
            for task, future in futures:
                yield task, future.result()
        finally:
            # on Ctrl-C (or a caller that stops early) drop the queued checks: only those already
            # running finish, instead of the whole queue (a full oracle run is hours)
            pool.shutdown(wait=True, cancel_futures=True)
