"""What every executor provides: a plan (which cells it can place, and if not, why) and the run itself.

An executor sits below the run that owns it (``runner.running.run``): it sees that run only as a ``RunContext``,
so the run may choose its executor without the executors importing the run back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from runner.benchmarks.benchmark import Benchmark
    from runner.evaluation import Evaluator
    from runner.matrix import Matrix, RunSettings
    from runner.measuring.activity import ActivityLog
    from runner.planning.doctor import CellPlan
    from runner.records import Cell, Task
    from runner.running.events import RunEvents
    from runner.running.score import EditionJudge
    from runner.store import CellResult, Manifest, ModelRecord, RunStore


class EvalOptions(Protocol):
    """The options of a run that its executor reads: how generated code is tested."""

    sandbox: str
    allow_unsandboxed: bool
    expected: str
    eval_workers: int | None


class RunContext(Protocol):
    """What an executor uses of the run it serves (``runner.running.run.Reproduction`` is one): the matrix,
    tasks, store, events and activity log, and the calls that say what a cell lacks and record what it did."""

    matrix: Matrix
    settings: RunSettings
    options: EvalOptions
    backend_name: str
    benchmark: Benchmark
    tasks: list[Task]
    latency_tasks: list[Task]
    edition_judges: list[EditionJudge]
    store: RunStore
    events: RunEvents
    activity: ActivityLog
    manifest: Manifest | None

    def missing(self, cell: Cell, result: CellResult, *,
                judging: set[str] = ...) -> tuple[list[Task], list[Task], list[int]]:
        """What ``cell`` still lacks in the store: accuracy and latency tasks, sweep levels."""

    def repeats_missing(self, cell: Cell) -> list[Task]:
        """The tasks ``cell`` still has to ask again for its noise floor."""

    def sandbox_and_evaluator(self) -> Evaluator:
        """The evaluator over the run's benchmark, its environment checked."""

    def finish_cell(self, result: CellResult) -> None:
        """Note in the manifest what a finished cell learned about its runtime (any thread)."""

    def record_models(self, records: list[ModelRecord]) -> None:
        """Add the model files a cell served to the manifest (any thread)."""


class Executor(ABC):
    """Decides on which machine each cell of a run is served; the run store stays with the caller."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def where(self) -> str:
        """Where cells run, for messages: ``on this host``, ``on the Ray cluster at ...``."""

    @abstractmethod
    def plan(self, matrix: Matrix, backend: str) -> list[CellPlan]:
        """Per cell of ``matrix``: can it be placed, on which device, and if not, why; nothing starts."""

    @abstractmethod
    def run(self, run: RunContext, cells: list[Cell], results: list[CellResult]) -> None:
        """Run ``cells`` of ``run``, appending each cell's final record to ``results`` as it finishes;
        samples and records go to ``run.store`` (here) as they are produced."""

    def close(self) -> None:
        """Let go of what the executor holds (a cluster connection it opened); idempotent."""
