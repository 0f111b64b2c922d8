"""A matrix over a real Ray cluster: a head without GPUs and two worker nodes of 2 logical GPUs each.

The cells are real llama-server cells (Gemma 3 270M on the CPU, one thread each); the GPUs are Ray's
logical GPUs (a stand-in only for the CUDA devices that do not exist here): Ray accounts for them,
assigns their ids and sets CUDA_VISIBLE_DEVICES exactly as on a GPU node.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.errors import UserError
from runner.matrix import load_matrix
from runner.records import Outcome
from runner.running.run import RunOptions, reproduce
from runner.store import RunStore
from tests.conftest import SHARED_CACHE, require
from tests.llama_server import gemma_gguf

pytestmark = pytest.mark.slow
GPU_TYPE = "logical"  # the GPU-type resource the worker nodes declare (gpu:logical)
MODEL_KEY = "gemma3-h11ray"  # the served name: this module's servers are recognisable


def write_matrix(folder: Path, name: str, cells: list[tuple[str, int, dict]], *, limit: int = 3) -> Path:
    """A small CPU llama.cpp matrix whose cells ask for ``gpus`` GPUs of type ``logical`` each."""
    groups = "\n".join(f"""
[[cells]]
model = "{MODEL_KEY}"
runtime = "llamacpp"
quantization = "q4_k_m"
label = "{label}"
gpus = {gpus}
techniques = {{ {", ".join(f'{k} = "{v}"' for k, v in {"parallel": "1", **techniques}.items())} }}
""" for label, gpus, techniques in cells)
    path = folder / f"{name}.toml"
    path.write_text(f"""
name = "{name}"
benchmark = "starter"
gpu_type = "{GPU_TYPE}"
[tasks]
languages = ["python"]
programs = ["lu_solver", "shortest_paths"]
limit = {limit}
[settings]
max_tokens = 24
concurrency = 1
latency_tasks = 1
warmup_requests = 0
sweep = []
sweep_requests = 0
request_timeout_s = 120
health_timeout_s = 300
threads = 1
[models.{MODEL_KEY}]
name = "Gemma 3 270M"
chat = false
prompt_styles = ["prefix"]
[models.{MODEL_KEY}.quantizations.q4_k_m]
kind = "path"
path = "{gemma_gguf()}"
{groups}
""")
    return path


#: 1 or 2 GPUs each: on two 2-GPU nodes at most three run at once
SMALL = [("one-a", 1, {}), ("two-a", 2, {"kv_cache": "q8_0"}), ("one-b", 1, {"spec": "ngram"}),
         ("two-b", 2, {})]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster: a head with no GPUs and no CPUs for tasks, two 2-GPU worker nodes."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        require(False, "Ray (pip install -e '.[ray]')")
    gemma_gguf()  # llama-server and the model, or skip / fail here
    # the nodes' processes inherit this environment: the shared cache, a home of their own
    saved = {k: os.environ.get(k) for k in ("RUNNER_HOME", "RUNNER_CACHE")}
    os.environ["RUNNER_HOME"] = str(tmp_path_factory.mktemp("ray-nodes-home"))
    os.environ["RUNNER_CACHE"] = str(SHARED_CACHE)
    # small num_cpus: the machine is shared; one evaluation at a time per worker node
    from runner.backends.base import free_port

    client_port = free_port()  # Ray Client (ray://) on the head
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False,
                                                            "ray_client_server_port": client_port})
    workers = [cluster.add_node(num_cpus=1, num_gpus=2, resources={f"gpu:{GPU_TYPE}": 2}) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        yield cluster, workers, client_port
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def activity(run_dir: Path) -> list[dict]:
    lines = (run_dir / "activity.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def answers(store: RunStore, cell) -> dict[tuple[str, str], str]:
    samples = store.samples(cell)
    keys = [(s.phase_key, s.task_id) for s in samples]
    assert len(keys) == len(set(keys)), f"{cell.id}: duplicate samples {sorted(keys)}"
    return {(s.phase_key, s.task_id): s.raw_text for s in samples}


def test_cells_get_disjoint_gpus_within_capacity_answer_as_locally_and_are_judged_on_the_workers(cluster, tmp_path):
    _, workers, _ = cluster
    worker_ids = {w.node_id for w in workers}
    matrix = load_matrix(write_matrix(tmp_path, "small", SMALL))
    started = time.monotonic()
    on_ray = reproduce(matrix, RunOptions(runs_dir=tmp_path / "ray", executor="ray", address="auto"))
    ray_s = time.monotonic() - started
    started = time.monotonic()
    local = reproduce(matrix, RunOptions(runs_dir=tmp_path / "local"))
    local_s = time.monotonic() - started
    print(f"wall time: Ray {ray_s:.0f}s, in process {local_s:.0f}s (2-core host shared with others)")
    assert [r.status for r in on_ray.results] == ["done"] * len(SMALL), [r.reason for r in on_ray.results]
    assert [r.status for r in local.results] == ["done"] * len(SMALL)
    assert {r.placements[-1].executor for r in local.results} == {"inprocess"}

    # where each cell ran: one placement each, on a worker, with as many GPU ids as it asked for
    requests = {c.id: matrix.request(c).gpus for c in matrix.cells}
    for result in on_ray.results:
        (placement,) = result.placements
        assert placement.executor == "ray" and placement.node_id in worker_ids
        assert len(placement.gpu_ids) == requests[result.cell.id] and set(placement.gpu_ids) <= {0, 1}
        assert placement.gpu_name == GPU_TYPE and placement.outcome == "done" and placement.server
        assert result.eval_pending == 0 and result.eval_backlog_peak >= 1 and result.evaluated_at is not None

    # no node over its 2 GPUs, and cells that overlap on a node hold disjoint ids
    log = activity(on_ray.run_dir)
    cells = [a for a in log if a["kind"] == "cell"]
    assert len(cells) == len(SMALL) and all(a["outcome"] == "done" for a in cells)
    for a, b in itertools.combinations(cells, 2):
        overlap = when(a["started_at"]) < when(b["ended_at"]) and when(b["started_at"]) < when(a["ended_at"])
        if overlap and a["node_id"] == b["node_id"]:
            assert not set(a["gpu_ids"]) & set(b["gpu_ids"]), (a, b)
    for node in worker_ids:
        on_node = [a for a in cells if a["node_id"] == node]
        for moment in (when(a["started_at"]) + 0.001 for a in on_node):
            held = sum(len(a["gpu_ids"]) for a in on_node if when(a["started_at"]) <= moment < when(a["ended_at"]))
            assert held <= 2
    assert len({a["node_id"] for a in cells}) == 2  # both workers served cells

    # every answer is in the head's store, once, equal (greedy) to the local run's
    ray_store, local_store = RunStore(on_ray.run_dir), RunStore(local.run_dir)
    for cell in matrix.cells:
        there, here = answers(ray_store, cell), answers(local_store, cell)
        assert len(there) == 3 + 2  # accuracy tasks + the latency task, cold and warm
        assert there == here, cell.id
        judged = [s.outcome for s in ray_store.samples(cell) if s.phase == "accuracy"]
        assert len(judged) == 3 and None not in judged and Outcome.error not in judged

    # evaluation ran as CPU tasks on the worker nodes, while cells were still generating
    evals = [a for a in log if a["kind"] == "eval"]
    assert len(evals) == 3 * len(SMALL) and {a["node_id"] for a in evals} <= worker_ids
    assert any(when(c["started_at"]) < when(e["started_at"]) and when(e["ended_at"]) < when(c["ended_at"])
               for e in evals for c in cells), "no evaluation overlapped generation"


def test_a_cell_needing_more_gpus_than_any_node_has_is_refused_at_plan_time(cluster, tmp_path):
    matrix = load_matrix(write_matrix(tmp_path, "too-big", [("one", 1, {}), ("three", 3, {})]))
    with pytest.raises(UserError) as info:
        reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs", executor="ray", address="auto"))
    message = str(info.value)
    assert "1 of 2 cells cannot run on the Ray cluster" in message
    assert f"{MODEL_KEY}/llamacpp/q4_k_m/three: needs 3 GPUs of type {GPU_TYPE} on one node and the largest" in message
    assert "/one:" not in message
    assert not list((tmp_path / "runs" / "too-big").glob("cells/*/samples.jsonl"))  # nothing started
    # the same through the command line: a user error (exit 2), the plan in the message
    from runner.cli import main

    cli = CliRunner().invoke(main, ["reproduce", str(tmp_path / "too-big.toml"), "--ray", "auto",
                                    "--runs-dir", str(tmp_path / "cli-runs")])
    assert cli.exit_code == 2 and "three: needs 3 GPUs" in cli.output and "Traceback" not in cli.output


def test_doctor_shows_the_clusters_nodes_gpus_and_which_cells_fit(cluster, tmp_path):
    from runner.cli import main

    path = write_matrix(tmp_path, "too-big", [("one", 1, {}), ("three", 3, {})])
    result = CliRunner().invoke(main, ["doctor", str(path), "--ray", "auto", "--json"])
    assert result.exit_code == 1, result.output  # one cell cannot run: as reproduce --plan (docs/reproducing.md)
    report = json.loads(result.output)
    nodes = sorted(report["nodes"], key=lambda n: n["gpus"])
    assert [(n["gpus"], n["cpus"], n["head"]) for n in nodes] == [(0, 0, True), (2, 1, False), (2, 1, False)]
    assert nodes[1]["gpu_types"] == {GPU_TYPE: 2}
    assert [(c["cell"]["label"], c["runnable"]) for c in report["cells"]] == [("one", True), ("three", False)]
    table = CliRunner().invoke(main, ["doctor", str(path), "--ray", "auto", "--skip-unrunnable"])
    assert table.exit_code == 0 and f"gpu:{GPU_TYPE} x2" in table.output
    assert "1 of 2 cells can run on the Ray cluster" in table.output


def test_reproduce_through_ray_client_from_another_process(cluster, tmp_path):
    """``--ray ray://host:port``: Ray Client streams no generator, the cell's events come through a queue."""
    _, workers, client_port = cluster
    path = write_matrix(tmp_path, "client", [("one", 1, {})], limit=2)
    done = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", str(path), "--ray",
                           f"ray://127.0.0.1:{client_port}", "--runs-dir", str(tmp_path / "runs")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    store = RunStore(tmp_path / "runs" / "client")
    (cell,) = store.read_manifest().cells
    (placement,) = store.read_cell(cell).placements
    assert placement.node_id in {w.node_id for w in workers} and len(placement.gpu_ids) == 1
    assert sorted(s.phase_key for s in store.samples(cell)) == ["accuracy", "accuracy", "latency/cold", "latency/warm"]
    assert [a["kind"] for a in activity(store.root)].count("eval") == 2


def test_a_worker_node_lost_mid_cell_is_rescheduled_on_the_other_and_loses_nothing(cluster, tmp_path):
    """Last in this module: it takes one worker node away for good."""
    ray_cluster, workers, _ = cluster
    matrix = load_matrix(write_matrix(tmp_path, "lost", [("two", 2, {})], limit=6))
    (cell,) = matrix.cells
    store = RunStore(tmp_path / "runs" / "lost")
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(run=reproduce(
        matrix, RunOptions(runs_dir=tmp_path / "runs", executor="ray", address="auto"))))
    runner.start()
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and runner.is_alive():
        result = store.read_cell(cell) if store.root.exists() else None
        if result and result.placements and store.samples_path(cell).is_file() and store.samples(cell):
            node_id = result.placements[-1].node_id
            victim = next(w for w in workers if w.node_id == node_id)
        time.sleep(0.2)
    assert victim is not None, "the cell never produced a sample"
    server_pid = store.read_cell(cell).placements[-1].server
    ray_cluster.remove_node(victim, allow_graceful=False)
    try:
        runner.join(timeout=600)
        assert not runner.is_alive()
    finally:
        # the lost node's server outlives its killed worker here (one machine): stop it
        if server_pid and Path(f"/proc/{server_pid}/cmdline").is_file() \
                and MODEL_KEY in Path(f"/proc/{server_pid}/cmdline").read_text(errors="replace"):
            os.kill(int(server_pid), signal.SIGKILL)
    (result,) = outcome["run"].results
    assert result.status == "done", result.reason
    first, second = result.placements
    assert first.node_id == victim.node_id and first.outcome == "lost"
    assert second.node_id != victim.node_id and second.outcome == "done" and len(second.gpu_ids) == 2
    # nothing lost, nothing twice: each task answered once, accuracy judged
    samples = store.samples(cell)
    keys = [(s.phase_key, s.task_id) for s in samples]
    assert len(keys) == len(set(keys)) == 6 + 2  # one timed task, cold and warm
    judged = [s.outcome for s in samples if s.phase == "accuracy"]
    assert len(judged) == 6 and None not in judged and Outcome.error not in judged
