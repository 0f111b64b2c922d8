"""The orchestrator behind ``runner reproduce``: plan, then per cell serve, generate, evaluate, stop.

A reproduction opens (or resumes) the run directory, checks the environment, asks its executor
to run each cell (``runner.running.cell``: the accuracy, latency and sweep phases against one server) and
keeps every sample in the run store as it arrives. Where a cell runs is its executor's choice
(``runner.executors``: in this process, or a Ray cluster whose workers stream samples back); the
run store stays here, in the driver. Samples are flushed one by one; a rerun produces only what is
missing (``RunStore.done_keys``). A server that dies marks its cell ``failed`` with its log tail and
the run goes on. The core never prints: it reports through a ``RunEvents`` object.
"""

from __future__ import annotations

import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from runner import prompts
from runner.benchmarks import DEFAULT_EDITION, load_benchmark
from runner.benchmarks.editions import edition_ref
from runner.errors import UserError
from runner.matrix import Matrix, RunSettings
from runner.measuring import fingerprint
from runner.measuring.activity import ActivityLog
from runner.measuring.noise import REPEAT_PHASES
from runner.planning.selection import (cell_latency_tasks, cell_tasks, latency_subset, repeat_tasks, select_tasks,
                                       state_key, sweep_todo)
from runner.records import Cell, Task, utcnow
from runner.running.cell import judge_editions, judge_sample
from runner.running.events import RunEvents
from runner.running.score import EditionJudge
from runner.runtimes import get_runtime
from runner.store import LOCK_NAME, CellResult, Manifest, ModelRecord, RunLock, RunStore

log = logging.getLogger(__name__)



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
    parallel_cells: int | None = None  # overrides settings.parallel_cells
    gpus: list[int] | None = None  # in process: the GPU ids cells may be placed on (default: all NVML sees)


@dataclass
class RunOutcome:
    """What ``reproduce`` did: the run directory and every cell's result, in matrix order."""

    run_dir: Path
    results: list[CellResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "failed"]


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
        if options.parallel_cells is not None:
            settings = matrix.settings.model_copy(update={"parallel_cells": options.parallel_cells})
            matrix = matrix.model_copy(update={"settings": settings})
            self.matrix, self.settings = matrix, settings
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
        self.plan = None  # runner.planning.plan.Plan, made when the run starts
        self.manifest_lock = threading.Lock()  # cells on a cluster finish in any order, on driver threads
        self.activity = ActivityLog(self.store.root)  # every phase's node, GPUs, start and end
        from runner.executors import get_executor

        extra = {"gpus": options.gpus} if options.gpus is not None else {}
        self.executor = get_executor(options.executor, address=options.address, **extra)

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
                            edition=edition_ref(self.benchmark.edition) if self.benchmark.edition else None,
                            compare_editions=[edition_ref(b.edition) for b in self.compared_benchmarks],
                            prompt_set_sha256={(s if chat else f"{s}:text"): prompts.prompt_set_sha256(
                                                   self.tasks, s, chat=chat, edition=self.benchmark.edition)
                                               for s, chat in styles})
        if self.store.exists():
            old = self.store.read_manifest()
            changed = [key for key in ("settings", "models", "benchmark")
                       if _compared(old.matrix, key) != _compared(resolved, key)]
            # a run made before editions was 2024's: another edition's samples must not join it
            if old.matrix.get("edition", DEFAULT_EDITION) != resolved.get("edition", DEFAULT_EDITION):
                changed.append("edition")
            if changed:
                raise UserError(f"{self.store.manifest_path}: this run was made with different matrix "
                                f"{', '.join(changed)}; pick another --name, or rerun with --fresh, which "
                                "deletes this run's samples")
            # keep what earlier sessions learned; the fingerprint is this session's
            manifest.started_at = old.started_at
            # a run of some cells (reproduce --cell) adds to the run's cells, never drops those run before
            manifest.cells = old.cells + [c for c in manifest.cells if c.id not in {o.id for o in old.cells}]
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
        """The run's plan (``runner.planning.plan``: the one ``doctor`` and ``reproduce --plan`` print)."""
        from runner.planning.plan import make_plan

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
        from runner.serving.models import verify_local_files

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

    def missing(self, cell: Cell, result: CellResult, *, judging: set[str] = frozenset()) -> tuple[list[Task], list[Task], list[str]]:
        """What ``cell`` still lacks in the store: accuracy and latency tasks, sweep levels; answers in
        ``judging`` (generated, their verdict on its way) count as done."""
        accuracy, latency, sweep = self._missing(cell, result)
        return [t for t in accuracy if t.id not in judging], latency, sweep

    def repeats_missing(self, cell: Cell) -> list[Task]:
        """The tasks ``cell`` still has to ask again for its noise floor (``runner.measuring.noise``)."""
        done = self.store.done_keys(cell)
        return [t for t in repeat_tasks(self.matrix, self.benchmark, self.tasks, cell)
                if any((phase, t.id) not in done for phase in REPEAT_PHASES)]

    def _check_environment(self) -> None:
        """The sandbox's self-check and every selected program's reference on the judging path; the
        result (unscoreable programs, re-recorded expected outputs) goes into the manifest."""
        from runner.evaluation.environment import prepared_evaluator

        self.events.note(f"checking the environment: {len({t.program for t in self.tasks})} programs' references")
        self.evaluator, report = prepared_evaluator(
            self.benchmark, self.tasks, sandbox_kind=self.options.sandbox, expected=self.options.expected,
            allow_unsandboxed=self.options.allow_unsandboxed, hide=(self.store.root.parent,), note=self.events.note)
        from runner.benchmarks import benchmark_commit
        from runner.evaluation import verdicts

        verdicts.attach(self.evaluator, benchmark=self.benchmark.name, commit=benchmark_commit(self.benchmark),
                        edition=self.benchmark.edition, enabled=self.settings.reuse_verdicts, run=self.store.root.name)
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
        self._judge_kept_sweep_answers()

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

    def _judge_kept_sweep_answers(self) -> None:
        """Sweep answers kept unjudged (a run stopped after a sweep point was measured, before its
        answers were judged) are judged now; a point not measured whole is asked again anyway."""
        by_id = {t.id: t for t in self.tasks}
        todo = []
        for cell in self.matrix.cells:
            measured = {p.label for p in self.store.read_cell(cell).sweep}
            todo += [(cell, s) for s in self.store.latest_samples(cell)
                     if s.phase == "sweep" and s.load in measured and s.outcome is None and s.error is None
                     and s.task_id in by_id]
        if not todo:
            return
        self.events.note(f"judging {len(todo)} kept sweep answers")
        from runner.evaluation.evaluator import default_workers

        def judged(pair):
            return judge_sample(self.evaluator, by_id[pair[1].task_id], pair[1], self.edition_judges)

        with ThreadPoolExecutor(max_workers=self.options.eval_workers or default_workers()) as pool:
            for (cell, _), sample in zip(todo, pool.map(judged, todo)):
                self.store.append_sample(cell, sample)

    def sandbox_and_evaluator(self):
        """The evaluator over the run's benchmark, its environment checked (``_check_environment``)."""
        return self.evaluator

    def _missing(self, cell: Cell, result: CellResult) -> tuple[list[Task], list[Task], list[str]]:
        done = self.store.done_keys(cell)
        accuracy = [t for t in cell_tasks(self.matrix, self.benchmark, self.tasks, cell) if ("accuracy", t.id) not in done]
        resets = get_runtime(cell.runtime).cache_reset is not None
        keys = [state_key(state) for state in self.settings.cache_states if resets or state != "cold"]
        latency = [t for t in cell_latency_tasks(self.matrix, self.latency_tasks, cell)
                   if any((key, t.id) not in done for key in keys)]
        return accuracy, latency, sweep_todo(self.matrix, cell, result.sweep)

    def finish_cell(self, result: CellResult) -> None:
        """Note in the manifest what a finished cell learned about its runtime (any thread)."""
        with self.manifest_lock:
            if result.server_version:
                self.manifest.runtime_versions[result.cell.runtime] = result.server_version
            if result.image_digest:
                self.manifest.images[result.cell.runtime] = result.image_digest
            self.store.write_manifest(self.manifest)

    def record_models(self, records: list[ModelRecord]) -> None:
        """Add the model files a cell served to the manifest (any thread)."""
        with self.manifest_lock:
            known = {(r.key, r.path) for r in self.manifest.models}
            for record in records:
                if (record.key, record.path) not in known:
                    self.manifest.models.append(record)
            self.store.write_manifest(self.manifest)


#: settings that change how a verdict is reached, never which: a run resumes with them switched
_HOW_NOT_WHAT = ("reuse_verdicts", "parallel_cells")


def _compared(matrix: dict, key: str):
    """``matrix[key]`` as resuming compares it: settings without ``_HOW_NOT_WHAT`` and without those at
    their default (a run made before a setting existed lacks it: the same as its default)."""
    value = matrix.get(key)
    if key == "settings" and isinstance(value, dict):
        defaults = RunSettings().model_dump(mode="json")
        return {k: v for k, v in value.items() if k not in _HOW_NOT_WHAT and (k not in defaults or v != defaults[k])}
    return value


def reproduce(matrix: Matrix, options: RunOptions, events: RunEvents | None = None) -> RunOutcome:
    """Run ``matrix`` into ``options.runs_dir/<name>``, resuming what is there (``--fresh`` starts over)."""
    return Reproduction(matrix, options, events).run()
