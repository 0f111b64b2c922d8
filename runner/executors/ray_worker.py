"""The Ray executor's worker side (``runner.executors.ray_cluster`` is the driver's): the records that pass between
driver and workers, a cell served and measured on a worker node with every event streamed back, and answers
judged on any node's CPUs. Ray ships these functions to the workers by reference: every node imports this module.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import shutil
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, Field

from runner.errors import UserError
from runner.matrix import Matrix
from runner.measuring.activity import Activity
from runner.records import Cell, Sample, Task, utcnow
from runner.store import CellResult, ModelRecord, Placement

log = logging.getLogger(__name__)


# -- records between the driver and the workers ---------------------------------------------------
class NodeInfo(BaseModel):
    """One live node of the cluster, as Ray accounts for it."""

    node_id: str
    host: str  # the node's IP address as Ray knows it
    cpus: float = 0
    gpus: float = 0
    gpu_types: dict[str, float] = Field(default_factory=dict)  # "H100" -> 8 (from resources gpu:<type>)
    head: bool = False


class CellJob(BaseModel):
    """Everything a worker needs to run one cell: the matrix, the tasks and what the driver's store lacks."""

    matrix: Matrix
    cell: Cell
    run_name: str
    backend: str
    tasks: list[Task]
    latency_tasks: list[Task]
    accuracy: list[str]  # task ids still to answer
    latency: list[str]
    sweep: list[str]  # the sweep points still missing (runner.store.load_label), and the rate search's entry
    done: list[tuple[str, str]] = Field(default_factory=list)  # the driver's store's done keys
    result: CellResult  # the record as the driver holds it (sweep points measured so far)
    gpu_type: str | None = None


class Started(BaseModel):
    placement: Placement


class Prepared(BaseModel):
    records: list[ModelRecord]


class Written(BaseModel):
    sample: Sample


class ToJudge(BaseModel):
    task_id: str
    sample: Sample


class Updated(BaseModel):
    result: CellResult


class ServerLog(BaseModel):
    text: str


class Ended(BaseModel):
    result: CellResult


class Phase(BaseModel):
    phase: str
    total: int
    done: int


class ActivityRecord(BaseModel):
    record: Activity


class Judged(BaseModel):
    sample: Sample
    node_id: str
    node: str
    started_at: datetime
    ended_at: datetime


# -- on a worker node -----------------------------------------------------------------------------
class _QueueSink:
    """A ``CellSink`` that hands everything to the generator streaming it to the driver."""

    def __init__(self, events: queue.Queue, log_path: Path, done: list[tuple[str, str]]):
        self.events = events
        self.log_path = log_path
        self._done = set(done)

    def write(self, sample: Sample) -> None:
        from runner.records import Outcome

        if sample.outcome != Outcome.error:
            # the key RunStore.done_keys uses: the phase with its cache state
            self._done.add((sample.phase_key, sample.task_id))
        self.events.put(Written(sample=sample))

    def done_keys(self) -> set[tuple[str, str]]:
        return set(self._done)

    def judge(self, task: Task, sample: Sample) -> None:
        self.events.put(ToJudge(task_id=task.id, sample=sample))

    def update(self, result: CellResult) -> None:
        self.events.put(Updated(result=result.model_copy(deep=True)))

    def activity(self, record: Activity) -> None:
        self.events.put(ActivityRecord(record=record))


def _queue_events(events: queue.Queue):
    """The run events a worker forwards to the driver's progress display (phases; samples travel anyway)."""
    from runner.running.events import RunEvents

    class QueueEvents(RunEvents):
        def phase_started(self, cell: Cell, phase: str, total: int, done: int) -> None:
            events.put(Phase(phase=phase, total=total, done=done))

    return QueueEvents()


def _node_gpu_type(ray, node_id: str) -> str | None:
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            types = [k.split(":", 1)[1] for k in (node.get("Resources") or {}) if k.startswith("gpu:")]
            return types[0] if len(types) == 1 else None
    return None


def serve_cell(job: CellJob) -> Iterator[BaseModel]:
    """The Ray task of one cell (a generator): serve it on this node with the GPU ids Ray assigned,
    yielding every sample and record update as it is produced."""
    import ray

    context = ray.get_runtime_context()
    gpu_ids = [int(g) for g in context.get_accelerator_ids().get("GPU", [])]
    node_id = context.get_node_id()
    from runner.running.cell import this_node

    placement = this_node(gpu_ids, "ray", node_id=node_id, gpu_type=job.gpu_type or _node_gpu_type(ray, node_id))
    yield Started(placement=placement)
    events: queue.Queue = queue.Queue()
    running: dict[str, Any] = {}  # the backend and server, once started: a cancelled task stops the server
    worker = threading.Thread(target=_run_cell_here, args=(job, gpu_ids, placement, events, running), daemon=True,
                              name=f"cell-{job.cell.slug}")
    worker.start()
    try:
        while True:
            event = events.get()
            yield event
            if isinstance(event, Ended):
                break
    except BaseException:  # cancelled (Ctrl-C on the driver) or closed: the cell's requests fail, it ends
        if "server" in running:
            running["backend"].stop(running["server"])
        raise
    worker.join()


def serve_cell_to_queue(job: CellJob, events) -> None:
    """``serve_cell`` for a driver connected through Ray Client: every event into the ``events`` queue."""
    for event in serve_cell(job):
        events.put(event)


def _run_cell_here(job: CellJob, gpu_ids: list[int], placement: Placement, events: queue.Queue,
                   running: dict[str, Any]) -> None:
    from runner.backends import get_backend
    from runner.running.cell import CellContext, CellFailure, CellRun
    from runner.runtimes import get_runtime
    from runner.serving.model_files import hash_in_background
    from runner.serving.models import prepare

    cell, settings = job.cell, job.matrix.settings
    result = job.result.model_copy(update={"status": "running", "reason": None, "backend": job.backend,
                                           "started_at": utcnow(), "finished_at": None,
                                           "placements": [*job.result.placements, placement]}, deep=True)
    placement = result.placements[-1]
    scratch = Path(tempfile.mkdtemp(prefix="runner-cell-"))
    sink = _QueueSink(events, scratch / "server.log", job.done)
    backend = get_backend(job.backend)
    server = None
    try:
        prepared = prepare(job.matrix, cell)
        hashing = hash_in_background(prepared.records)  # while the server loads
        runtime = get_runtime(cell.runtime)
        spec = runtime.server_spec(cell, prepared.files, threads=settings.threads, gpus=len(gpu_ids))
        server = backend.start(spec, sink.log_path, health_timeout=settings.health_timeout_s, gpus=gpu_ids,
                               run=job.run_name, cell=cell.slug)
        running.update(backend=backend, server=server)
        events.put(Prepared(records=hashing.result()))
        placement.server = server.ident
        result.load_seconds, result.image_digest = server.load_seconds, server.image_digest
        sink.update(result)
        by_id = {t.id: t for t in job.tasks}
        accuracy = [by_id[i] for i in job.accuracy]
        latency = [t for t in job.latency_tasks if t.id in set(job.latency)]
        context = CellContext(matrix=job.matrix, tasks=job.tasks, latency_tasks=job.latency_tasks,
                              events=_queue_events(events))
        asyncio.run(CellRun(context, cell, runtime, backend, server, prepared.files, sink, result)
                    .run(accuracy, latency, job.sweep))
        result.status = "done"
        result.generation_finished_at = utcnow()
    except (CellFailure, UserError) as exc:
        result.status, result.reason = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the driver as the cell's failure
        log.exception("cell %s failed", cell.id)
        result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"[:1000]
    finally:
        if server is not None:
            backend.stop(server)
        placement.ended_at = utcnow()
        placement.outcome = result.status
        try:
            events.put(ServerLog(text=sink.log_path.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            pass
        shutil.rmtree(scratch, ignore_errors=True)
        events.put(Ended(result=result))


_EVALUATORS: dict[tuple, Any] = {}
_EVALUATORS_LOCK = threading.Lock()


def judge_remote(benchmark: str, sandbox: str, allow_unsandboxed: bool, hide: tuple[str, ...], task: Task,
                 sample: Sample, expected: str = "auto", edition: str | None = None,
                 compare_editions: tuple[str, ...] = (), reuse_verdicts: bool = True,
                 run_name: str | None = None) -> Judged:
    """The Ray task judging one answer on any node with CPUs (its benchmark and sandbox prepared there);
    ``hide``: folders the sandbox hides besides the runner's own (the driver's runs folder, where it exists);
    ``edition`` and ``compare_editions``: the run's SimCoPilot editions, each judged by its own code here;
    ``reuse_verdicts``: the run's setting for the node's verdict cache (under the node's own home).

    Each node checks its own environment: a program's reference is judged on the node before the
    first answer to it (cached there per environment), so that a node lacking a data file or with
    drifted floats says so for itself.
    """
    import ray

    from runner.running.cell import judge_sample
    from runner.running.score import EditionJudge

    started = utcnow()
    settings = (sandbox, allow_unsandboxed, hide, expected)
    with _EVALUATORS_LOCK:  # one evaluator per edition and worker process, reused by the tasks it runs
        bench, evaluator = _node_evaluator(benchmark, edition, task, settings)
        node_verdict_cache(bench, evaluator, enabled=reuse_verdicts, run=run_name)
        judges = []
        for other in compare_editions:
            other_bench, other_evaluator = _node_evaluator(benchmark, other, task, settings)
            judges.append(EditionJudge.over(other_bench, other_evaluator))
    judged = judge_sample(evaluator, task, sample, judges)
    import socket

    return Judged(sample=judged, node_id=ray.get_runtime_context().get_node_id(), node=socket.gethostname(),
                   started_at=started, ended_at=utcnow())


def node_verdict_cache(bench, evaluator, *, enabled: bool, run: str | None):
    """The verdict cache this node's ``evaluator`` judges through, under the node's own home, as the
    run asks (``settings.reuse_verdicts``); kept while the run's asks stay the same."""
    from runner.evaluation import verdicts

    cache = getattr(evaluator, "verdict_cache", None)
    if cache is None or cache.enabled != enabled or cache.run != run:
        cache = verdicts.attach(evaluator, benchmark=bench.name, commit=evaluator.benchmark_commit,
                                edition=bench.edition, enabled=enabled, run=run)
    return cache


def _node_evaluator(benchmark: str, edition: str | None, task: Task, settings: tuple) -> tuple[Any, Any]:
    """This worker's benchmark and evaluator for ``edition``, ``task``'s program checked (lock held)."""
    from runner.running.cell import evaluator_for

    sandbox, allow_unsandboxed, hide, expected = settings
    key = (benchmark, edition, *settings)
    found = _EVALUATORS.get(key)
    if found is None:
        from runner.benchmarks import load_benchmark
        from runner.evaluation.docker_sandbox import choose_sandbox

        bench = load_benchmark(benchmark, edition)
        chosen = choose_sandbox(sandbox, allow_unsandboxed=allow_unsandboxed, hide=tuple(map(Path, hide)))
        evaluator = evaluator_for(bench, chosen)
        evaluator.checked_programs, evaluator.benchmark_commit = set(), _commit(bench)
        found = _EVALUATORS[key] = (bench, evaluator)
    bench, evaluator = found
    there = next((t for t in bench.tasks if t.id == task.id), None)
    if there is not None and there.available and there.program not in evaluator.checked_programs:
        from runner.evaluation.environment import check_environment

        check_environment(evaluator, [there], benchmark=benchmark, commit=evaluator.benchmark_commit,
                          expected=expected, workers=1)
        evaluator.checked_programs.add(there.program)
    return found


def _commit(bench) -> str:
    from runner.benchmarks import benchmark_commit

    return benchmark_commit(bench)
