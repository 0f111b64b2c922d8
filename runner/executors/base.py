"""What every executor provides: a plan (which cells it can place, and if not, why) and the run itself."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from runner.planning.doctor import CellPlan
    from runner.matrix import Matrix
    from runner.records import Cell
    from runner.run import Reproduction
    from runner.store import CellResult


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
    def run(self, run: Reproduction, cells: list[Cell], results: list[CellResult]) -> None:
        """Run ``cells`` of ``run``, appending each cell's final record to ``results`` as it finishes;
        samples and records go to ``run.store`` (here) as they are produced."""

    def close(self) -> None:
        """Let go of what the executor holds (a cluster connection it opened); idempotent."""
