"""The orchestrator behind ``runner reproduce``: plan, then per cell serve, generate, evaluate, stop.

Per cell, one server (started through the backend, its log in the run directory):

1. **accuracy**: every selected task, ``settings.concurrency`` requests in flight; each answer is
   evaluated on a worker pool while generation goes on, and written once, with its outcome;
2. **latency**: a seeded subset of ``settings.latency_tasks`` tasks, one request at a time, after
   ``settings.warmup_requests`` untimed, unstored requests on other tasks' prompts (answers are not
   evaluated again). Each task is timed in every state of ``settings.cache_states``:
   ``cold`` (the runtime's own reset first: no reusable prefix), ``warm`` (reset, then the
   previous task of the same program served untimed with one output token, so the timed prompt
   shares its prefix, never the whole prompt) and ``replay`` (the identical prompt just served,
   in its own ``replay`` phase). Each sample records the state and the server's cached-token count;
   a runtime without a reset has no cold samples (``CellResult.reason`` says so);
3. **sweep**: throughput at each concurrency of ``settings.sweep`` (``ignore_eos``: every request
   generates ``max_tokens``), recorded in ``CellResult.sweep``;

with the server's Prometheus metrics read before and after (the difference is kept). Where a cell
runs is its executor's choice (``runner.executors``: in this process, or a Ray cluster whose workers
stream samples back); the run store stays here, in the driver. Samples are flushed one by one; a rerun produces only what is missing (``RunStore.done_keys``). A
server that dies marks its cell ``failed`` with its log tail and the run goes on. The core
never prints: it reports through a ``RunEvents`` object.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import logging
import random
import shutil
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Protocol

import httpx

from runner import client, fingerprint, prompts
from runner.backends.base import Backend, RunningServer, log_tail
from runner.benchmarks import DEFAULT_EDITION, load_benchmark
from runner.benchmarks.benchmark import Benchmark
from runner.errors import UserError
from runner.matrix import Matrix, RunSettings, TaskFilter
from runner.records import Cell, EditionRef, EditionVerdict, Outcome, Sample, Task, utcnow
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles, Runtime
from runner.score import EditionJudge
from runner.store import LOCK_NAME, CellResult, Manifest, ModelRecord, Placement, RunLock, RunStore, SweepPoint

log = logging.getLogger(__name__)

#: tokens a server may add to a prompt beyond its text (BOS, special tokens); with it, a prompt of
#: at most ``context - max_tokens - margin`` UTF-8 bytes fits without asking the tokenizer
_TOKEN_MARGIN = 32


class RunEvents:
    """What the orchestrator reports while it works; the CLI renders it (the default ignores it)."""

    def run_started(self, store: RunStore, manifest: Manifest, tasks: list[Task]) -> None: ...
    def cell_started(self, cell: Cell, index: int, count: int) -> None: ...
    def cell_skipped(self, result: CellResult) -> None: ...
    def phase_started(self, cell: Cell, phase: str, total: int, done: int) -> None: ...
    def sample_written(self, cell: Cell, sample: Sample) -> None: ...
    def sweep_measured(self, cell: Cell, point: SweepPoint) -> None: ...
    def cell_finished(self, result: CellResult) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass
class RunOptions:
    """How ``reproduce`` runs a matrix."""

    name: str | None = None  # the run directory's name; default: the matrix's name
    runs_dir: Path = Path("runs")
    fresh: bool = False  # delete what an earlier run left and start over
    backend: str | None = None  # default: the matrix's
    limit: int | None = None  # overrides the matrix's tasks.limit
    skip_unrunnable: bool = False  # drop cells this host cannot run instead of refusing
    eval_workers: int | None = None
    sandbox: str = "local"  # where generated code is tested: local, docker or auto (see choose_sandbox)
    allow_unsandboxed: bool = False
    expected: str = "auto"  # expected outputs: auto (re-record a drifted program's here) or upstream
    executor: str = "inprocess"  # which machine runs each cell: inprocess, or ray (runner.executors)
    address: str | None = None  # the executor's cluster: for ray, auto, ray://host:port, host:port or local


@dataclass
class RunOutcome:
    """What ``reproduce`` did: the run directory and every cell's result, in matrix order."""

    run_dir: Path
    results: list[CellResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "failed"]


class CellFailure(Exception):
    """The cell cannot go on (its server died); the message says why."""


# -- tasks -----------------------------------------------------------------------------------------
def select_tasks(benchmark: Benchmark, task_filter: TaskFilter) -> list[Task]:
    """The available tasks the filter selects; with a limit, taken in turn from each program."""
    languages = set(task_filter.languages)
    modes = set(task_filter.modes)
    programs = set(task_filter.programs)
    unknown = programs - set(benchmark.programs)
    if unknown:
        raise UserError(f"tasks.programs = {sorted(unknown)}: no such program in benchmark {benchmark.name}; "
                        f"programs: {', '.join(sorted(benchmark.programs))}")
    chosen = [t for t in benchmark.available()
              if (not languages or t.language in languages) and (not modes or t.mode in modes)
              and (not programs or t.program in programs)]
    if task_filter.limit is None or len(chosen) <= task_filter.limit:
        return chosen
    return round_robin(chosen, task_filter.limit)


def round_robin(chosen: list[Task], limit: int) -> list[Task]:
    """``limit`` of ``chosen`` (in benchmark order), taken in turn from each program and mode, the
    languages alternating, so that a small limit still covers every language, program and mode.
    The first k of a pick are the pick of k: a smaller limit selects a subset of a larger one."""
    groups: dict[tuple[str, str, str], list[Task]] = {}
    for task in chosen:
        groups.setdefault((task.language.value, task.program, task.mode.value), []).append(task)
    by_language: dict[str, list[list[Task]]] = {}
    for (language, _, _), group in groups.items():
        by_language.setdefault(language, []).append(group)
    interleaved = [g for row in itertools.zip_longest(*by_language.values()) for g in row if g is not None]
    queues = [list(reversed(group)) for group in interleaved]
    picked: list[Task] = []
    while len(picked) < min(limit, len(chosen)):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop())
    return picked


def cell_latency_tasks(matrix: Matrix, latency_tasks: list[Task], cell: Cell) -> list[Task]:
    """The run's latency tasks that ``cell`` times: all, or the first as many as its group says."""
    limits = matrix.limits.get(cell.id)
    return latency_tasks if limits is None or limits.latency_tasks is None else latency_tasks[:limits.latency_tasks]


def cell_tasks(matrix: Matrix, benchmark: Benchmark, tasks: list[Task], cell: Cell) -> list[Task]:
    """The run's ``tasks`` that ``cell`` answers: all of them, or the round-robin pick of its group's
    ``limit`` from them (a subset of every other cell's tasks, so that comparisons pair up)."""
    limits = matrix.limits.get(cell.id)
    limit = limits.tasks if limits else None
    if limit is None or len(tasks) <= limit:
        return tasks
    order = {t.id: n for n, t in enumerate(benchmark.available())}
    return round_robin(sorted(tasks, key=lambda t: order[t.id]), limit)


def latency_subset(tasks: list[Task], settings: RunSettings, pool: list[Task] | None = None) -> list[Task]:
    """The seeded subset timed one request at a time: tasks with an earlier gap in the same program
    and mode (the ``warm`` state serves that one first), from the selected ``tasks``, then from the
    rest of ``pool`` (every task the filter allows) when the selection has too few (a small limit
    takes each program's first gaps, which have nothing above them)."""
    pool = pool if pool is not None else tasks
    rng = random.Random(settings.seed)
    chosen = [t for t in tasks if predecessor(t, pool) is not None]
    picked = rng.sample(chosen, min(settings.latency_tasks, len(chosen)))
    if len(picked) < settings.latency_tasks:
        ids = {t.id for t in tasks}
        extra = [t for t in pool if t.id not in ids and predecessor(t, pool) is not None]
        picked += rng.sample(extra, min(settings.latency_tasks - len(picked), len(extra)))
    return picked


def _state_key(state: str) -> str:
    """The ``Sample.phase_key`` a cache state's sample is stored under."""
    return "replay/replay" if state == "replay" else f"latency/{state}"


def predecessor(task: Task, pool: list[Task]) -> Task | None:
    """The task served just before ``task`` in a copilot session going down the file: the same
    program and mode, the nearest span above it; None for a program's first gap. Its prompt shares
    ``task``'s prefix up to its own gap, never all of it (a gap below would hold ``task``'s whole
    prompt for a prefix-only style: a replay in disguise)."""
    above = [t for t in pool if t.program == task.program and t.language == task.language
             and t.mode == task.mode and t.span[0] < task.span[0]]
    return max(above, key=lambda t: t.span[0]) if above else None


def warmup_tasks(tasks: list[Task], timed: list[Task], count: int, seed: int) -> list[Task]:
    """``count`` tasks whose prompts are never timed (the timed ones only when nothing else exists)."""
    timed_ids = {t.id for t in timed}
    others = [t for t in tasks if t.id not in timed_ids] or list(tasks)
    if not others:
        return []
    rng = random.Random(seed + 1)
    return [rng.choice(others) for _ in range(count)]


_COUNTER_SUFFIXES = ("_total", "_sum", "_count", "_bucket", "_created")


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the cell added: counters and histogram series as differences, gauges as read after."""
    delta = {}
    for key, value in after.items():
        name = key.split("{", 1)[0]
        counter = name.endswith(_COUNTER_SUFFIXES) and not name.endswith("_created")
        if name.endswith("_created"):
            continue  # a timestamp, not a quantity
        delta[key] = value - before.get(key, 0.0) if counter else value
    return delta


# -- where a cell's results go ---------------------------------------------------------------------
class CellSink(Protocol):
    """Where a running cell puts what it produces: the run store here, or a stream back to the driver."""

    log_path: Path  # the server's log, on the machine that runs it

    def write(self, sample: Sample) -> None:
        """Keep a finished sample (appended and flushed before returning, where the store is)."""

    def judge(self, task: Task, sample: Sample) -> None:
        """Have an answer evaluated, then kept with its verdict; must not block generation."""

    def update(self, result: CellResult) -> None:
        """Keep the cell's record as it grows (sweep points)."""

    def done_keys(self) -> set[tuple[str, str]]:
        """The cell's samples already kept, as ``RunStore.done_keys`` gives them."""


def judge_sample(evaluator, task: Task, sample: Sample, compared: Sequence[EditionJudge] = ()) -> Sample:
    """Judge one answer with ``evaluator`` and return the sample with its verdict (any worker, any node);
    ``compared``: the run's other editions, each adding its own verdict on the same answer."""
    try:
        verdict = evaluator.evaluate(task, sample.raw_text)
    except UserError:
        raise  # e.g. the sandbox refuses: surfaces from the run, the sample is asked for again
    except Exception as exc:  # noqa: BLE001 - a broken check must not pass as a verdict on the model
        log.exception("evaluating %s failed", task.id)
        sample.outcome, sample.error = Outcome.error, f"evaluation failed: {type(exc).__name__}: {exc}"
    else:
        sample.outcome, sample.cleaned_outcome = verdict.outcome, verdict.cleaned_outcome
        sample.code, sample.stage, sample.stderr_tail = verdict.code, verdict.stage, verdict.stderr_tail
        sample.cascade, sample.upstream, sample.runner = verdict.cascade, verdict.upstream, verdict.runner
        sample.unscoreable_reason, sample.expected_outputs = verdict.unscoreable_reason, verdict.expected_outputs
        sample.eval_seconds = round(verdict.seconds, 3)
        judge_editions(compared, sample)
    return sample


def judge_editions(compared: Sequence[EditionJudge], sample: Sample) -> Sample:
    """Add the verdict of each edition in ``compared`` that ``sample`` lacks (a failed check is an
    ``error`` verdict there, never the model's failure)."""
    have = {v.edition for v in sample.editions}
    for judge in compared:
        if judge.edition in have:
            continue
        try:
            sample.editions.append(judge.verdict(sample.task_id, sample.raw_text))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - as for the headline: named, kept out of the score
            log.exception("evaluating %s under edition %s failed", sample.task_id, judge.edition)
            sample.editions.append(EditionVerdict(edition=judge.edition, outcome=Outcome.error,
                                                  error=f"evaluation failed: {type(exc).__name__}: {exc}"))
    return sample


def evaluator_for(benchmark: Benchmark, sandbox):
    """The run's evaluator over ``benchmark`` in ``sandbox`` (any node): SimCoPilot's headline is
    upstream's own scoring, our stricter cascade kept beside it; other benchmarks the reverse.
    Its programs are not checked yet: ``runner.evaluation.environment.check_environment`` does that."""
    from runner.benchmarks import default_cascade, scoring_root
    from runner.evaluation import Evaluator

    return Evaluator(benchmark.programs, sandbox=sandbox, junit_console=benchmark.junit_jar,
                     cascade=default_cascade(benchmark.name), both=True, upstream_root=scoring_root(benchmark))


class EvalBacklog:
    """Answers of one cell generated but not judged yet, thread-safe; its figures go to ``cell.json``."""

    def __init__(self, result: CellResult):
        self.result = result
        self._lock = threading.Lock()
        self.pending: set[str] = set()  # task ids

    def add(self, task_id: str) -> None:
        with self._lock:
            self.pending.add(task_id)
            self.result.eval_pending = len(self.pending)
            self.result.eval_backlog_peak = max(self.result.eval_backlog_peak, len(self.pending))

    def done(self, task_id: str) -> None:
        with self._lock:
            self.pending.discard(task_id)
            self.result.eval_pending = len(self.pending)
            self.result.evaluated_at = utcnow()


class StoreSink:
    """The in-process sink: samples go straight to the run store, answers to the local evaluation pool."""

    def __init__(self, run: "Reproduction", cell: Cell, evaluator, pool: ThreadPoolExecutor, backlog: EvalBacklog):
        self.run, self.cell, self.evaluator, self.pool, self.backlog = run, cell, evaluator, pool, backlog
        self.log_path = run.store.server_log(cell)

    def write(self, sample: Sample) -> None:
        self.run.store.append_sample(self.cell, sample)
        self.run.events.sample_written(self.cell, sample)

    def judge(self, task: Task, sample: Sample) -> None:
        # Tests run on the pool and are not awaited here: the server goes on generating,
        # and the next cell loads while this cell's last answers are still being tested.
        self.backlog.add(task.id)
        self.run.pending.append(self.pool.submit(self._judge_and_write, task, sample))

    def _judge_and_write(self, task: Task, sample: Sample) -> None:
        try:
            self.write(judge_sample(self.evaluator, task, sample, self.run.edition_judges))
        finally:
            self.backlog.done(task.id)

    def update(self, result: CellResult) -> None:
        self.run.store.write_cell(result)

    def done_keys(self) -> set[tuple[str, str]]:
        return self.run.store.done_keys(self.cell)


@dataclass
class CellContext:
    """What a cell needs from its run, wherever it runs: the matrix, the run's tasks, what it reports to."""

    matrix: Matrix
    tasks: list[Task]
    latency_tasks: list[Task]
    events: RunEvents = field(default_factory=RunEvents)

    @property
    def settings(self) -> RunSettings:
        return self.matrix.settings

    @functools.cached_property
    def benchmark(self) -> Benchmark:
        """The run's benchmark as this machine has it (loaded on first use)."""
        return load_benchmark(self.matrix.benchmark, self.matrix.edition)


def this_node(gpu_ids: list[int], executor: str, *, node_id: str | None = None,
              gpu_type: str | None = None) -> Placement:
    """A placement on this machine with ``gpu_ids``; the GPU name from NVML when it sees them, else ``gpu_type``."""
    names = {g.get("index"): g.get("name") for g in fingerprint.gpus()}
    known = [names[i] for i in gpu_ids if names.get(i)]
    return Placement(executor=executor, node=socket.gethostname(), node_id=node_id, gpu_ids=gpu_ids,
                     gpu_name=known[0] if known else gpu_type)


# -- the run -----------------------------------------------------------------------------------
class Reproduction:
    """One ``runner reproduce``: a matrix into one run directory."""

    def __init__(self, matrix: Matrix, options: RunOptions, events: RunEvents | None = None):
        self.matrix = matrix
        self.options = options
        self.events = events or RunEvents()
        self.settings = matrix.settings
        if options.limit is not None:
            matrix = matrix.model_copy(update={"tasks": matrix.tasks.model_copy(update={"limit": options.limit})})
            self.matrix = matrix
        self.backend_name = options.backend or matrix.backend
        self.store = RunStore(Path(options.runs_dir) / (options.name or matrix.name), notice=self.events.note)
        self.benchmark = load_benchmark(matrix.benchmark, matrix.edition)
        # every compared edition's copy is there before anything runs (a missing one says how to fetch it)
        self.compared_benchmarks = [load_benchmark(matrix.benchmark, e) for e in matrix.compare_editions]
        self.edition_judges: list[EditionJudge] = []  # built with the environment check
        self.tasks = select_tasks(self.benchmark, matrix.tasks)
        if not self.tasks:
            raise UserError(f"{matrix.path or matrix.name}: [tasks] selects no available task of benchmark "
                            f"{matrix.benchmark}; widen languages/modes/programs")
        everything = matrix.tasks.model_copy(update={"limit": None})
        self.latency_tasks = latency_subset(self.tasks, self.settings, select_tasks(self.benchmark, everything))
        self.manifest: Manifest | None = None
        self.plan = None  # runner.plan.Plan, made when the run starts
        self.manifest_lock = threading.Lock()  # cells on a cluster finish in any order, on driver threads
        self.pending: list[Future] = []  # evaluations still running, possibly of earlier cells
        self.held: tuple[str, RunningServer, str] | None = None  # launch key, server, the cell it was started for
        from runner.executors import get_executor

        self.executor = get_executor(options.executor, address=options.address)

    # -- run directory ---------------------------------------------------------------------------
    def _open_store(self) -> Manifest:
        root = self.store.root
        if self.options.fresh and root.exists():
            if not self.store.exists() and any(p.name != LOCK_NAME for p in root.iterdir()):
                raise UserError(f"{root}: not a run directory (no manifest.json); refusing to delete it "
                                "with --fresh; pick another --name or --runs-dir")
            for item in root.iterdir():  # all but the lock this runner holds
                if item.name == LOCK_NAME:
                    continue
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item)
                else:
                    item.unlink()
        resolved = self.matrix.resolved()
        # a chat style sent to a model without a chat template is plain text: its own prompt set
        styles = sorted({(c.prompt_style, self.matrix.model(c).chat) for c in self.matrix.cells})
        manifest = Manifest(name=root.name, matrix_path=str(self.matrix.path) if self.matrix.path else None,
                            matrix=resolved, cells=self.matrix.cells, fingerprint=fingerprint.collect(),
                            edition=EditionRef.of(self.benchmark.edition) if self.benchmark.edition else None,
                            compare_editions=[EditionRef.of(b.edition) for b in self.compared_benchmarks],
                            prompt_set_sha256={(s if chat else f"{s}:text"): prompts.prompt_set_sha256(
                                                   self.tasks, s, chat=chat, edition=self.benchmark.edition)
                                               for s, chat in styles})
        if self.store.exists():
            old = self.store.read_manifest()
            changed = [key for key in ("settings", "models", "benchmark") if old.matrix.get(key) != resolved.get(key)]
            # a run made before editions was 2024's: another edition's samples must not join it
            if old.matrix.get("edition", DEFAULT_EDITION) != resolved.get("edition", DEFAULT_EDITION):
                changed.append("edition")
            if changed:
                raise UserError(f"{self.store.manifest_path}: this run was made with different matrix "
                                f"{', '.join(changed)}; pick another --name, or rerun with --fresh, which "
                                "deletes this run's samples")
            # keep what earlier sessions learned; the fingerprint is this session's
            manifest.started_at = old.started_at
            manifest.models = old.models
            manifest.images = old.images
            manifest.runtime_versions = old.runtime_versions
        self.store.write_manifest(manifest)
        return manifest

    def _plan(self) -> list[Cell]:
        """The cells to run; cells the executor cannot place are refused, or skipped when asked (their
        records written: the store is open by then; ``_refuse`` has already run before it)."""
        problems = [(cell, why) for cell, why in self._problems() if why]
        self._refuse()
        skipped = {cell.id for cell, _ in problems}
        for cell, why in problems:
            result = self.store.read_cell(cell)
            if result.status != "done":
                self.store.write_cell(CellResult(cell=cell, status="skipped", reason=why, backend=self.backend_name))
            self.events.note(f"skipping {cell.id}: {why}")
        return [cell for cell in self.matrix.cells if cell.id not in skipped]

    def _refuse(self) -> None:
        """Refuse a run with cells the executor cannot place (unless asked to skip them): a ``UserError``
        saying each reason once, raised before anything is written."""
        plan = self.plan or self._make_plan()
        if plan.unrunnable and not self.options.skip_unrunnable:
            raise UserError(f"{len(plan.unrunnable)} of {len(plan.cells)} cells cannot run {self.executor.where} "
                            f"(backend {self.backend_name}):\n" + "\n".join(plan.reason_lines())
                            + "\nrun them on a host that can, or pass --skip-unrunnable")

    def _make_plan(self):
        """The run's plan (``runner.plan``: the one ``doctor`` and ``reproduce --plan`` print)."""
        from runner.plan import make_plan

        self.plan = make_plan(self.matrix, backend=self.backend_name, executor=self.executor,
                              benchmark=self.benchmark, name=self.store.root.name)
        return self.plan

    def _problems(self) -> list[tuple[Cell, str | None]]:
        """Each cell with why the executor cannot place it (None when it can): this host's ``runner
        doctor`` plan in process, the cluster's nodes on Ray."""
        plan = self.plan or self._make_plan()
        return [(c.cell, None if c.runnable else c.reason) for c in plan.cells]

    def run(self) -> RunOutcome:
        """Run every cell through the executor (resuming a run directory that exists), then close the manifest."""
        from runner.models import verify_local_files

        # a refused run leaves no run directory: the plan and the pinned files are checked first
        verify_local_files(self.matrix)
        self._make_plan()
        self._refuse()
        with RunLock(self.store.root):
            return self._run()

    def _run(self) -> RunOutcome:
        self.manifest = self._open_store()
        cells = self._plan()
        self._check_environment()  # before any model is loaded: a sandbox that cannot judge stops here
        self.events.run_started(self.store, self.manifest, self.tasks)
        outcome = RunOutcome(run_dir=self.store.root)
        try:
            self.executor.run(self, cells, outcome.results)
        finally:
            self.executor.close()
            with self.manifest_lock:
                self.manifest.finished_at = utcnow()
                self.store.write_manifest(self.manifest)
        order = {cell.id: i for i, cell in enumerate(self.matrix.cells)}
        outcome.results.sort(key=lambda r: order.get(r.cell.id, len(order)))
        return outcome

    def missing(self, cell: Cell, result: CellResult, *, judging: set[str] = frozenset()) -> tuple[list[Task], list[Task], list[int]]:
        """What ``cell`` still lacks in the store: accuracy and latency tasks, sweep levels; answers in
        ``judging`` (generated, their verdict on its way) count as done."""
        accuracy, latency, sweep = self._missing(cell, result)
        return [t for t in accuracy if t.id not in judging], latency, sweep

    def _check_environment(self) -> None:
        """The sandbox's self-check and every selected program's reference on the judging path; the
        result (unscoreable programs, re-recorded expected outputs) goes into the manifest."""
        from runner.evaluation.environment import prepared_evaluator

        self.events.note(f"checking the environment: {len({t.program for t in self.tasks})} programs' references")
        self.evaluator, report = prepared_evaluator(
            self.benchmark, self.tasks, sandbox_kind=self.options.sandbox, expected=self.options.expected,
            allow_unsandboxed=self.options.allow_unsandboxed, hide=(self.store.root.parent,), note=self.events.note)
        for check in report.unscoreable():
            self.events.note(f"unscoreable: {check.program} ({check.reason})")
        for check in report.re_recorded():
            self.events.note(f"re-recorded: {check.program}'s expected outputs in this environment")
        with self.manifest_lock:
            self.manifest.environment = report
            self.store.write_manifest(self.manifest)
        ids = {t.id for t in self.tasks}
        self.edition_judges = []
        for bench in self.compared_benchmarks:
            there = [t for t in bench.tasks if t.id in ids and t.available]
            self.events.note(f"edition {bench.edition} (compared): checking the environment")
            evaluator, other = prepared_evaluator(
                bench, there, sandbox_kind=self.options.sandbox, expected=self.options.expected,
                allow_unsandboxed=self.options.allow_unsandboxed, hide=(self.store.root.parent,), note=self.events.note)
            for check in other.unscoreable():
                self.events.note(f"unscoreable under edition {bench.edition}: {check.program} ({check.reason})")
            self.edition_judges.append(EditionJudge.over(bench, evaluator))
            with self.manifest_lock:
                self.manifest.compare_environments[bench.edition] = other
                self.store.write_manifest(self.manifest)
        self._judge_missing_editions()

    def _judge_missing_editions(self) -> None:
        """Answers kept before an edition joined ``compare_editions`` are judged under it now, the
        sample appended again with that verdict (the newest line of a task supersedes the older)."""
        if not self.edition_judges:
            return
        names = {j.edition for j in self.edition_judges}
        todo = [(cell, s) for cell in self.matrix.cells for s in self.store.latest_samples(cell)
                if s.phase == "accuracy" and s.outcome is not None and s.error is None
                and not names <= {v.edition for v in s.editions}]
        if not todo:
            return
        self.events.note(f"judging {len(todo)} kept answers under edition(s) {', '.join(sorted(names))}")
        from runner.evaluation.evaluator import default_workers

        with ThreadPoolExecutor(max_workers=self.options.eval_workers or default_workers()) as pool:
            for (cell, _), sample in zip(todo, pool.map(lambda cs: judge_editions(self.edition_judges, cs[1]), todo)):
                self.store.append_sample(cell, sample)

    def sandbox_and_evaluator(self):
        """The evaluator over the run's benchmark, its environment checked (``_check_environment``)."""
        return self.evaluator

    # -- one cell --------------------------------------------------------------------------------
    def _missing(self, cell: Cell, result: CellResult) -> tuple[list[Task], list[Task], list[int]]:
        done = self.store.done_keys(cell)
        accuracy = [t for t in cell_tasks(self.matrix, self.benchmark, self.tasks, cell) if ("accuracy", t.id) not in done]
        resets = get_runtime(cell.runtime).cache_reset is not None
        keys = [_state_key(state) for state in self.settings.cache_states if resets or state != "cold"]
        latency = [t for t in cell_latency_tasks(self.matrix, self.latency_tasks, cell)
                   if any((key, t.id) not in done for key in keys)]
        measured = {p.concurrency for p in result.sweep}
        sweep = [c for c in self.settings.sweep if c not in measured] if self.settings.sweep_requests else []
        return accuracy, latency, sweep

    def _run_cell(self, cell: Cell, backend: Backend, evaluator, pool: ThreadPoolExecutor) -> CellResult:
        """Run ``cell`` here, in this process (the in-process executor's step)."""
        result = self.store.read_cell(cell)
        accuracy, latency, sweep = self._missing(cell, result)
        if not (accuracy or latency or sweep) and result.status == "done":
            self.events.cell_skipped(result)
            return result
        runtime = get_runtime(cell.runtime)
        host_gpus = [int(g.get("index", i)) for i, g in enumerate(self.manifest.fingerprint.gpus)]
        placement = this_node(host_gpus, "inprocess")
        result = result.model_copy(update={"status": "running", "reason": None, "backend": backend.name,
                                           "started_at": utcnow(), "finished_at": None,
                                           "placements": [*result.placements, placement]})
        self.store.write_cell(result)
        sink = StoreSink(self, cell, evaluator, pool, EvalBacklog(result))
        try:
            from runner.models import hash_in_background, prepare

            prepared = prepare(self.matrix, cell, progress=self.events.note)
            hashing = hash_in_background(prepared.records)  # while the server loads
            server, shared_with = self._server_for(cell, runtime, backend, prepared.files, host_gpus)
            self._record_models(hashing.result())
            placement.server = server.ident
            result.load_seconds = server.load_seconds
            result.image_digest = server.image_digest
            result.server_shared_with = shared_with
            if shared_with:
                self.events.note(f"{cell.id}: same launch as {shared_with}, reusing its server")
            cell_run = _CellRun(self, cell, runtime, backend, server, prepared.files, sink, result)
            asyncio.run(cell_run.run(accuracy, latency, sweep))
            result.status = "done"
            result.generation_finished_at = utcnow()
        except CellFailure as exc:
            result.status, result.reason = "failed", str(exc)
            self._release(backend)
        except UserError as exc:  # the model or the server could not be prepared or started
            result.status, result.reason = "failed", str(exc)
            self._release(backend)
        except (KeyboardInterrupt, asyncio.CancelledError):
            result.status, result.reason = "failed", "interrupted; rerun the same command to finish it"
            self._release(backend)
            raise
        except Exception as exc:  # noqa: BLE001 - one broken cell must not cost the cells after it
            log.exception("cell %s failed", cell.id)
            result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"[:1000]
            self._release(backend)
        finally:
            result.finished_at = placement.ended_at = utcnow()
            placement.outcome = "done" if result.status == "done" else "failed"
            self.store.write_cell(result)
            self.finish_cell(result)
        return result

    def finish_cell(self, result: CellResult) -> None:
        """Note in the manifest what a finished cell learned about its runtime (any thread)."""
        with self.manifest_lock:
            if result.server_version:
                self.manifest.runtime_versions[result.cell.runtime] = result.server_version
            if result.image_digest:
                self.manifest.images[result.cell.runtime] = result.image_digest
            self.store.write_manifest(self.manifest)

    def _server_for(self, cell: Cell, runtime: Runtime, backend: Backend, files: ModelFiles,
                    gpus: list[int]) -> tuple[RunningServer, str | None]:
        """The server for ``cell``: the one still up when the previous cell launched exactly the same
        command (e.g. one model under two prompt styles), else a new one; with the id it was started for."""
        # the launch names no port: equal launches serve identically, so reuse changes no result
        spec = runtime.server_spec(cell, files, threads=self.settings.threads, gpus=len(gpus))
        key = spec.model_dump_json()
        held = self.held
        if held is not None and held[0] == key and backend.alive(held[1]):
            return held[1], held[2]
        self._release(backend)
        # in process a server may use every GPU of the host (None), or none where there is none
        server = backend.start(spec, self.store.server_log(cell), health_timeout=self.settings.health_timeout_s,
                               gpus=None if gpus else [], run=self.store.root.name, cell=cell.slug)
        self.held = (key, server, cell.id)
        return server, None

    def _release(self, backend: Backend) -> None:
        """Stop the server kept up for a following cell, if any."""
        held, self.held = self.held, None
        if held is not None:
            backend.stop(held[1])

    def _record_models(self, records: list[ModelRecord]) -> None:
        with self.manifest_lock:
            known = {(r.key, r.path) for r in self.manifest.models}
            for record in records:
                if (record.key, record.path) not in known:
                    self.manifest.models.append(record)
            self.store.write_manifest(self.manifest)


class _CellRun:
    """The three phases of one cell against its running server, on whichever machine runs it: what it
    produces goes to ``sink`` (the run store here, or the stream back to the driver)."""

    def __init__(self, run: Reproduction | CellContext, cell: Cell, runtime: Runtime, backend: Backend,
                 server: RunningServer, files: ModelFiles, sink: CellSink, result: CellResult):
        self.run_ = run
        self.cell = cell
        self.runtime = runtime
        self.backend = backend
        self.server = server
        self.files = files
        self.sink = sink
        self.result = result
        self.settings = run.settings
        self.events = run.events
        self.params = client.SamplingParams(temperature=self.settings.temperature, seed=self.settings.seed,
                                            max_tokens=self.settings.max_tokens)
        self.prompts: dict[str, prompts.Prompt] = {}
        self.death: str | None = None
        self.chat_template_sha256: str | None = None

    @property
    def base(self) -> str:
        return self.server.base_url

    async def run(self, accuracy: list[Task], latency: list[Task], sweep: list[int]) -> None:
        limits = httpx.Limits(max_connections=max([self.settings.concurrency, *self.settings.sweep]) + 4)
        timeout = httpx.Timeout(self.settings.request_timeout_s, connect=10.0)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
            self.http = http
            self.result.server_version = await self.runtime.server_version(http, self.base)
            self.chat_template_sha256 = await self._chat_template_sha256()
            before = await self.runtime.scrape_metrics(http, self.base)
            meter = self._meter().start()
            try:
                await self._accuracy(accuracy)
                await self._latency(latency)
                await self._sweep(sweep)
            finally:
                used = meter.stop()
                self.result.energy_joules, self.result.energy_source = used.energy_joules, used.energy_source
                self.result.peak_gpu_memory_mib, self.result.peak_rss_mib = used.peak_gpu_memory_mib, used.peak_rss_mib
                self.result.resources_absent = used.absent
                if self.death is None and self.backend.alive(self.server):
                    after = await self.runtime.scrape_metrics(http, self.base)
                    self.result.server_metrics = metrics_delta(before, after)

    def _meter(self) -> "ResourceMeter":
        """Energy and memory of this cell: the local server's process tree, the host's GPUs (NVML), RAPL."""
        from runner.resources import ResourceMeter

        local = self.backend.name == "local" and self.server.ident.isdigit()
        return ResourceMeter(server_pid=int(self.server.ident) if local else None)

    async def _chat_template_sha256(self) -> str | None:
        """sha256 of the chat template the server applies: llama.cpp's ``/props``, else the model folder's."""
        try:
            response = await self.http.get(f"{self.base}/props")
            if response.status_code == 200:
                template = response.json().get("chat_template")
                if template:
                    return hashlib.sha256(template.encode()).hexdigest()
        except (httpx.HTTPError, ValueError):
            pass
        folder = self.files.tokenizer_path or (self.files.path if self.files.path.is_dir() else None)
        if folder is not None:
            import json

            for name in ("chat_template.jinja", "tokenizer_config.json"):
                path = folder / name
                if path.is_file():
                    text = path.read_text(encoding="utf-8")
                    template = json.loads(text).get("chat_template") if name.endswith(".json") else text
                    if template:
                        return hashlib.sha256(str(template).encode()).hexdigest()
        return None

    async def _prompt(self, task: Task) -> prompts.Prompt:
        cached = self.prompts.get(task.id)
        if cached is not None:
            return cached
        chat = self.run_.matrix.model(self.cell).chat
        edition = self.run_.benchmark.edition  # the SimCoPilot edition's prompt and truncation (None: starter)
        prompt = prompts.render(task, self.cell.prompt_style, chat=chat, edition=edition)
        room = self.files.context_length - self.settings.max_tokens - _TOKEN_MARGIN
        # a token is at least one byte: a prompt with fewer bytes than the room fits unasked
        if len(prompt.token_text().encode("utf-8")) > room:
            async def count(text: str) -> int:
                return len(await self.runtime.tokenize(self.http, self.base, text))

            if self.cell.prompt_style == "simcopilot":  # upstream's own truncation rule, by tokens
                prompt = await prompts.fit_upstream(task, self.cell.prompt_style, self.runtime.tokens(self.http, self.base),
                                                    context_length=self.files.context_length,
                                                    max_tokens=self.settings.max_tokens, chat=chat, edition=edition)
            else:
                prompt = await prompts.fit(task, self.cell.prompt_style, count,
                                           context_length=self.files.context_length,
                                           max_tokens=self.settings.max_tokens, chat=chat, edition=edition)
        self.prompts[task.id] = prompt
        return prompt

    async def _request(self, task: Task, phase: str, params: client.SamplingParams | None = None, *,
                       cache_state: str | None = None, extras: dict | None = None) -> Sample:
        try:
            prompt = await self._prompt(task)
        except httpx.HTTPError as exc:
            return Sample(task_id=task.id, cell_id=self.cell.id, phase=phase, prompt_style=self.cell.prompt_style,
                          prompt_sha256="", outcome=Outcome.error, error=f"tokenize failed: {exc}",
                          cache_state=cache_state, finished_at=utcnow())
        return await client.measure(self.http, self.base, self.runtime, self.cell, task.id, prompt,
                                    params or self.params, model=self.files.served_name, phase=phase,
                                    chat_template_sha256=self.chat_template_sha256,
                                    timeout_s=self.settings.request_timeout_s, cache_state=cache_state,
                                    extras=extras)

    async def _server_died(self, sample: Sample) -> bool:
        """Whether a failed request failed because the server is gone (then the cell stops)."""
        if sample.outcome != Outcome.error:
            return False
        if self.death is not None:
            return True
        await asyncio.sleep(0.2)  # let a dying process be reaped before asking
        if self.backend.alive(self.server):
            return False
        self.death = (f"server died during the cell ({sample.error}); log {self.sink.log_path}: "
                      f"{log_tail(self.sink.log_path, 5)}")
        return True

    def _write(self, sample: Sample) -> None:
        self.sink.write(sample)

    async def _accuracy(self, tasks: list[Task]) -> None:
        total = len(cell_tasks(self.run_.matrix, self.run_.benchmark, self.run_.tasks, self.cell))
        self.events.phase_started(self.cell, "accuracy", total, total - len(tasks))
        if not tasks:
            return
        gate = asyncio.Semaphore(self.settings.concurrency)
        loop = asyncio.get_running_loop()

        async def one(task: Task) -> None:
            async with gate:
                if self.death:
                    return
                sample = await self._request(task, "accuracy")
            if await self._server_died(sample):
                return
            if sample.outcome == Outcome.error:
                self._write(sample)
            else:
                self.sink.judge(task, sample)  # judged beside generation, never awaited here

        await asyncio.gather(*(one(task) for task in tasks))
        if self.death:
            raise CellFailure(self.death)

    async def _latency(self, tasks: list[Task]) -> None:
        subset = cell_latency_tasks(self.run_.matrix, self.run_.latency_tasks, self.cell)
        states = list(self.settings.cache_states)
        if "cold" in states and self.runtime.cache_reset is None:
            states.remove("cold")
            self.result.reason = f"no cold latency samples: {self.runtime.name} offers no cache reset"
            self.events.note(f"{self.cell.id}: {self.result.reason}")
        done = self.sink.done_keys()
        keys = [_state_key(s) for s in states if s != "replay"]
        self.events.phase_started(self.cell, "latency", len(subset) * len(keys),
                                  sum((key, t.id) in done for key in keys for t in subset))
        if not tasks:
            return
        pool = self.run_.benchmark.available()
        # untimed, unstored, on prompts that are never timed: allocator, threads and the decode path
        # warm (a few tokens do it), no prefix of a timed prompt left behind
        warmup = self.params.model_copy(update={"max_tokens": min(16, self.params.max_tokens)})
        for task in warmup_tasks(pool, subset, self.settings.warmup_requests, self.settings.seed):
            await self._untimed(task, "warmup", warmup)
        primer = self.params.model_copy(update={"max_tokens": 1})
        for task in tasks:
            served_last = False  # whether the server's last request was this very prompt
            for state in states:
                if (_state_key(state), task.id) in done:
                    served_last = False
                    continue
                if state == "replay":
                    if not served_last:
                        await self._untimed(task, "replay-primer")
                    sample = await self._timed(task, "replay", "replay")
                elif state == "cold":
                    await self._reset()
                    sample = await self._timed(task, "latency", "cold", self.runtime.cold_extras(self.cell))
                else:  # warm: only the previous task of the same program is in the cache
                    await self._reset()
                    before = predecessor(task, pool)
                    if before is None:  # a first gap (latency_subset avoids them): no warm state exists
                        self.events.note(f"{self.cell.id}: {task.id} has no earlier gap: no warm sample")
                        continue
                    await self._untimed(before, "warm-primer", primer)
                    sample = await self._timed(task, "latency", "warm")
                served_last = sample.outcome != Outcome.error

    async def _reset(self) -> None:
        """The runtime's own cache reset, when it has one (a failure fails the cell: cold would be a lie)."""
        if self.runtime.cache_reset is None:
            return
        try:
            await self.runtime.reset_cache(self.http, self.base)
        except httpx.HTTPError as exc:
            if self.backend.alive(self.server):
                raise CellFailure(f"{self.runtime.name}: cache reset failed ({type(exc).__name__}: {exc}); "
                                  f"cold and warm latency need it") from None
            raise CellFailure(f"server died during the cell; log {self.sink.log_path}") from None

    async def _untimed(self, task: Task, phase: str, params: client.SamplingParams | None = None) -> None:
        sample = await self._request(task, phase, params)
        if await self._server_died(sample):
            raise CellFailure(self.death)

    async def _timed(self, task: Task, phase: str, state: str, extras: dict | None = None) -> Sample:
        sample = await self._request(task, phase, cache_state=state, extras=extras)
        if await self._server_died(sample):
            raise CellFailure(self.death)
        self._write(sample)
        return sample

    async def _sweep(self, levels: list[int]) -> None:
        total = len(self.settings.sweep) if self.settings.sweep_requests else 0
        self.events.phase_started(self.cell, "sweep", total, total - len(levels))
        params = self.params.model_copy(update={"ignore_eos": True})
        tasks = self.run_.tasks
        for level in levels:
            count = self.settings.sweep_requests
            gate = asyncio.Semaphore(level)

            async def one(task: Task) -> Sample:
                async with gate:
                    return await self._request(task, "sweep", params)

            started = time.perf_counter()
            samples = await asyncio.gather(*(one(tasks[i % len(tasks)]) for i in range(count)))
            seconds = time.perf_counter() - started
            errors = [s for s in samples if s.outcome == Outcome.error]
            for sample in errors:
                if await self._server_died(sample):
                    raise CellFailure(self.death)
                self.events.note(f"{self.cell.id}: sweep request at concurrency {level} failed: {sample.error}")
            ok = [s for s in samples if s.outcome != Outcome.error]
            tokens = sum(s.completion_tokens or 0 for s in ok)
            self.result.sweep.append(SweepPoint(concurrency=level, requests=len(ok), seconds=seconds,
                                                requests_per_s=len(ok) / seconds, output_tokens_per_s=tokens / seconds,
                                                errors=len(errors)))
            self.sink.update(self.result)
            self.events.sweep_measured(self.cell, self.result.sweep[-1])


def reproduce(matrix: Matrix, options: RunOptions, events: RunEvents | None = None) -> RunOutcome:
    """Run ``matrix`` into ``options.runs_dir/<name>``, resuming what is there (``--fresh`` starts over)."""
    return Reproduction(matrix, options, events).run()
