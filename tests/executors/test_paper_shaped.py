"""The paper's matrix scaled down, on an 8-GPU node: cells of 1, 2 and 4 GPUs at once, in process and on Ray.

``matrices/paper-shaped.toml``: one small model (Gemma 3 270M, real llama-server on the CPU, one
thread each), a baseline and techniques that repeat its answers (greedy n-gram speculation, the
prompt cache off). The 8 GPUs are
logical (a stand-in only for the CUDA devices that do not exist here): the in-process executor is
told their ids (``--gpus``), Ray's worker node declares them; either hands each cell disjoint ids
and restricts its server to them through CUDA_VISIBLE_DEVICES, exactly as on a GPU node.

Checked from ``activity.jsonl`` and the stores: placements disjoint within the node's 8 GPUs, timed
phases never overlapping another cell's generation on their node (while the cells did overlap),
answers equal to a one-at-a-time run's, and more than half of the technique cells' verdicts
reused from identical answers.
"""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
import re
import time
from pathlib import Path

import pytest

from runner.evaluation.verdicts import judging_counts
from runner.matrix import load_matrix
from runner.measuring.activity import Activity, overlapping_timed, read_activity
from runner.paths import matrices_dir
from runner.running.run import RunOptions, reproduce
from runner.store import RunStore
from tests.conftest import SHARED_CACHE, require
from tests.llama_server import gemma_gguf

pytestmark = pytest.mark.slow
NODE_GPUS = 8


def paper_shaped():
    """The shipped scaled matrix (``matrices/paper-shaped.toml``), its model prepared."""
    gemma_gguf()  # llama-server and the model, or skip / fail here
    return load_matrix(matrices_dir() / "paper-shaped.toml")


MATRIX = load_matrix(matrices_dir() / "paper-shaped.toml")
CELLS = MATRIX.cells
TASKS, LATENCY_TASKS = MATRIX.tasks.limit, MATRIX.settings.latency_tasks


@contextmanager
def environment(**values: str):
    """``os.environ`` with ``values`` set, as it was afterwards (module fixtures run before a test's home is set)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _spans(a: Activity, b: Activity) -> bool:
    return a.started_at < b.ended_at and b.started_at < a.ended_at


def check_placements(records: list[Activity], requested: dict[str, int]) -> None:
    """Every cell on as many GPU ids as it asked for; cells overlapping on a node on disjoint ids within its 8."""
    cells = [a for a in records if a.kind == "cell"]
    assert sorted(a.cell_id for a in cells) == sorted(requested) and all(a.outcome == "done" for a in cells)
    for a in cells:
        assert len(a.gpu_ids) == requested[a.cell_id] and set(a.gpu_ids) <= set(range(NODE_GPUS)), a
    for a, b in itertools.combinations(cells, 2):
        if a.node_id == b.node_id and _spans(a, b):
            assert not set(a.gpu_ids) & set(b.gpu_ids), (a, b)


def check_timing(run_dir: Path) -> None:
    """Cells generated at once, yet no timed phase or sample shared its node with another cell's generation."""
    records = read_activity(run_dir)
    phases = [a for a in records if a.kind == "phase"]
    assert {a.phase for a in phases} >= {"accuracy", "latency", "sweep"}
    accuracy = [a for a in phases if a.phase == "accuracy"]
    assert any(_spans(a, b) for a, b in itertools.combinations(accuracy, 2)), "no two cells generated at once"
    for timed in (a for a in phases if a.timed):
        for other in phases:
            if other.cell_id != timed.cell_id and other.node_id == timed.node_id:
                assert not _spans(timed, other), (timed, other)
    samples = [s for cell in RunStore(run_dir).read_manifest().cells for s in RunStore(run_dir).samples(cell)]
    isolation = overlapping_timed(records, samples)
    assert isolation.parallel and isolation.overlaps == [] and isolation.unplaced == 0
    assert isolation.timed_samples == len(CELLS) * LATENCY_TASKS * 2  # cold and warm


def answers(run_dir: Path) -> dict[tuple[str, str, str], str]:
    store = RunStore(run_dir)
    return {(cell.id, s.phase_key, s.task_id): s.raw_text for cell in store.read_manifest().cells
            for s in store.samples(cell) if s.raw_text is not None and s.phase in ("accuracy", "latency")}


def reused_share(run_dir: Path) -> float:
    store = RunStore(run_dir)
    verdicts = [s for cell in store.read_manifest().cells if cell.techniques.keys() - {"parallel"}
                for s in store.latest_samples(cell) if s.phase == "accuracy" and s.outcome is not None]
    assert len(verdicts) == TASKS * (len(CELLS) - 1)
    return sum(s.verdict_from is not None for s in verdicts) / len(verdicts)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> tuple[Path, float]:
    """The same matrix one cell at a time, the reference for answers and for wall time."""
    folder = tmp_path_factory.mktemp("sequential")
    matrix = paper_shaped()
    # a module fixture: no test's home is set yet
    with environment(RUNNER_HOME=str(folder / "home"), RUNNER_CACHE=str(SHARED_CACHE)):
        started = time.monotonic()
        outcome = reproduce(matrix, RunOptions(runs_dir=folder / "runs", parallel_cells=1,
                                               gpus=list(range(NODE_GPUS))))
    assert [r.status for r in outcome.results] == ["done"] * len(CELLS), [r.reason for r in outcome.results]
    return outcome.run_dir, time.monotonic() - started


def test_in_process_on_eight_logical_gpus_places_disjointly_times_alone_and_answers_as_one_at_a_time(
        sequential, tmp_path):
    seq_dir, seq_s = sequential
    matrix = paper_shaped()
    started = time.monotonic()
    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs", gpus=list(range(NODE_GPUS))))
    wall = time.monotonic() - started
    print(f"paper-shaped, in process: parallel {wall:.0f} s against sequential {seq_s:.0f} s "
          f"(2-core host: the servers share two cores)")
    assert [r.status for r in outcome.results] == ["done"] * len(CELLS), [r.reason for r in outcome.results]
    check_placements(read_activity(outcome.run_dir), {c.id: matrix.request(c).gpus for c in matrix.cells})
    check_timing(outcome.run_dir)
    assert answers(outcome.run_dir) == answers(seq_dir)
    assert reused_share(outcome.run_dir) > 0.5
    # the sequential run kept the same records, with nothing at once, each server given only its cell's
    # GPUs of the eight (one at a time the slot holds them all)
    assert not overlapping_timed(read_activity(seq_dir), []).parallel
    check_placements(read_activity(seq_dir), {c.id: matrix.request(c).gpus for c in matrix.cells})
    # the report says the timed figures were isolated, and that cells did run at once
    from runner.report import render

    html = render([outcome.run_dir], tmp_path / "report").html.read_text()
    row = re.search(r'<table id="timing-table">.*?</table>', html, re.S).group(0)
    assert "several on one node" in row and f"<td>{len(CELLS) * LATENCY_TASKS * 2}</td>" in row
    assert 'class="timing-overlaps">0' in row and "badge bad" not in row
    counts = judging_counts([s for c in RunStore(outcome.run_dir).read_manifest().cells
                             for s in RunStore(outcome.run_dir).latest_samples(c)])
    print(f"paper-shaped, in process: {counts.judged} answers judged, {counts.reused} verdicts reused")


@pytest.fixture(scope="module")
def eight_gpu_node(tmp_path_factory):
    """A local Ray cluster: a head without GPUs or task CPUs, one worker node with 8 logical GPUs."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        require(False, "Ray (pip install -e '.[ray]')")
    gemma_gguf()
    # the node's processes inherit this environment: the shared cache, a home of their own
    with environment(RUNNER_HOME=str(tmp_path_factory.mktemp("ray-node-home")), RUNNER_CACHE=str(SHARED_CACHE)):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0,
                                                                "include_dashboard": False})
        worker = cluster.add_node(num_cpus=2, num_gpus=NODE_GPUS)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
    try:
        yield worker
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_ray_on_one_eight_gpu_node_places_disjointly_times_alone_and_answers_as_one_at_a_time(
        sequential, eight_gpu_node, tmp_path):
    seq_dir, seq_s = sequential
    matrix = paper_shaped()
    started = time.monotonic()
    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs", executor="ray", address="auto"))
    wall = time.monotonic() - started
    print(f"paper-shaped, on Ray: {wall:.0f} s against sequential in process {seq_s:.0f} s")
    assert [r.status for r in outcome.results] == ["done"] * len(CELLS), [r.reason for r in outcome.results]
    records = read_activity(outcome.run_dir)
    assert {a.node_id for a in records if a.kind == "cell"} == {eight_gpu_node.node_id}
    check_placements(records, {c.id: matrix.request(c).gpus for c in matrix.cells})
    check_timing(outcome.run_dir)
    assert answers(outcome.run_dir) == answers(seq_dir)
    assert reused_share(outcome.run_dir) > 0.5


def test_without_gpus_parallel_cells_runs_that_many_cpu_cells_at_once_timed_alone(tmp_path):
    """A host without GPUs (no ``--gpus``): ``--parallel-cells 2`` runs two CPU cells at once, each
    with its own server, and still times each one alone."""
    matrix = paper_shaped()
    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs", limit=2, parallel_cells=2, gpus=[]))
    assert [r.status for r in outcome.results] == ["done"] * len(CELLS), [r.reason for r in outcome.results]
    records = read_activity(outcome.run_dir)
    cells = [a for a in records if a.kind == "cell"]
    assert all(a.gpu_ids == [] for a in cells)
    for a in cells:  # never more than two at once
        moment = a.started_at
        assert sum(b.started_at <= moment < b.ended_at for b in cells) <= 2
    servers = {r.placements[-1].server for r in outcome.results}
    assert len(servers) == len(CELLS)  # each its own server
    check_timing(outcome.run_dir)
