"""The orchestrator end to end on a real llama-server: records, resume, a dying server, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.matrix import load_matrix
from runner.planning.selection import select_tasks
from runner.records import Outcome
from runner.running.events import RunEvents
from runner.running.run import RunOptions, reproduce
from runner.store import RunStore
from tests.llama_server import gemma_gguf, llama_servers_serving

pytestmark = pytest.mark.slow
MODEL_KEY = "gemma3-h5test"  # the served name: lets a /proc scan find this test's servers


def write_matrix(folder: Path, *, limit: int, concurrency: int = 2, sweep: str = "[1]", styles: str = '["instruct"]') -> Path:
    path = folder / "small.toml"
    path.write_text(f"""
name = "small"
benchmark = "starter"
[tasks]
languages = ["python"]
programs = ["lu_solver", "shortest_paths"]
limit = {limit}
[settings]
max_tokens = 24
concurrency = {concurrency}
latency_tasks = 2
warmup_requests = 1
sweep = {sweep}
sweep_requests = 2
request_timeout_s = 120
health_timeout_s = 300
threads = 2           # one server at a time: both cores (1 took 1.6x as long on the 2-core CI host)
[models.{MODEL_KEY}]
name = "Gemma 3 270M"
chat = false
prompt_styles = {styles}
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


def test_a_run_writes_every_sample_once_with_its_outcome_and_resumes_to_nothing(tmp_path):
    matrix = load_matrix(write_matrix(tmp_path, limit=3))
    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    store = RunStore(outcome.run_dir)
    (result,) = outcome.results
    assert result.status == "done" and result.load_seconds > 0 and result.server_version.startswith("b")
    samples = store.samples(result.cell)
    accuracy = [s for s in samples if s.phase == "accuracy"]
    latency = [s for s in samples if s.phase == "latency"]
    tasks = select_tasks(__import__("runner.benchmarks", fromlist=["x"]).load_benchmark("starter"), matrix.tasks)
    assert sorted(s.task_id for s in accuracy) == sorted(t.id for t in tasks)
    assert all(s.outcome in set(Outcome) - {Outcome.error} and s.cleaned_outcome and s.code is not None for s in accuracy)
    # the starter set's headline is our cascade, whose verdict the sample keeps (upstream's needs its fetched code)
    assert all(s.cascade == "runner" and s.runner.outcome == s.outcome for s in accuracy)
    # each latency task timed twice: after the server's cache reset (cold), and after the previous
    # task of its program (warm); the server's own count of reused tokens is recorded
    assert sorted((s.task_id, s.cache_state) for s in latency) == sorted(
        (t, state) for t in {s.task_id for s in latency} for state in ("cold", "warm"))
    assert len(latency) == 4 and all(s.outcome is None and s.ttft_s <= s.e2e_s for s in latency)
    assert all(s.cached_tokens == 0 for s in latency if s.cache_state == "cold")
    assert all(s.cached_tokens is not None for s in latency)
    # the server's peak memory was measured; energy only where this host has a counter, else why not
    assert result.peak_rss_mib > 100
    assert result.energy_joules is not None or "energy" in result.resources_absent
    # the timed tasks have a gap above them (their warm state serves it first): with a limit of 3,
    # which takes first gaps, they come from the rest of the filter; their prompts are the style's
    from runner import prompts
    from runner.benchmarks import load_benchmark
    from runner.planning.selection import predecessor

    pool = load_benchmark("starter").available()
    by_id = {t.id: t for t in pool}
    for s in latency:
        task = by_id[s.task_id]
        assert task.language.value == "python" and task.program in ("lu_solver", "shortest_paths")
        assert predecessor(task, pool) is not None
        assert s.prompt_sha256 == prompts.render(task, "instruct", chat=False).sha256
    (point,) = result.sweep
    assert point.concurrency == 1 and point.requests == 2 and point.output_tokens_per_s > 0
    assert result.server_metrics  # llama.cpp's Prometheus counters moved
    assert any(k.startswith("llamacpp:") and v > 0 for k, v in result.server_metrics.items())
    manifest = store.read_manifest()
    assert manifest.finished_at and manifest.fingerprint.cpu_count == os.cpu_count()
    assert manifest.models[0].sha256 and manifest.runtime_versions["llamacpp"] == result.server_version
    assert set(manifest.prompt_set_sha256) == {"instruct:text"}
    # the environment was checked before the cell: both programs' references pass here
    checks = manifest.environment.by_program()
    assert set(checks) == {"lu_solver", "shortest_paths"} and all(c.scoreable for c in checks.values())
    assert all(s.expected_outputs == "upstream" for s in accuracy)
    # and the manifest says under which limits, the working folder's size among them
    from runner.evaluation.sandbox import Limits, work_limit_works

    assert manifest.environment.limits.work_mb == Limits().work_mb
    assert manifest.environment.work_folder_limited is work_limit_works() and (os.geteuid() != 0 or work_limit_works())

    lines = store.samples_path(result.cell).read_text().count("\n")
    skipped: list[str] = []

    class Watch(RunEvents):
        def cell_skipped(self, result):
            skipped.append(result.cell.id)

    again = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"), Watch())
    assert skipped == [result.cell.id] and again.results[0].status == "done"
    assert store.samples_path(result.cell).read_text().count("\n") == lines


def test_prompt_hashes_of_a_task_are_equal_across_cells_of_a_style(tmp_path):
    text = write_matrix(tmp_path, limit=2, sweep="[]").read_text().replace(
        'label = "baseline"', 'label = "baseline"\nvariants = [{ label = "kv-q8", techniques = { kv_cache = "q8_0" } }]')
    path = tmp_path / "two.toml"
    path.write_text(text.replace("latency_tasks = 2", "latency_tasks = 0"))
    outcome = reproduce(load_matrix(path), RunOptions(runs_dir=tmp_path / "runs"))
    store = RunStore(outcome.run_dir)
    hashes = [{s.task_id: s.prompt_sha256 for s in store.samples(r.cell)} for r in outcome.results]
    assert len(hashes) == 2 and hashes[0] == hashes[1] and len(hashes[0]) == 2


def test_the_next_cell_starts_while_the_last_answers_of_a_cell_are_still_being_tested(tmp_path, monkeypatch):
    # Evaluation slower than generation (as Java or TensorFlow tests are beside a GPU): the
    # second cell's server must not wait for the first cell's verdicts, and none may be lost.
    from runner.evaluation import Evaluator

    real = Evaluator.evaluate

    def slow(self, task, raw_text):
        time.sleep(4)
        return real(self, task, raw_text)

    monkeypatch.setattr(Evaluator, "evaluate", slow)
    text = write_matrix(tmp_path, limit=2, sweep="[]").read_text().replace(
        'label = "baseline"', 'label = "baseline"\nvariants = [{ label = "kv-q8", techniques = { kv_cache = "q8_0" } }]')
    path = tmp_path / "two.toml"
    path.write_text(text.replace("latency_tasks = 2", "latency_tasks = 0"))
    events: list[tuple[str, str, float]] = []

    class Watch(RunEvents):
        def cell_started(self, cell, index, count):
            events.append(("started", cell.id, time.monotonic()))

        def sample_written(self, cell, sample):
            events.append(("judged", cell.id, time.monotonic()))

    outcome = reproduce(load_matrix(path), RunOptions(runs_dir=tmp_path / "runs", eval_workers=1), Watch())
    first, second = (r.cell.id for r in outcome.results)
    second_start = next(t for kind, cell, t in events if kind == "started" and cell == second)
    last_verdict_of_first = max(t for kind, cell, t in events if kind == "judged" and cell == first)
    assert second_start < last_verdict_of_first
    store = RunStore(outcome.run_dir)
    for result in outcome.results:  # every verdict arrived before reproduce returned
        accuracy = [s for s in store.samples(result.cell) if s.phase == "accuracy"]
        assert len(accuracy) == 2 and all(s.outcome is not None for s in accuracy)


def test_cells_with_the_same_launch_share_one_server_and_others_do_not(tmp_path):
    # One model under two prompt styles is one server launch: it is loaded once. A KV-cache
    # variant is another launch and gets its own server.
    text = write_matrix(tmp_path, limit=1, sweep="[]", styles='["instruct", "prefix"]').read_text().replace(
        'label = "baseline"', 'label = "baseline"\nvariants = [{ label = "kv-q8", techniques = { kv_cache = "q8_0" } }]')
    path = tmp_path / "shared.toml"
    path.write_text(text.replace("latency_tasks = 2", "latency_tasks = 0"))
    outcome = reproduce(load_matrix(path), RunOptions(runs_dir=tmp_path / "runs"))
    results = {r.cell.id: r for r in outcome.results}
    assert len(results) == 4 and all(r.status == "done" for r in results.values())
    shared = {cell_id: r.server_shared_with for cell_id, r in results.items() if r.server_shared_with}
    assert len(shared) == 2
    for cell_id, owner in shared.items():
        mine, theirs = results[cell_id].cell, results[owner].cell
        assert mine.techniques == theirs.techniques and mine.prompt_style != theirs.prompt_style
        assert results[cell_id].load_seconds == results[owner].load_seconds
    store = RunStore(outcome.run_dir)
    assert all(len(store.samples(r.cell)) == 1 for r in results.values())
    assert llama_servers_of_this_test() == []


def llama_servers_of_this_test() -> list[int]:
    """Pids of running llama-server processes serving this test's model."""
    return llama_servers_serving(MODEL_KEY)


def test_a_server_killed_mid_cell_fails_the_cell_and_a_rerun_completes_only_what_is_missing(tmp_path):
    matrix = load_matrix(write_matrix(tmp_path, limit=4, concurrency=1, sweep="[]"))
    killed: list[int] = []

    class KillAfterFirst(RunEvents):
        def sample_written(self, cell, sample):
            if not killed:
                (pid,) = llama_servers_of_this_test()
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"), KillAfterFirst())
    (result,) = outcome.results
    assert killed and result.status == "failed" and "server died" in result.reason
    store = RunStore(outcome.run_dir)
    kept = [s for s in store.samples(result.cell) if s.outcome != Outcome.error]
    assert len(kept) >= 1
    first_ids = {s.task_id for s in kept}

    again = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    assert again.results[0].status == "done"
    accuracy = [s for s in store.samples(result.cell) if s.phase == "accuracy" and s.outcome != Outcome.error]
    assert len(accuracy) == 4 and len({s.task_id for s in accuracy}) == 4  # nothing answered twice
    assert first_ids <= {s.task_id for s in accuracy}
    assert not llama_servers_of_this_test()


def test_sigint_to_reproduce_leaves_no_server_behind(tmp_path):
    path = write_matrix(tmp_path, limit=6, concurrency=1)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "reproduce", str(path), "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        samples = runs / "small" / "cells" / f"{MODEL_KEY}__llamacpp__q4_k_m__baseline" / "samples.jsonl"
        while not (samples.is_file() and samples.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert llama_servers_of_this_test(), "the server should be running mid-cell"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "interrupted" in err
    assert not llama_servers_of_this_test()
    cell = RunStore(runs / "small").cell_results()[0]
    assert cell.status == "failed" and "interrupted" in cell.reason


def test_a_sandbox_that_cannot_start_the_interpreter_stops_reproduce_before_any_model_loads(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from runner.cli import main

    monkeypatch.setenv("RUNNER_EVAL_PYTHON", str(tmp_path / "no-such-python"))
    result = CliRunner().invoke(main, ["reproduce", str(write_matrix(tmp_path, limit=2)), "--runs-dir",
                                       str(tmp_path / "runs"), "--sandbox", "local"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()[-1:]
    assert "no-such-python" in line and line.startswith("Error:")
    assert not list((tmp_path / "runs").rglob("server.log"))  # no server was started, no model loaded


def test_reproduce_needs_exactly_one_matrix():
    from click.testing import CliRunner

    from runner.cli import main

    result = CliRunner().invoke(main, ["reproduce", "--preset", "demo", "matrices/demo.toml"])
    assert result.exit_code == 2 and "give exactly one of MATRIX, --preset demo or --all" in result.output


def test_fresh_refuses_to_delete_a_folder_that_is_not_a_run(tmp_path):
    from runner.errors import UserError

    (tmp_path / "runs" / "small").mkdir(parents=True)
    (tmp_path / "runs" / "small" / "notes.txt").write_text("mine")
    matrix = load_matrix(write_matrix(tmp_path, limit=1))
    with pytest.raises(UserError, match="not a run directory"):
        reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs", fresh=True))
    assert (tmp_path / "runs" / "small" / "notes.txt").read_text() == "mine"


def test_a_run_made_with_other_settings_is_not_silently_mixed(tmp_path):
    from runner.errors import UserError
    from runner.running.run import Reproduction

    matrix = load_matrix(write_matrix(tmp_path, limit=1))
    Reproduction(matrix, RunOptions(runs_dir=tmp_path / "runs"))._open_store()
    changed = matrix.model_copy(update={"settings": matrix.settings.model_copy(update={"max_tokens": 99})})
    with pytest.raises(UserError, match="different matrix settings.*--fresh"):
        Reproduction(changed, RunOptions(runs_dir=tmp_path / "runs"))._open_store()


def test_metrics_delta_subtracts_counters_and_keeps_gauges():
    from runner.running.cell import metrics_delta
    from runner.runtimes.base import parse_prometheus

    before = parse_prometheus("# TYPE a_total counter\na_total 5\n# TYPE g gauge\ng 3\n"
                              "# TYPE h histogram\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"+Inf\"} 4\nh_sum 1.5\nh_count 4\n")
    after = parse_prometheus("# TYPE a_total counter\na_total 9\n# TYPE g gauge\ng 7\n"
                             "# TYPE h histogram\nh_bucket{le=\"1.0\"} 3\nh_bucket{le=\"+Inf\"} 9\nh_sum 4.0\nh_count 9\n")
    assert metrics_delta(before, after) == {"a_total": 4, "g": 7, 'h_bucket{le="1.0"}': 1, 'h_bucket{le="+Inf"}': 5,
                                            "h_sum": 2.5, "h_count": 5}


def test_a_model_file_with_bit_rot_under_its_old_mtime_fails_its_cell_and_its_old_sha256_is_not_recorded(tmp_path):
    import hashlib
    import shutil

    from runner.serving.model_files import sha256_file
    from tests.test_models import rot_keeping_mtime

    model = tmp_path / "gemma.gguf"
    shutil.copy2(gemma_gguf(), model)
    old = sha256_file(model)  # the size and mtime cache now holds the healthy content's digest
    rot_keeping_mtime(model)
    text = write_matrix(tmp_path, limit=1, sweep="[]").read_text().replace(str(gemma_gguf()), str(model))
    (tmp_path / "rot.toml").write_text(text.replace("latency_tasks = 2", "latency_tasks = 0"))
    outcome = reproduce(load_matrix(tmp_path / "rot.toml"), RunOptions(runs_dir=tmp_path / "runs"))
    (result,) = outcome.results
    assert result.status == "failed" and "bit rot" in result.reason and old in result.reason, result.reason
    assert not RunStore(outcome.run_dir).samples(result.cell)  # no answer came from the rotten weights
    recorded = [m.sha256 for m in RunStore(outcome.run_dir).read_manifest().models]
    assert old not in recorded
    assert sha256_file(model) == hashlib.sha256(model.read_bytes()).hexdigest()  # the stale entry is gone
    assert not llama_servers_of_this_test()


def test_a_cell_asks_its_repeated_tasks_again_at_both_concurrencies_once(tmp_path):
    from runner.benchmarks import load_benchmark
    from runner.measuring.noise import REPEAT, REPEAT_SERIAL, noise_floor
    from runner.measuring.passrate import pass_count
    from runner.planning.selection import repeat_tasks

    text = write_matrix(tmp_path, limit=4, sweep="[]").read_text()
    text = text.replace("latency_tasks = 2", "latency_tasks = 0\nrepeat_tasks = 3\nrepeat_cells = \"all\"")
    (tmp_path / "small.toml").write_text(text)
    matrix = load_matrix(tmp_path / "small.toml")
    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    (result,) = outcome.results
    assert result.status == "done"
    store = RunStore(outcome.run_dir)
    samples = store.samples(result.cell)
    benchmark = load_benchmark("starter")
    chosen = {t.id for t in repeat_tasks(matrix, benchmark, select_tasks(benchmark, matrix.tasks), result.cell)}
    accuracy = {s.task_id: s for s in samples if s.phase == "accuracy"}
    assert len(chosen) == 3 and chosen <= set(accuracy)
    for phase in (REPEAT, REPEAT_SERIAL):
        again = {s.task_id: s for s in samples if s.phase == phase}
        # each asked once, judged like an accuracy answer (an identical text reuses its verdict)
        assert set(again) == chosen and sum(s.phase == phase for s in samples) == 3
        assert all(s.outcome not in (None, Outcome.error) and s.code is not None for s in again.values())
        assert all(s.verdict_from for s in again.values() if s.raw_text == accuracy[s.task_id].raw_text)
    floor = noise_floor(result.cell.id, store.latest_samples(result.cell), matrix.settings.concurrency)
    for rep, phase in ((floor.concurrent, REPEAT), (floor.serial, REPEAT_SERIAL)):
        again = {s.task_id: s for s in samples if s.phase == phase}
        assert rep.tasks == rep.judged == 3
        assert rep.answers_changed == sum(again[t].raw_text != accuracy[t].raw_text for t in chosen)
        assert rep.verdicts_changed == sum((again[t].outcome == Outcome.passed) != (accuracy[t].outcome == Outcome.passed)
                                           for t in chosen)
    assert (floor.concurrent.concurrency, floor.serial.concurrency) == (2, 1)
    assert pass_count(samples).tasks == 4  # the repeated answers count in no pass rate

    lines = store.samples_path(result.cell).read_text().count("\n")
    again = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    assert again.results[0].status == "done"
    assert store.samples_path(result.cell).read_text().count("\n") == lines  # nothing asked twice


def test_a_run_made_before_a_setting_existed_resumes_when_it_is_at_its_default(tmp_path):
    import json

    from runner.errors import UserError
    from runner.running.run import Reproduction

    matrix = load_matrix(write_matrix(tmp_path, limit=1))
    Reproduction(matrix, RunOptions(runs_dir=tmp_path / "runs"))._open_store()
    path = tmp_path / "runs" / "small" / "manifest.json"
    old = json.loads(path.read_text())
    for key in ("repeat_tasks", "repeat_cells", "parallel_cells"):
        del old["matrix"]["settings"][key]
    path.write_text(json.dumps(old))
    Reproduction(matrix, RunOptions(runs_dir=tmp_path / "runs"))._open_store()  # no refusal
    path.write_text(json.dumps(old))
    repeating = matrix.model_copy(update={"settings": matrix.settings.model_copy(update={"repeat_tasks": 3})})
    with pytest.raises(UserError, match="different matrix settings"):
        Reproduction(repeating, RunOptions(runs_dir=tmp_path / "runs"))._open_store()
