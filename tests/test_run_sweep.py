"""The load sweep on a real llama-server: every point's answers are real tasks, judged like the
accuracy phase's (identical answers reuse its verdicts), and a run stopped mid-sweep resumes only the
points it lacks, judging the answers it kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from runner.matrix import load_matrix
from runner.records import Outcome
from runner.running.events import RunEvents
from runner.running.run import RunOptions, reproduce
from runner.store import RunStore
from tests.llama_server import gemma_gguf, llama_servers_serving

pytestmark = pytest.mark.slow
MODEL_KEY = "gemma3-sweeptest"  # the served name: lets a /proc scan find this test's servers


def write_matrix(folder: Path, *, sweep: str = "[1, 2]", search: int = 0, slo: str = "") -> Path:
    path = folder / "sweep.toml"
    path.write_text(f"""
name = "sweep"
benchmark = "starter"
[tasks]
languages = ["python"]
programs = ["lu_solver", "shortest_paths"]
limit = 4
[settings]
max_tokens = 24
concurrency = 2
latency_tasks = 0
warmup_requests = 0
sweep = {sweep}
sweep_rates = [4.0]
sweep_requests = 3
find_max_rate = {search}
request_timeout_s = 120
health_timeout_s = 300
threads = 2           # one server at a time: both cores (1 took 1.6x as long on the 2-core CI host)
{slo}
[models.{MODEL_KEY}]
name = "Gemma 3 270M"
chat = false
prompt_styles = ["prefix"]
[models.{MODEL_KEY}.quantizations.q4_k_m]
kind = "path"
path = "{gemma_gguf()}"
[[cells]]
model = "{MODEL_KEY}"
runtime = "llamacpp"
quantization = "q4_k_m"
techniques = {{ parallel = 2 }}
label = "baseline"
""")
    return path


def servers_of_this_test() -> list[int]:
    """Pids of live llama-server processes serving this test's model."""
    return llama_servers_serving(MODEL_KEY)


def test_every_sweep_point_asks_the_same_tasks_and_judges_them_reusing_the_accuracy_verdicts(tmp_path):
    matrix = load_matrix(write_matrix(tmp_path))
    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    (result,) = outcome.results
    assert result.status == "done", result.reason
    assert [p.label for p in result.sweep] == ["c1", "c2", "r4"]
    rate = result.sweep[2]
    assert rate.rate == 4.0 and rate.concurrency is None and rate.tasks == 3 and rate.requests_per_s > 0
    latest = RunStore(outcome.run_dir).latest_samples(result.cell)
    accuracy = {s.task_id: s for s in latest if s.phase == "accuracy"}
    by_point: dict[str, list] = {}
    for s in latest:
        if s.phase == "sweep":
            by_point.setdefault(s.load, []).append(s)
    assert sorted(by_point) == ["c1", "c2", "r4"]
    asked = {load: sorted(s.task_id for s in samples) for load, samples in by_point.items()}
    assert len({tuple(ids) for ids in asked.values()}) == 1 and len(asked["c1"]) == 3  # the same sample
    assert set(asked["c1"]) <= set(accuracy)  # a subset of the cell's tasks: each pairs with its answer
    sweep = [s for samples in by_point.values() for s in samples]
    assert all(s.outcome is not None and s.outcome != Outcome.error for s in sweep)  # every answer judged
    assert all(s.prompt_sha256 == accuracy[s.task_id].prompt_sha256 for s in sweep)
    # an answer the accuracy phase already judged takes that verdict from the verdict cache
    same = [s for s in sweep if s.raw_text == accuracy[s.task_id].raw_text]
    assert same, "greedy answers of a 270M model at 1-2 in flight should repeat the accuracy answer"
    assert all(s.verdict_from is not None and s.outcome == accuracy[s.task_id].outcome for s in same)


def test_a_run_stopped_mid_sweep_resumes_only_the_missing_points_and_judges_the_answers_it_kept(tmp_path):
    matrix = load_matrix(write_matrix(tmp_path))
    killed: list[int] = []

    class KillAfterFirstPoint(RunEvents):
        def sweep_measured(self, cell, point):
            if not killed:
                (pid,) = servers_of_this_test()
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"), KillAfterFirstPoint())
    (result,) = outcome.results
    assert killed and result.status == "failed" and "server died" in result.reason
    store = RunStore(outcome.run_dir)
    (first,) = store.read_cell(result.cell).sweep
    kept = [s for s in store.latest_samples(result.cell) if s.phase == "sweep" and s.load == "c1"]
    assert len(kept) == 3 and all(s.outcome is None for s in kept)  # kept, not judged: the cell stopped first
    accuracy_lines = [s for s in store.samples(result.cell) if s.phase == "accuracy"]

    again = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    (result,) = again.results
    assert result.status == "done", result.reason
    assert [p.label for p in result.sweep] == ["c1", "c2", "r4"]
    assert result.sweep[0] == first  # the measured point is not measured again
    latest = store.latest_samples(result.cell)
    c1 = [s for s in latest if s.phase == "sweep" and s.load == "c1"]
    assert sorted(s.task_id for s in c1) == sorted(s.task_id for s in kept)
    assert all(s.outcome is not None for s in c1)  # judged on resume
    assert [s for s in store.samples(result.cell) if s.phase == "accuracy"] == accuracy_lines  # nothing re-asked
    assert not servers_of_this_test()


def test_the_rate_search_halves_a_rate_outside_the_slo_and_a_run_stopped_mid_search_resumes_it(tmp_path):
    # an SLO no request meets (each answer within 1 ms): 4 req/s is outside it, and so is every probe,
    # so each probe halves the bracket's upper end: 2, then 1 req/s. The server dies after the first probe.
    matrix = load_matrix(write_matrix(tmp_path, sweep="[]", search=2, slo="[slo]\ne2e_s = 0.001"))
    killed: list[int] = []

    class KillAfterFirstProbe(RunEvents):
        def sweep_measured(self, cell, point):
            if point.probe and not killed:
                (pid,) = servers_of_this_test()
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    stopped = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"), KillAfterFirstProbe())
    (result,) = stopped.results
    assert killed and result.status == "failed"
    assert [(p.label, p.probe, p.attainment) for p in result.sweep] == [("r4", False, 0.0), ("r2", True, 0.0)]

    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    (result,) = outcome.results
    assert result.status == "done", result.reason
    assert [(p.label, p.probe, p.attainment) for p in result.sweep] == [
        ("r4", False, 0.0), ("r2", True, 0.0), ("r1", True, 0.0)]  # the search went on where it stopped
    store = RunStore(outcome.run_dir)
    probed = [s for s in store.latest_samples(result.cell) if s.phase == "sweep" and s.load in ("r2", "r1")]
    assert len(probed) == 6 and all(s.outcome not in (None, Outcome.error) for s in probed)  # judged
    lines = len(store.samples(result.cell))

    again = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    (result,) = again.results
    assert [p.label for p in result.sweep] == ["r4", "r2", "r1"]  # the search is done: nothing re-measured
    assert len(store.samples(result.cell)) == lines
    assert not servers_of_this_test()


def test_the_demo_sweeps_only_its_q4_k_m_rung_on_one_task_of_each_program_and_mode():
    from runner.benchmarks import load_benchmark
    from runner.planning.selection import select_tasks, sweep_loads, sweep_tasks
    from runner.paths import matrices_dir

    matrix = load_matrix(matrices_dir() / "demo.toml")
    benchmark = load_benchmark(matrix.benchmark)
    tasks = select_tasks(benchmark, matrix.tasks)
    swept = {c.id: sweep_tasks(matrix, benchmark, tasks, c) for c in matrix.cells}
    swept = {k: v for k, v in swept.items() if v}
    assert list(swept) == ["qwen2.5-coder-0.5b/llamacpp/q4_k_m/baseline"]  # its group's sweep_requests = 12
    (picked,) = swept.values()
    assert len(picked) == 12 and len({(t.language, t.program, t.mode) for t in picked}) == 12
    assert {t.id for t in picked} <= {t.id for t in tasks}
    cell = next(c for c in matrix.cells if c.id in swept)
    assert sweep_loads(matrix, cell) == ["c1", "c2", "r0.5", "r1"]
    assert all(sweep_loads(matrix, c) == [] for c in matrix.cells if c.id not in swept)
