"""The Ray executor: cells as Ray tasks on the GPUs that fit them, tests on any CPU, the store on the driver.

- **Placement.** Each cell is a Ray task asking for the cell's GPUs (``Matrix.request``: its group's
  ``gpus``, else its weights' tensor-parallel degree; 0 runs it on CPUs) and, when a GPU model is
  named, as many units of the node resource ``gpu:<type>``. Ray never over-commits a node and
  hands concurrent tasks disjoint GPU ids; the worker restricts the cell's server to those ids
  through the existing local or Docker backend. Model files are prepared on the worker (its own
  cache, or a shared ``path`` source). ``plan`` refuses, per cell and before anything starts, what
  no node of the cluster can hold.
- **The store stays here.** The cell task is a Ray generator: every sample, every record update and
  the server log stream back to the driver, which appends and flushes them in the run directory.
  A node that goes away costs at most the requests in flight: the cell is submitted again and does
  only what the driver's store lacks (answers whose verdict is on its way count as done), so
  nothing is duplicated. Each attempt is a ``Placement`` in ``cell.json`` (node, GPU ids, GPU name).
- **Evaluation fans out** as Ray CPU tasks (``num_cpus=1``) to any node with a free CPU, or only to
  the nodes declaring the resource ``runner-sandbox`` when some do, so a GPU task never waits for a
  test suite; each verdict comes back to the driver, and ``cell.json`` keeps the cell's backlog.
- **Activity log.** ``activity.jsonl`` in the run directory (``runner.measuring.activity``): one line per
  cell attempt, per phase and per evaluation, with node, GPU ids and start and end times. Cells
  sharing a node time their latency and sweep phases under that node's timing lock.

Every node needs the runner installed (``pip install -e '.[ray]'`` in its checkout) with the benchmark
data it evaluates (``runner data fetch``), and the runtimes' servers or the Docker engine.

This module is the driver's side; what runs on the workers is in ``runner.executors.ray_worker``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

from pydantic import BaseModel

from runner.errors import UserError
from runner.executors import register_executor
from runner.executors.base import Executor, RunContext
from runner.executors.ray_worker import (ActivityRecord, CellJob, Ended, Judged, NodeInfo, Phase, Prepared, ServerLog,
                                         Started, ToJudge, Updated, Written, judge_remote, serve_cell,
                                         serve_cell_to_queue)
from runner.matrix import Matrix
from runner.measuring.activity import Activity
from runner.records import Cell, utcnow
from runner.store import CellResult

if TYPE_CHECKING:
    from runner.planning.doctor import CellPlan

log = logging.getLogger(__name__)

#: the Ray release the ``[ray]`` extra pins (pyproject.toml); a cluster must run the same one
RAY_VERSION = "2.60.0"
#: attempts per cell when nodes go away under it (the first one included)
MAX_ATTEMPTS = 3
#: a node resource marking the nodes that can test code (sandbox ready); when any node declares it,
#: evaluation goes only to those nodes, else to any node with a free CPU
SANDBOX_RESOURCE = "runner-sandbox"


def import_ray():
    """The ``ray`` module, or a ``UserError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        # the distribution name ``runner`` on PyPI is someone else's: install from this checkout
        raise UserError(f"--ray needs Ray: pip install -e '.[ray]' in the runner checkout (Ray {RAY_VERSION}, the same "
                        "version on every node of the cluster)") from None
    return ray


# -- on the driver --------------------------------------------------------------------------------
def cluster_nodes(ray) -> list[NodeInfo]:
    """The cluster's live nodes with their CPUs, GPUs and GPU types."""
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources") or {}
        nodes.append(NodeInfo(node_id=node["NodeID"], host=node.get("NodeManagerAddress", ""),
                              cpus=resources.get("CPU", 0), gpus=resources.get("GPU", 0),
                              gpu_types={k.split(":", 1)[1]: v for k, v in resources.items() if k.startswith("gpu:")},
                              head="node:__internal_head__" in resources))
    return nodes


def place(matrix: Matrix, cell: Cell, nodes: list[NodeInfo]) -> str | None:
    """Why no node of ``nodes`` can hold ``cell`` (None when one can)."""
    from runner.runtimes import get_runtime

    request = matrix.request(cell)
    if request.gpus == 0:
        if get_runtime(cell.runtime).requires_gpu:
            return f"runtime {cell.runtime} runs on NVIDIA GPUs only and this cell asks for none; set gpus >= 1"
        cpus = matrix.settings.threads or 1  # what its task asks for (see _Driver.drive)
        if not any(n.cpus >= cpus for n in nodes):
            return (f"asks for CPUs only (gpus = 0), {cpus} of them on one node (settings.threads), and no node "
                    f"of the cluster offers that many")
        return None
    typed = [n for n in nodes if request.gpu_type is None or n.gpu_types.get(request.gpu_type, 0) > 0]
    if not typed:
        types = sorted({t for n in nodes for t in n.gpu_types})
        return (f"asks for GPU type {request.gpu_type} and no node offers resource gpu:{request.gpu_type} "
                f"(types here: {', '.join(types) or 'none'}); start its nodes with --resources "
                f"'{{\"gpu:{request.gpu_type}\": N}}'")
    fits = [n for n in typed if n.gpus >= request.gpus
            and (request.gpu_type is None or n.gpu_types.get(request.gpu_type, 0) >= request.gpus)]
    if not fits:
        largest = max(int(n.gpus) for n in typed)
        kind = f" of type {request.gpu_type}" if request.gpu_type else ""
        return (f"needs {request.gpus} GPUs{kind} on one node and the largest node{kind} has {largest}; "
                "lower its gpus (tensor parallel) or add a larger node")
    return None


@register_executor
class RayExecutor(Executor):
    """Cells as Ray tasks over a cluster's GPU nodes, evaluation as Ray CPU tasks, the store here."""

    name: ClassVar[str] = "ray"

    def __init__(self, address: str | None = None):
        self.address = address or "auto"
        self.ray = import_ray()
        self._connected_here = False

    @property
    def where(self) -> str:
        return "on the Ray cluster" + ("" if self.address in ("auto", "local") else f" at {self.address}")

    def connect(self):
        """Connect to the cluster (``local`` starts a one-machine Ray); the ``ray`` module."""
        ray = self.ray
        if not ray.is_initialized():
            address = None if self.address == "local" else self.address
            # Ray Client starts a server process per connection, which can fail on a loaded head: retry
            attempts = 3 if self.address.startswith("ray://") else 1
            for attempt in range(1, attempts + 1):
                try:
                    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
                    break
                except ConnectionError as exc:
                    if attempt == attempts:
                        raise UserError(f"--ray {self.address}: no Ray cluster answers ({exc}); start one with "
                                        "`ray start --head`, or use --ray local") from None
                    log.warning("--ray %s: connecting failed (%s); retrying", self.address, exc)
                    time.sleep(2.0 * attempt)
            self._connected_here = True
        return ray

    def close(self) -> None:
        if self._connected_here and self.ray.is_initialized():
            self.ray.shutdown()
        self._connected_here = False

    def nodes(self) -> list[NodeInfo]:
        """The cluster's live nodes."""
        return cluster_nodes(self.connect())

    def plan(self, matrix: Matrix, backend: str) -> list[CellPlan]:
        """Per cell: can some node of the cluster hold its request (GPUs, GPU type)?"""
        from runner.planning.doctor import CellPlan

        nodes = self.nodes()
        plans = []
        for cell in matrix.cells:
            why = place(matrix, cell, nodes)
            device = "gpu" if matrix.request(cell).gpus else "cpu"
            plans.append(CellPlan(cell=cell, runnable=why is None, device=device, reason=why))
        return plans

    def run(self, run: RunContext, cells: list[Cell], results: list[CellResult]) -> None:
        """Submit every cell at once (Ray queues what does not fit yet), drive each on its own thread."""
        ray = self.connect()
        sandboxed = any(SANDBOX_RESOURCE in (node.get("Resources") or {}) for node in ray.nodes() if node.get("Alive"))
        driver = _Driver(ray, run, {SANDBOX_RESOURCE: 0.01} if sandboxed else {})
        # one driver thread per cell: each only waits on its stream, the work is on the cluster
        with ThreadPoolExecutor(max_workers=max(1, len(cells)), thread_name_prefix="cell") as threads:
            futures = []
            for index, cell in enumerate(cells):
                run.events.cell_started(cell, index, len(cells))
                futures.append(threads.submit(driver.drive, cell))
            try:
                for future in futures:
                    result = future.result()
                    results.append(result)
                    run.events.cell_finished(result)
            except BaseException:
                driver.stop()
                raise
        driver.wait_for_verdicts()


class _Driver:
    """The driver's side of a Ray run: streams in, appends, fans evaluation out, reschedules lost cells."""

    def __init__(self, ray, run: RunContext, eval_resources: dict[str, float]):
        self.ray = ray
        self.run = run
        self.eval_resources = eval_resources
        self.store = run.store
        self.stopping = False
        self._streams: dict[str, Any] = {}  # cell id -> its running task's stream
        self._verdicts: list[threading.Event] = []  # one per fanned-out answer, set once it is written
        self._lock = threading.Lock()  # the verdict list
        self._serve = ray.remote(serve_cell)
        self._serve_to_queue = ray.remote(serve_cell_to_queue)
        self._judge = ray.remote(judge_remote)
        from ray.util.client import ray as ray_client

        self.through_client = ray_client.is_connected()  # ray://: no streaming generators there

    def _activity(self, record: Activity) -> None:
        self.run.activity.append(record)

    def drive(self, cell: Cell) -> CellResult:
        """Run ``cell`` on the cluster until it is done, failed, or lost ``MAX_ATTEMPTS`` times."""
        from runner.running.cell import EvalBacklog

        run = self.run
        result = self.store.read_cell(cell)
        backlog = EvalBacklog(result)
        cell_lock = threading.Lock()  # this cell's record: its stream and its verdicts both write it
        request = run.matrix.request(cell)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            accuracy, latency, sweep = run.missing(cell, result, judging=set(backlog.pending))
            if not (accuracy or latency or sweep or run.repeats_missing(cell)) and result.status == "done":
                run.events.cell_skipped(result)
                return result
            job = CellJob(matrix=run.matrix, cell=cell, run_name=self.store.root.name, backend=run.backend_name,
                          tasks=run.tasks, latency_tasks=run.latency_tasks, accuracy=[t.id for t in accuracy],
                          latency=[t.id for t in latency], sweep=sweep, done=sorted(self.store.done_keys(cell)),
                          result=result, gpu_type=request.gpu_type)
            options: dict[str, Any] = {"num_gpus": request.gpus, "max_retries": 0,  # a lost cell is resubmitted here
                                       "num_cpus": 0 if request.gpus else (run.settings.threads or 1)}
            if request.resources:
                options["resources"] = request.resources
            if self.stopping:
                break
            try:
                for event in self._events(cell, job, options):
                    result = self._on_event(cell, event, result, backlog, cell_lock)
                return result
            except self.ray.exceptions.RayTaskError as exc:  # the task itself raised: the cell failed
                if self.stopping:
                    break
                with cell_lock:
                    result.status, result.reason = "failed", str(exc).splitlines()[-1][:1000]
                    result.finished_at = utcnow()
                    self.store.write_cell(result)
                return result
            except self.ray.exceptions.RayError as exc:  # the node or the worker went away, or we cancelled
                if self.stopping:
                    break
                with cell_lock:
                    if result.placements and result.placements[-1].outcome is None:
                        lost = result.placements[-1]
                        lost.ended_at, lost.outcome = utcnow(), "lost"
                        self._activity(Activity(kind="cell", cell_id=cell.id, node_id=lost.node_id or "",
                                                node=lost.node, gpu_ids=lost.gpu_ids, started_at=lost.started_at,
                                                ended_at=lost.ended_at, outcome="lost"))
                    result.status, result.reason = "failed", f"lost its node ({type(exc).__name__}); rescheduled"
                    self.store.write_cell(result)
                run.events.note(f"{cell.id}: lost its node ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                                f"resubmitting (attempt {attempt + 1} of {MAX_ATTEMPTS})")
            finally:
                self._streams.pop(cell.id, None)
        with cell_lock:
            result.status = "failed"
            result.reason = ("interrupted; rerun the same command to finish it" if self.stopping else
                             f"lost its node {MAX_ATTEMPTS} times; rerun the same command to finish it")
            self.store.write_cell(result)
        return result

    def _events(self, cell: Cell, job: CellJob, options: dict[str, Any]) -> Iterator[BaseModel]:
        """Submit ``job`` and yield what it streams back; raises a ``RayError`` when its node is lost."""
        if not self.through_client:
            stream = self._serve.options(**options).remote(job)
            self._streams[cell.id] = stream
            for ref in stream:
                yield self.ray.get(ref)
            return
        # Ray Client cannot stream a task's results: the task puts them in a queue (an actor on
        # the head node, which outlives any worker node), and a finished task with nothing left in
        # the queue ends the stream
        from ray.util.queue import Empty, Queue

        events = Queue(actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}})
        task = self._serve_to_queue.options(**options).remote(job, events)
        self._streams[cell.id] = task
        try:
            while True:
                try:
                    event = events.get(timeout=1.0)
                except Empty:
                    done, _ = self.ray.wait([task], timeout=0)
                    if done:
                        self.ray.get(task)  # raises what ended it: a lost node, a cancel
                        if events.empty():
                            raise self.ray.exceptions.RayError("the cell's task ended without its last record")
                    continue
                yield event
                if isinstance(event, Ended):
                    return
        finally:
            self.ray.kill(events.actor)

    def stop(self) -> None:
        """Cancel every running cell (its worker stops its server); the cells' records say interrupted."""
        self.stopping = True
        for stream in list(self._streams.values()):
            try:
                self.ray.cancel(stream)
            except Exception as exc:  # noqa: BLE001 - already finished or gone
                log.debug("cancelling a cell: %s", exc)

    def _on_event(self, cell: Cell, event: BaseModel, result: CellResult, backlog, cell_lock) -> CellResult:
        run = self.run
        if isinstance(event, Written):
            self.store.append_sample(cell, event.sample)
            run.events.sample_written(cell, event.sample)
        elif isinstance(event, ToJudge):
            self._fan_out(cell, event, backlog, result, cell_lock)
        elif isinstance(event, (Updated, Ended)):
            with cell_lock:
                # the worker's record, with the backlog as the driver sees it
                pending, peak, evaluated = result.eval_pending, result.eval_backlog_peak, result.evaluated_at
                result = event.result
                result.eval_pending, result.eval_backlog_peak, result.evaluated_at = pending, peak, evaluated
                backlog.result = result
                if isinstance(event, Ended):
                    result.finished_at = utcnow()
                    last = result.placements[-1]
                    self._activity(Activity(kind="cell", cell_id=cell.id, node_id=last.node_id or "", node=last.node,
                                            gpu_ids=last.gpu_ids, started_at=last.started_at,
                                            ended_at=last.ended_at or utcnow(), outcome=last.outcome))
                self.store.write_cell(result)
            if isinstance(event, Ended):
                run.finish_cell(result)
        elif isinstance(event, Started):
            with cell_lock:
                result = result.model_copy(update={"status": "running", "reason": None, "started_at": utcnow(),
                                                   "placements": [*result.placements, event.placement]})
                backlog.result = result
                self.store.write_cell(result)
            gpus = ",".join(map(str, event.placement.gpu_ids)) or "none"
            run.events.note(f"{cell.id}: on node {event.placement.node} ({(event.placement.node_id or '')[:8]}), "
                            f"GPUs {gpus}" + (f" ({event.placement.gpu_name})" if event.placement.gpu_name else ""))
        elif isinstance(event, ActivityRecord):
            self._activity(event.record)
        elif isinstance(event, Prepared):
            run.record_models(event.records)
        elif isinstance(event, Phase):
            run.events.phase_started(cell, event.phase, event.total, event.done)
        elif isinstance(event, ServerLog):
            with open(self.store.server_log(cell), "a", encoding="utf-8") as fh:
                fh.write(event.text)
        return result

    def _fan_out(self, cell: Cell, event: ToJudge, backlog, result: CellResult, cell_lock) -> None:
        run = self.run
        task = next(t for t in run.tasks if t.id == event.task_id)
        from runner.running.cell import EvalBacklog

        key = EvalBacklog.key(event.sample)
        backlog.add(key)
        ref = self._judge.options(num_cpus=1, max_retries=3, resources=self.eval_resources).remote(
            run.matrix.benchmark, run.options.sandbox, run.options.allow_unsandboxed, (str(self.store.root.parent),),
            task, event.sample, run.options.expected, run.benchmark.edition, tuple(run.matrix.compare_editions),
            run.settings.reuse_verdicts, self.store.root.name)
        written = threading.Event()
        with self._lock:
            self._verdicts.append(written)

        def done(f: Future) -> None:
            try:
                judged: Judged = f.result()
                self.store.append_sample(cell, judged.sample)
                run.events.sample_written(cell, judged.sample)
                self._activity(Activity(kind="eval", cell_id=cell.id, task_id=task.id, node_id=judged.node_id,
                                        node=judged.node, started_at=judged.started_at, ended_at=judged.ended_at,
                                        outcome=judged.sample.outcome.value if judged.sample.outcome else None))
            except Exception as exc:  # noqa: BLE001 - the answer is asked for again by a rerun
                log.warning("evaluating %s of %s failed: %s", task.id, cell.id, exc)
                run.events.note(f"{cell.id}: evaluating {task.id} failed ({type(exc).__name__}); a rerun asks again")
            finally:
                with cell_lock:
                    backlog.done(key)
                    self.store.write_cell(backlog.result)
                written.set()

        ref.future().add_done_callback(done)

    def wait_for_verdicts(self) -> None:
        """Every fanned-out evaluation, done and its sample written, before the run closes."""
        with self._lock:
            waiting = list(self._verdicts)
        for written in waiting:
            written.wait()
