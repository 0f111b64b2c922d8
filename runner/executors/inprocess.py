"""The in-process executor: every cell on this host, one at a time or several at once (the default).

**One at a time** (``settings.parallel_cells = 1``, and the default on a host without GPUs): a
server is kept up for the next cell when that cell launches exactly the same command. Its server is
given the first of the host's GPUs, as many as the cell asks for (``Matrix.request``), never more.

**Several at once** (``--parallel-cells N``; by default as many as this host's GPUs allow): each
cell gets the GPU ids it asks for (``Matrix.request``), disjoint from every other running cell's,
and its own server. Cells start in matrix order as GPUs free up; a cell that does not fit yet lets
a smaller one behind it start. Accuracy phases overlap, and a timed phase waits for the node's
timing lock (``runner.measuring.activity``), so that no latency figure is taken while a neighbour generates.
On a host without GPUs, N CPU cells run at once under the same rule.

Either way answers are tested on one local thread pool while generation goes on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from runner.errors import UserError
from runner.executors import register_executor
from runner.executors.base import Executor, RunContext
from runner.records import utcnow

if TYPE_CHECKING:
    from runner.backends.base import Backend, RunningServer
    from runner.matrix import Matrix
    from runner.measuring.activity import Activity
    from runner.planning.doctor import CellPlan
    from runner.records import Cell, Sample, Task
    from runner.running.cell import EvalBacklog
    from runner.runtimes.base import ModelFiles, Runtime
    from runner.store import CellResult

log = logging.getLogger(__name__)


class StoreSink:
    """The in-process sink: samples go straight to the run store, answers to the local evaluation pool."""

    def __init__(self, run: RunContext, cell: Cell, evaluator, pool: ThreadPoolExecutor, backlog: EvalBacklog,
                 pending: list[Future]):
        self.run, self.cell, self.evaluator, self.pool, self.backlog = run, cell, evaluator, pool, backlog
        self.pending = pending
        self.log_path = run.store.server_log(cell)

    def write(self, sample: Sample) -> None:
        self.run.store.append_sample(self.cell, sample)
        self.run.events.sample_written(self.cell, sample)

    def judge(self, task: Task, sample: Sample) -> None:
        # Tests run on the pool and are not awaited here: the server goes on generating,
        # and the next cell loads while this cell's last answers are still being tested.
        from runner.running.cell import EvalBacklog

        self.backlog.add(EvalBacklog.key(sample))
        self.pending.append(self.pool.submit(self._judge_and_write, task, sample))

    def _judge_and_write(self, task: Task, sample: Sample) -> None:
        from runner.running.cell import EvalBacklog, judge_sample

        key = EvalBacklog.key(sample)
        try:
            self.write(judge_sample(self.evaluator, task, sample, self.run.edition_judges))
        finally:
            self.backlog.done(key)

    def update(self, result: CellResult) -> None:
        self.run.store.write_cell(result)

    def done_keys(self) -> set[tuple[str, str]]:
        return self.run.store.done_keys(self.cell)

    def activity(self, record: Activity) -> None:
        self.run.activity.append(record)


@dataclass
class _Slot:
    """Where one cell runs: its GPU ids, and the server it may hand on to the next cell (one at a time)."""

    gpu_ids: list[int]
    held: tuple[str, RunningServer, str] | None = None  # launch key, server, the cell it was started for
    keep: bool = True  # whether a server outlives its cell for an identical next launch
    loop: asyncio.AbstractEventLoop | None = None  # the running cell's, to cancel it from the driver
    task: asyncio.Task | None = None


@register_executor
class InProcessExecutor(Executor):
    """Runs the cells in this process, on this host."""

    name: ClassVar[str] = "inprocess"

    def __init__(self, address: str | None = None, gpus: list[int] | None = None):
        if address:
            raise UserError(f"the in-process executor runs on this host and takes no address (got {address!r}); "
                            "use --ray ADDRESS for a cluster")
        self.gpus = gpus  # the GPU ids cells may be placed on; None: every GPU NVML sees here
        self.pending: list[Future] = []  # evaluations still running, possibly of earlier cells
        self.stopping = threading.Event()  # set on Ctrl-C: cells not yet serving do not start

    @property
    def where(self) -> str:
        return "on this host"

    def plan(self, matrix: Matrix, backend: str) -> list[CellPlan]:
        """``runner doctor``'s plan for this host."""
        from runner.planning.doctor import plan_cells

        return plan_cells(matrix, backend=backend)

    def host_gpus(self, run: RunContext) -> list[int]:
        """The GPU ids cells are placed on: the declared ones, else the fingerprint's."""
        if self.gpus is not None:
            return list(self.gpus)
        return [int(g.get("index", i)) for i, g in enumerate(run.manifest.fingerprint.gpus)]

    def parallel(self, run: RunContext, gpus: list[int]) -> int:
        """How many cells run at once: ``settings.parallel_cells``, else one per GPU (one without GPUs)."""
        return run.settings.parallel_cells or max(1, len(gpus))

    def run(self, run: RunContext, cells: list[Cell], results: list[CellResult]) -> None:
        """The cells, one at a time in matrix order or several at once; the last cells' answers are
        judged after their servers are gone."""
        from runner.backends import get_backend
        from runner.evaluation import default_workers

        backend = get_backend(run.backend_name)
        gpus = self.host_gpus(run)
        at_once = min(self.parallel(run, gpus), max(1, len(cells)))
        pool = ThreadPoolExecutor(max_workers=run.options.eval_workers or default_workers(), thread_name_prefix="eval")
        try:
            if at_once == 1:
                slot = _Slot(gpu_ids=gpus)
                try:
                    for index, cell in enumerate(cells):
                        run.events.cell_started(cell, index, len(cells))
                        result = self._run_cell(run, cell, backend, pool, slot)
                        results.append(result)
                        run.events.cell_finished(result)
                finally:
                    _release(backend, slot)
            else:
                self._run_parallel(run, cells, results, backend, pool, gpus, at_once)
            for future in list(self.pending):  # the last cells' tests, after their servers are gone
                future.result()
            for result in results:  # with the evaluation figures complete
                if result.started_at is not None and result.status != "skipped":
                    run.store.write_cell(result)
        finally:
            # on Ctrl-C, answers not yet judged are dropped unwritten: a rerun asks for them again
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_parallel(self, run: RunContext, cells: list[Cell], results: list[CellResult], backend: Backend,
                      pool: ThreadPoolExecutor, gpus: list[int], at_once: int) -> None:
        """Up to ``at_once`` cells at a time, each on GPU ids no other running cell holds."""
        need = {cell.id: (run.matrix.request(cell).gpus if gpus else 0) for cell in cells}
        waiting = list(enumerate(cells))
        for index, cell in list(waiting):
            if need[cell.id] > len(gpus):
                waiting.remove((index, cell))
                results.append(self._refused(run, cell, f"needs {need[cell.id]} GPUs and this host offers "
                                                        f"{len(gpus)} ({', '.join(map(str, gpus))})"))
        free = list(gpus)
        running: dict[Future, tuple[Cell, list[int]]] = {}
        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="cell") as threads:
            try:
                while waiting or running:
                    for index, cell in list(waiting):
                        if len(running) >= at_once:
                            break
                        if need[cell.id] <= len(free):
                            held = [free.pop(0) for _ in range(need[cell.id])]
                            waiting.remove((index, cell))
                            run.events.cell_started(cell, index, len(cells))
                            slot = _Slot(gpu_ids=held, keep=False)
                            future = threads.submit(self._run_cell, run, cell, backend, pool, slot)
                            running[future] = (cell, held, slot)
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done:
                        cell, held, _slot = running.pop(future)
                        free = sorted([*free, *held])
                        result = future.result()
                        results.append(result)
                        run.events.cell_finished(result)
            except BaseException:  # Ctrl-C reaches this thread only: stop the cells running on the others
                self.stopping.set()
                for _cell, _held, slot in running.values():
                    _cancel(slot)
                raise

    def _refused(self, run: RunContext, cell: Cell, why: str) -> CellResult:
        result = run.store.read_cell(cell).model_copy(update={"status": "failed", "reason": why,
                                                              "backend": run.backend_name})
        run.store.write_cell(result)
        run.events.cell_finished(result)
        return result

    def _run_cell(self, run: RunContext, cell: Cell, backend: Backend, pool: ThreadPoolExecutor,
                  slot: _Slot) -> CellResult:
        """Run ``cell`` here, in this process, on ``slot``'s GPUs."""
        from runner.running.cell import CellFailure, CellRun, EvalBacklog, this_node
        from runner.runtimes import get_runtime

        result = run.store.read_cell(cell)
        accuracy, latency, sweep = run.missing(cell, result)
        if not (accuracy or latency or sweep or run.repeats_missing(cell)) and result.status == "done":
            run.events.cell_skipped(result)
            return result
        runtime = get_runtime(cell.runtime)
        placement = this_node(_cell_gpus(run, cell, slot), "inprocess")
        result = result.model_copy(update={"status": "running", "reason": None, "backend": backend.name,
                                           "started_at": utcnow(), "finished_at": None,
                                           "placements": [*result.placements, placement]})
        run.store.write_cell(result)
        sink = StoreSink(run, cell, run.sandbox_and_evaluator(), pool, EvalBacklog(result), self.pending)
        try:
            from runner.serving.model_files import hash_in_background
            from runner.serving.models import prepare

            prepared = prepare(run.matrix, cell, progress=run.events.note)
            hashing = hash_in_background(prepared.records)  # while the server loads
            server, shared_with = _server_for(run, cell, runtime, backend, prepared.files, slot)
            run.record_models(hashing.result())
            placement.server = server.ident
            result.load_seconds = server.load_seconds
            result.image_digest = server.image_digest
            result.server_shared_with = shared_with
            if shared_with:
                run.events.note(f"{cell.id}: same launch as {shared_with}, reusing its server")
            cell_run = CellRun(run, cell, runtime, backend, server, prepared.files, sink, result)
            if self.stopping.is_set():
                raise KeyboardInterrupt
            _serve(slot, cell_run.run(accuracy, latency, sweep))
            result.status = "done"
            result.generation_finished_at = utcnow()
        except (CellFailure, UserError) as exc:  # the server died, or could not be prepared or started
            result.status, result.reason = "failed", str(exc)
            _release(backend, slot)
        except (KeyboardInterrupt, asyncio.CancelledError):
            result.status, result.reason = "failed", "interrupted; rerun the same command to finish it"
            _release(backend, slot)
            raise
        except Exception as exc:  # noqa: BLE001 - one broken cell must not cost the cells after it
            log.exception("cell %s failed", cell.id)
            result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"[:1000]
            _release(backend, slot)
        finally:
            if not slot.keep:
                _release(backend, slot)
            result.finished_at = placement.ended_at = utcnow()
            placement.outcome = "done" if result.status == "done" else "failed"
            run.store.write_cell(result)
            run.activity.append(_cell_record(cell, placement))
            run.finish_cell(result)
        return result


def _cell_record(cell: Cell, placement) -> Activity:
    from runner.measuring.activity import Activity

    return Activity(kind="cell", cell_id=cell.id, node_id=placement.node_id or placement.node, node=placement.node,
                    gpu_ids=placement.gpu_ids, started_at=placement.started_at,
                    ended_at=placement.ended_at or utcnow(), outcome=placement.outcome)


def _cell_gpus(run: RunContext, cell: Cell, slot: _Slot) -> list[int]:
    """The GPU ids ``cell``'s server is given: as many of the slot's as the matrix gives the cell (its
    weights' gpus), never the rest: one at a time a slot holds every GPU of the host, and vLLM's tensor
    parallel and llama.cpp's layer split span whatever the server sees."""
    return list(slot.gpu_ids[:run.matrix.request(cell).gpus])


def _server_for(run: RunContext, cell: Cell, runtime: Runtime, backend: Backend, files: ModelFiles,
                slot: _Slot) -> tuple[RunningServer, str | None]:
    """The server for ``cell``: the one still up when the slot's previous cell launched exactly the
    same command (e.g. one model under two prompt styles), else a new one; with the id it was started for."""
    ids = _cell_gpus(run, cell, slot)
    # the launch names no port: equal launches serve identically, so reuse changes no result
    spec = runtime.server_spec(cell, files, threads=run.settings.threads, gpus=len(ids))
    key = spec.model_dump_json()
    held = slot.held
    if held is not None and held[0] == key and backend.alive(held[1]):
        return held[1], held[2]
    _release(backend, slot)
    server = backend.start(spec, run.store.server_log(cell), health_timeout=run.settings.health_timeout_s,
                           gpus=list(ids), run=run.store.root.name, cell=cell.slug)
    slot.held = (key, server, cell.id)
    return server, None


def _release(backend: Backend, slot: _Slot) -> None:
    """Stop the server the slot kept up, if any."""
    held, slot.held = slot.held, None
    if held is not None:
        backend.stop(held[1])


def _serve(slot: _Slot, phases) -> None:
    """Run a cell's phases on an event loop of this thread that ``_cancel`` can reach from another."""
    loop = asyncio.new_event_loop()
    try:
        slot.task = loop.create_task(phases)
        slot.loop = loop
        loop.run_until_complete(slot.task)
    finally:
        slot.loop = None
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _cancel(slot: _Slot) -> None:
    """Cancel the cell running on ``slot`` (any thread): its requests stop, it ends as interrupted."""
    loop, task = slot.loop, slot.task
    if loop is not None and task is not None:
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop closed meanwhile: the cell has ended
            pass
