"""The in-process executor: every cell on this host, one after another (the default).

A server is kept up for the next cell when that cell launches exactly the same command; answers are
tested on a local thread pool while generation goes on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, ClassVar

from runner.errors import UserError
from runner.executors import register_executor
from runner.executors.base import Executor

if TYPE_CHECKING:
    from runner.doctor import CellPlan
    from runner.matrix import Matrix
    from runner.records import Cell
    from runner.run import Reproduction
    from runner.store import CellResult


@register_executor
class InProcessExecutor(Executor):
    """Runs the cells in this process, on this host."""

    name: ClassVar[str] = "inprocess"

    def __init__(self, address: str | None = None):
        if address:
            raise UserError(f"the in-process executor runs on this host and takes no address (got {address!r}); "
                            "use --ray ADDRESS for a cluster")

    @property
    def where(self) -> str:
        return "on this host"

    def plan(self, matrix: Matrix, backend: str) -> list[CellPlan]:
        """``runner doctor``'s plan for this host."""
        from runner.doctor import plan_cells

        return plan_cells(matrix, backend=backend)

    def run(self, run: Reproduction, cells: list[Cell], results: list[CellResult]) -> None:
        """The cells in matrix order; the last cells' answers are judged after their servers are gone."""
        from runner.backends import get_backend
        from runner.evaluation import default_workers

        backend = get_backend(run.backend_name)
        evaluator = run.sandbox_and_evaluator()
        pool = ThreadPoolExecutor(max_workers=run.options.eval_workers or default_workers(), thread_name_prefix="eval")
        try:
            for index, cell in enumerate(cells):
                run.events.cell_started(cell, index, len(cells))
                result = run._run_cell(cell, backend, evaluator, pool)
                results.append(result)
                run.events.cell_finished(result)
            run._release(backend)
            for future in run.pending:  # the last cells' tests, after their servers are gone
                future.result()
            for result in results:  # with the evaluation figures complete
                if result.started_at is not None and result.status != "skipped":
                    run.store.write_cell(result)
        finally:
            run._release(backend)
            # on Ctrl-C, answers not yet judged are dropped unwritten: a rerun asks for them again
            pool.shutdown(wait=True, cancel_futures=True)
