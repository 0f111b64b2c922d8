"""One plan for doctor and reproduce: validation, per-cell needs, totals, and a CLI that never misleads."""

from __future__ import annotations

import json
from pathlib import Path
import re

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import UserError
from runner.matrix import load_matrix
from runner.planning.doctor import GpuInfo, Host
from runner.planning.estimates import ORACLE_TIMINGS
from runner.planning.plan import _duration, make_plan
from runner.running.run import RunOptions, reproduce

#: one cell a CPU host runs (a local GGUF), one it cannot (ExLlamaV2 is CUDA only), sharing nothing
MATRIX = """
name = "{name}"
benchmark = "{benchmark}"
backend = "local"
[tasks]
limit = 4
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "path"
path = "{gguf}"
gpu_memory_gib = 1
[models.big]
name = "Big"
[models.big.quantizations."exl2-4.0"]
kind = "hf"
repo = "org/Big-exl2"
revision = "4.0bpw"
gpu_memory_gib = 48
disk_gib = 34
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q8_0"
[[cells]]
model = "big"
runtime = "exllama"
quantization = "exl2-4.0"
"""

CPU_HOST = Host(gpu_note="no NVIDIA driver or GPU", ram_gib=24, free_disk_gib=50, docker="27.0")


@pytest.fixture
def cpu_host(monkeypatch, tmp_path):
    """This host, as the plan sees it: no GPU, a llama-server that exists (nothing starts)."""
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("RUNNER_LLAMA_SERVER", str(binary))
    monkeypatch.setattr("runner.planning.doctor.probe_host", lambda max_age_s=30.0: CPU_HOST.model_copy(deep=True))
    return CPU_HOST


def write(tmp_path, name="mixed", benchmark="starter") -> str:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    path = tmp_path / f"{name}.toml"
    path.write_text(MATRIX.format(name=name, benchmark=benchmark, gguf=gguf), encoding="utf-8")
    return str(path)


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


# -- doctor and reproduce agree on bad matrices ------------------------------------------------------
def test_an_unknown_backend_is_refused_by_doctor_and_reproduce_alike(tmp_path, cpu_host):
    path, runs = write(tmp_path), tmp_path / "runs"
    doctor = invoke("doctor", path, "--backend", "k8s")
    run = invoke("reproduce", path, "--backend", "k8s", "--runs-dir", str(runs))
    planned = invoke("reproduce", path, "--backend", "k8s", "--plan", "--runs-dir", str(runs))
    line = "--backend 'k8s': unknown backend; known backends: docker, local"
    for result in (doctor, run, planned):
        assert result.exit_code == 2, result.output
        assert line in result.output and "Traceback" not in result.output
    assert not runs.exists()


def test_an_unknown_benchmark_is_refused_by_doctor_and_reproduce_alike(tmp_path, cpu_host):
    path, runs = write(tmp_path, benchmark="humaneval"), tmp_path / "runs"
    line = f"{path}: benchmark = 'humaneval': unknown benchmark; known benchmarks: starter, simcopilot"
    for args in (["doctor", path], ["doctor", path, "--json"], ["reproduce", path, "--runs-dir", str(runs)],
                 ["reproduce", path, "--plan", "--runs-dir", str(runs)]):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert line in result.output, (args, result.output)
    assert not runs.exists()


# -- reproduce --plan, and a refused run ---------------------------------------------------------------
def test_plan_prints_needs_and_estimates_writes_nothing_and_exits_1_when_a_cell_cannot_run(tmp_path, cpu_host):
    path, runs = write(tmp_path), tmp_path / "runs"
    result = invoke("reproduce", path, "--plan", "--runs-dir", str(runs))
    assert result.exit_code == 1, result.output
    assert not runs.exists()
    lines = result.output.rstrip("\n").splitlines()
    assert lines[-1] == ("1 of 2 cells cannot run on this host (backend local); run them on a host that can, "
                         "or pass --skip-unrunnable")
    big = next(line for line in lines if line.startswith("big/exllama/exl2-4.0/baseline "))
    assert big.split()[1:5] == ["no", "1", "48", "GiB"] and "34.0 GiB" in big
    assert "big/exllama/exl2-4.0/baseline: runtime exllama runs on NVIDIA GPUs only" in result.output
    assert next(line for line in lines if line.startswith("disk: ")).startswith("disk: 34.0 GiB of weights")
    for part in ("generation: ", "evaluation: ", "whole run: "):
        assert any(line.startswith(part) and re.search(r"\d (h|min) \(", line) for line in lines), part
    # every cell runnable: exit 0, nothing written either
    only_tiny = tmp_path / "tiny-only.toml"
    only_tiny.write_text(open(path).read().split("[[cells]]")[0] + "[[cells]]" + open(path).read().split("[[cells]]")[1])
    ok = invoke("reproduce", str(only_tiny), "--plan", "--runs-dir", str(runs))
    assert ok.exit_code == 0, ok.output
    assert ok.output.rstrip().endswith("1 of 1 cells can run on this host") and not runs.exists()


def test_a_refused_run_prints_the_whole_plan_and_leaves_no_run_directory(tmp_path, cpu_host):
    path, runs = write(tmp_path), tmp_path / "runs"
    result = invoke("reproduce", path, "--runs-dir", str(runs))
    assert result.exit_code == 2, result.output
    assert result.output.rstrip().endswith("pass --skip-unrunnable")
    assert "tiny/llamacpp/q8_0/baseline" in result.output and "generation: " in result.output
    assert not runs.exists()  # no manifest.json to make the next run "different matrix settings"
    # the core refuses the same way, before the run directory exists
    with pytest.raises(UserError) as info:
        reproduce(load_matrix(path), RunOptions(runs_dir=runs))
    assert "1 of 2 cells cannot run on this host (backend local)" in str(info.value)
    assert "big/exllama/exl2-4.0/baseline: runtime exllama" in str(info.value)
    assert not runs.exists()


def test_all_plan_lists_every_paper_cell_uncut_with_needs_hours_and_the_fix_line_last(tmp_path):
    """On this machine, as it is: without the SimCoPilot data the plan still plans."""
    runs = tmp_path / "runs"
    result = invoke("reproduce", "--all", "--plan", "--runs-dir", str(runs))
    assert result.exit_code in (0, 1), result.output
    assert not runs.exists()
    out = result.output
    assert "more characters" not in out
    ids = [c.id for c in load_matrix("matrices/paper.toml").cells]
    assert len(ids) == 54
    rows = [line for line in out.splitlines() if line.split(" ")[0] in ids]
    assert [row.split()[0] for row in rows] == ids
    for row in rows:  # GPU memory, disk and hours on every row
        assert " GiB " in row and row.count("GiB") >= 2 and " + " in row and "?" not in row, row
    assert "runner data fetch simcopilot" in out  # the data is missing in a fresh runner home
    assert "cannot start: SimCoPilot is not in" in out
    hours = {line.split(":")[0]: line for line in out.splitlines() if line.startswith(("generation:", "evaluation:"))}
    assert "runner/planning/estimates.py's table per runtime and GPU class" in hours["generation"]
    if ORACLE_TIMINGS.is_file():
        assert "the reference oracle's 1,072 per-task timings" in hours["evaluation"]
    last = out.rstrip("\n").splitlines()[-1]
    assert last.endswith("run them on a host that can, or pass --skip-unrunnable") or last.endswith(
        "54 of 54 cells can run on this host")
    # without --plan: the same plan, then the refusal as the last line (the data is missing)
    refused = invoke("reproduce", "--all", "--runs-dir", str(runs))
    assert refused.exit_code == 2, refused.output
    assert [line.split()[0] for line in refused.output.splitlines() if line.split(" ")[0] in ids] == ids
    assert refused.output.rstrip().splitlines()[-1].startswith("Error: ")
    assert not runs.exists()


def test_all_plan_on_eight_h100s_exits_0_with_every_cell_runnable(simcopilot, tmp_path):
    """The paper's 54 cells on the node a reviewer rents, planned from here: each fits the memory an
    H100 80GB reports (79.6 GiB; runner.planning.gpu_memory), on as many GPUs as the matrix gives it."""
    runs = tmp_path / "runs"
    result = invoke("reproduce", "--all", "--plan", "--assume-gpus", "8xh100-80gb", "--runs-dir", str(runs))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("on an assumed host: 8 x NVIDIA H100 80GB HBM3 (79.6 GiB each, "
                             "--assume-gpus 8xh100-80gb)")
    assert lines[-1].startswith("54 of 54 cells can run on an assumed host: 8 x NVIDIA H100 80GB HBM3")
    assert "why not" not in result.output and not runs.exists()
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("llama3-70b/", "codestral-22b/"))}
    assert len(rows) == 54
    assert rows["llama3-70b/vllm/bf16/baseline-tp4"][1:6] == ["yes", "4", "155.4", "GiB", "(319)"]
    assert rows["llama3-70b/vllm/fp8/baseline"][1:3] == ["yes", "2"]
    assert rows["llama3-70b/llamacpp/q8_0/baseline"][1:3] == ["yes", "2"]


def test_doctor_plans_for_assumed_gpus_and_says_they_are_assumed(tmp_path, cpu_host):
    result = invoke("doctor", "paper", "--assume-gpus", "2xh200-141gb", "--json")
    report = json.loads(result.stdout)
    host = report["host"]
    assert [(g["name"], round(g["memory_gib"], 1)) for g in host["gpus"]] == [("NVIDIA H200", 140.4)] * 2
    assert host["assumed"] == "2 x NVIDIA H200 (140.4 GiB each, --assume-gpus 2xh200-141gb)"
    assert host["cpu_count"] == cpu_host.cpu_count and host["ram_gib"] == cpu_host.ram_gib  # this host's
    assert report["plan"]["where"] == f"on an assumed host: {host['assumed']}"
    cells = {c["id"]: c for c in report["cells"]}
    # two H200s hold the 70B's FP8 as the matrix places it, not its BF16, which asks for four GPUs
    assert cells["llama3-70b/vllm/fp8/baseline"]["runnable"]
    assert cells["llama3-70b/vllm/bf16/baseline-tp4"]["reason"] == "needs 4 GPUs (tensor parallel) and this host has 2"
    unknown = invoke("doctor", "paper", "--assume-gpus", "h100")
    assert unknown.exit_code == 2 and "unknown GPU kind 'h100'; known kinds: h100-80gb" in unknown.output


def test_reproduce_takes_a_shipped_matrix_by_name_as_doctor_does(tmp_path):
    result = invoke("reproduce", "demo", "--plan", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code in (0, 1), result.output
    assert result.output.startswith("plan for ") and "demo.toml: run 'demo'" in result.output
    assert not (tmp_path / "runs").exists()


# -- doctor ------------------------------------------------------------------------------------------------
def test_doctor_exits_1_when_no_cell_can_run_and_says_each_reason_once(tmp_path, cpu_host):
    path = tmp_path / "gpu-only.toml"
    text = open(write(tmp_path)).read().replace('runtime = "llamacpp"', 'runtime = "exllama"') \
        .replace('quantization = "q8_0"', 'quantization = "exl2-4.0"\nlabel = "again"').replace('model = "tiny"', 'model = "big"')
    path.write_text(text)
    result = invoke("doctor", str(path))
    assert result.exit_code == 1, result.output
    assert result.output.count("runtime exllama runs on NVIDIA GPUs only") == 1
    assert "2 cells: runtime exllama runs on NVIDIA GPUs only" in result.output
    assert "0 of 2 cells can run on this host" in result.output


def test_doctor_json_carries_cell_ids_data_and_whether_hf_token_is_set_never_its_value(tmp_path, cpu_host):
    path = write(tmp_path)
    result = invoke("doctor", path, "--json", env={"HF_TOKEN": "hf_secret_value_123"})
    assert result.exit_code == 1, result.output  # one cell of two cannot run: as reproduce --plan
    assert "hf_secret_value_123" not in result.output
    report = json.loads(result.stdout)
    assert [c["id"] for c in report["cells"]] == ["tiny/llamacpp/q8_0/baseline", "big/exllama/exl2-4.0/baseline"]
    big = report["cells"][1]
    assert (big["runnable"], big["gpu_memory_gib"], big["disk_gib"], big["cached"]) == (False, 48, 34, False)
    assert report["hf_token"]["set"] is True
    [data] = report["data"]
    assert {k: v for k, v in data.items() if k not in ("detail", "scoring")} == {
        "benchmark": "starter", "edition": None, "present": True, "tasks": 121, "unavailable": [], "unscoreable": []}
    if report["sandbox"]["ok"]:  # the starter set's programs, none checked yet in this fresh runner home
        assert "sandbox, as cached: 0 of " in data["scoring"]
    assert report["plan"]["reasons"] == [{"reason": big["reason"], "cells": [big["id"]]}]
    assert report["plan"]["generation"]["basis"] and report["plan"]["evaluation"]["basis"]


def test_doctor_without_a_matrix_reports_the_data_and_the_token(tmp_path, cpu_host):
    result = invoke("doctor", env={"HF_TOKEN": ""})
    assert result.exit_code == 0, result.output
    text = re.sub(r"[│\s]+", " ", result.output)  # the table wraps long details, never cuts them
    assert "data simcopilot no SimCoPilot is not in" in text and "run `runner data fetch simcopilot`" in text
    assert "HF_TOKEN ok not set" in text and "…" not in text


# -- the plan's figures --------------------------------------------------------------------------------------
def test_paper_disk_counts_shared_files_once_and_every_cell_has_estimates(cpu_host):
    matrix = load_matrix("matrices/paper.toml")
    plan = make_plan(matrix, host=cpu_host)
    files = {}
    for key, spec in matrix.models.items():
        for quant, source in spec.quantizations.items():
            files[(source.repo, source.revision, source.filename, tuple(source.allow_patterns or []))] = source.disk_gib
    assert plan.disk.total_gib == pytest.approx(sum(files.values()))  # fp8 reads the bf16 files: once
    assert plan.disk.short_gib == pytest.approx(plan.disk.needed_gib - 50)
    assert not plan.disk.unknown
    assert all(c.generation_hours and c.evaluation_hours for c in plan.cells)
    # on a CPU host, a cell its CPU can serve in 80% of its 24 GiB (weights and KV cache: Codestral's Q4_K_M
    # with a q8_0 KV cache, 12.4 + 3.7 GiB) is estimated on it; every other on the paper's GPU class
    on_cpu = [c.id for c in plan.cells if c.estimated_on.startswith("this CPU")]
    assert on_cpu == [f"codestral-22b/llamacpp/q4_k_m/kv-q8_0-{style}" for style in ("codestral-fim", "simcopilot")]
    assert all(c.estimated_on.startswith(("NVIDIA H100", "H100")) for c in plan.cells if c.id not in on_cpu)
    assert plan.generation.hours == pytest.approx(sum(c.generation_hours for c in plan.cells))
    # a bigger GPU class is faster, four GPUs for the 70B in BF16 too
    h200 = Host(gpus=[GpuInfo(index=i, name="NVIDIA H200", memory_gib=140, free_gib=140) for i in range(4)],
                ram_gib=512, free_disk_gib=2000, docker="27.0")
    fast = make_plan(matrix, host=h200)
    assert fast.generation.hours < plan.generation.hours
    tp4 = next(c for c in fast.cells if c.id == "llama3-70b/vllm/bf16/baseline-tp4")
    assert (tp4.gpus, tp4.gpu_memory_here_gib) == (4, 560)
    assert fast.disk.short_gib is None
    # the lock says which repositories are gated: Codestral comes from an ungated conversion (paper-sources.md)
    assert sorted(plan.token.gated) == ["meta-llama/Meta-Llama-3-70B-Instruct"]


def test_the_help_names_the_demo_model_and_its_examples_name_real_cells():
    text = invoke("--help").output
    assert "Qwen2.5-Coder 0.5B" in text and "Gemma" not in text and "reproduce --all --plan" in text
    example = next(line.split()[-1] for line in invoke("models", "prepare", "--help").output.splitlines()
                   if "--cell" in line and "runner models prepare" in line)
    assert example in [c.id for c in load_matrix("matrices/demo.toml").cells]


def test_score_dash_reads_the_answers_from_standard_input():
    result = CliRunner().invoke(main, ["score", "-", "--benchmark", "starter"], input='{"task_id": 1}\nnot json\n')
    assert result.exit_code == 2, result.output
    assert "<stdin>: line 1: field 'task_id' is 1, expected a string" in result.output
    assert "no such file" not in result.output


def test_doctor_runs_the_sandboxs_self_check_and_says_when_it_fails(tmp_path, cpu_host, monkeypatch):
    from runner.evaluation import docker_sandbox

    path = write(tmp_path)
    result = invoke("doctor", path, "--json")
    report = json.loads(result.stdout)
    assert set(report["sandbox"]) == {"ok", "detail"}
    if report["sandbox"]["ok"]:
        assert "Python and Java self-check passed" in report["sandbox"]["detail"]

    def broken(*args, **kwargs):
        raise UserError("the local sandbox is incomplete here: not running as root")

    monkeypatch.setattr(docker_sandbox, "choose_sandbox", broken)
    table = invoke("doctor", path, env={"COLUMNS": "200"})
    [row] = [line for line in table.stdout.splitlines() if "│ sandbox" in line]
    assert [c.strip() for c in row.split("│")][1:3] == ["sandbox", "no"] and "not running as root" in row


def test_doctor_names_the_programs_whose_tasks_are_unavailable(monkeypatch):
    from runner import benchmarks
    from runner.planning.checks import data_check

    class Task:
        def __init__(self, program, reason=None):
            self.program, self.reason, self.available = program, reason, reason is None

    class Bench:
        tasks = [Task("a"), Task("b", "needs cv2"), Task("b"), Task("b", "needs cv2")]

    monkeypatch.setattr(benchmarks, "load_benchmark", lambda name, edition=None: Bench())
    check = data_check("starter")
    assert (check.present, check.tasks, check.unavailable) == (True, 4, ["b: 2 of 3 tasks (needs cv2)"])


# -- the estimates: the CPU table against the demo as measured, earlier runs on this hardware ---------------
#: the demo's ten cells as measured on the 2-core machine the table is fitted to (a fresh clone's run of
#: 2026-11-29, before the noise floor and the sweep: 14 min 36 s), and the band its plan must stay in
DEMO_MEASURED_MIN = 14.6
DEMO_BAND = 0.25
TWO_CORES = Host(gpu_note="no NVIDIA driver or GPU", ram_gib=8, free_disk_gib=50, cpu="Test CPU @ 2.0GHz", cpu_count=2)


def test_the_demos_plan_on_a_2_core_cpu_is_within_the_band_of_its_measured_duration():
    plan = make_plan(load_matrix("matrices/demo.toml"), host=TWO_CORES)
    minutes = plan.run.hours * 60
    assert abs(minutes / DEMO_MEASURED_MIN - 1) <= DEMO_BAND, (minutes, DEMO_MEASURED_MIN)
    # and within the band of the demo run kept under bench/results/demo (its sweep included)
    kept = json.loads(Path("bench/results/demo/run.json").read_text())["run_minutes"]
    assert abs(minutes / kept - 1) <= DEMO_BAND, (minutes, kept)
    assert all(c.generation_basis == "table" and c.estimated_on == "this CPU (2 threads)" for c in plan.cells)
    # and per kind of cell, against the measured 1.4-1.9 min per rung, 0.9-1.1 per technique, 1.9 for vLLM
    per = {c.id: c.generation_hours * 60 for c in plan.cells}
    # the Q4_K_M rung also sweeps (its group's sweep_requests), so it is not one of the rungs measured so
    swept = "qwen2.5-coder-0.5b/llamacpp/q4_k_m/baseline"
    rungs = [m for i, m in per.items() if i.endswith("/baseline") and "/vllm/" not in i and i != swept]
    techniques = [m for i, m in per.items() if not i.endswith("/baseline")]
    assert len(rungs) == 5 and len(techniques) == 3
    assert per[swept] > max(rungs)
    for mean, measured in ((sum(rungs) / 5, 1.65), (sum(techniques) / 3, 1.0),
                           (per["qwen2.5-coder-0.5b/vllm/bf16/baseline"], 1.9)):
        assert abs(mean / measured - 1) <= DEMO_BAND, (mean, measured)


def _record_run(runs, name: str, matrix, cell_id: str, *, cpu: str, cores: int, accuracy_s: float,
                latency_s: float, eval_s: float, load_s: float = 4.0, started=None, reused: int = 0,
                reused_from: str | None = None):
    """A finished run as ``runner reproduce`` leaves it (manifest, cell record, samples), written
    through the store: ``cell_id``'s planned tasks answered one after another, ``accuracy_s`` each,
    its latency tasks cold then warm, ``latency_s`` per task, every answer judged in ``eval_s``, the
    first ``reused`` of them with the verdict of ``reused_from`` (``<run>/<cell id>``). Recording
    another cell under the same ``name`` adds it to that run."""
    from datetime import datetime, timedelta, timezone

    from runner.benchmarks import load_benchmark
    from runner.planning.selection import cell_latency_tasks, cell_tasks, latency_subset, select_tasks
    from runner.records import Outcome, Sample
    from runner.store import CellResult, Fingerprint, Manifest, Placement, RunStore

    bench = load_benchmark(matrix.benchmark)
    selected = select_tasks(bench, matrix.tasks)
    latency = latency_subset(selected, matrix.settings,
                             select_tasks(bench, matrix.tasks.model_copy(update={"limit": None})))
    cell = matrix.cell(cell_id)
    store = RunStore(runs / name)
    started = started or datetime(2025, 6, 1, tzinfo=timezone.utc)
    store.write_manifest(Manifest(name=name, matrix=matrix.resolved(), cells=matrix.cells, started_at=started,
                                  fingerprint=Fingerprint(hostname="elsewhere", cpu=cpu, cpu_count=cores)))
    clock = started + timedelta(seconds=load_s)
    for index, task in enumerate(cell_tasks(matrix, bench, selected, cell)):
        store.append_sample(cell, Sample(task_id=task.id, cell_id=cell.id, prompt_style=cell.prompt_style,
                                         prompt_sha256="0" * 64, outcome=Outcome.fail, eval_seconds=eval_s,
                                         verdict_from=reused_from if index < reused else None,
                                         started_at=clock, finished_at=clock + timedelta(seconds=accuracy_s)))
        clock += timedelta(seconds=accuracy_s)
    for task in cell_latency_tasks(matrix, latency, cell):
        for state in ("cold", "warm"):
            store.append_sample(cell, Sample(task_id=task.id, cell_id=cell.id, phase="latency", cache_state=state,
                                             prompt_style=cell.prompt_style, prompt_sha256="0" * 64,
                                             started_at=clock, finished_at=clock + timedelta(seconds=latency_s / 2)))
            clock += timedelta(seconds=latency_s / 2)
    store.write_cell(CellResult(cell=cell, status="done", load_seconds=load_s, started_at=started,
                                finished_at=clock, generation_finished_at=clock,
                                placements=[Placement(node="elsewhere", started_at=started, ended_at=clock)]))
    return len(cell_tasks(matrix, bench, selected, cell)), len(cell_latency_tasks(matrix, latency, cell))


def test_an_earlier_run_on_this_hardware_gives_the_estimate_and_another_fingerprint_is_ignored(tmp_path, cpu_host):
    from datetime import datetime, timezone

    from runner.planning.estimates import CELL_OVERHEAD_S

    matrix, runs = load_matrix(write(tmp_path)), tmp_path / "runs"
    tiny = "tiny/llamacpp/q8_0/baseline"
    host = TWO_CORES
    table = make_plan(matrix, host=host, runs_dir=runs)  # no runs folder yet: the table
    assert {c.generation_basis for c in table.cells} == {"table"}
    assert "no earlier run on this hardware has these cells" in table.generation.basis

    # the same cell measured on another machine (another CPU, and the same CPU with more cores): ignored
    _record_run(runs, "other-cpu", matrix, tiny, cpu="Other CPU", cores=2, accuracy_s=50, latency_s=50, eval_s=60)
    _record_run(runs, "more-cores", matrix, tiny, cpu=host.cpu, cores=16, accuracy_s=50, latency_s=50, eval_s=60)
    before = sorted(p for p in runs.rglob("*"))
    ignored = make_plan(matrix, host=host, runs_dir=runs)
    assert sorted(p for p in runs.rglob("*")) == before  # reading the runs writes nothing (no empty cell folders)
    assert ignored.cells[0].generation_hours == pytest.approx(table.cells[0].generation_hours)
    assert ignored.evaluation.hours == pytest.approx(table.evaluation.hours)
    assert "measured in run" not in ignored.generation.basis

    # measured here: the run's own phases, scaled to the plan's task counts
    answers, timed = _record_run(runs, "here", matrix, tiny, cpu=host.cpu, cores=2, accuracy_s=3.0, latency_s=5.0,
                                 eval_s=2.0, started=datetime(2025, 6, 2, tzinfo=timezone.utc))
    plan = make_plan(matrix, host=host, runs_dir=runs)
    cell = next(c for c in plan.cells if c.id == tiny)
    assert cell.generation_basis == "run here"
    assert cell.generation_hours * 3600 == pytest.approx(4.0 + CELL_OVERHEAD_S["cpu"] + answers * 3.0 + timed * 5.0)
    assert cell.evaluation_measured == answers == 4
    # of which the latency phase holds the node alone: the part a schedule of cells at once serializes
    assert cell.timed_hours * 3600 == pytest.approx(timed * 5.0)
    assert cell.load_hours * 3600 == pytest.approx(4.0 + CELL_OVERHEAD_S["cpu"])
    assert cell.evaluation_hours * 3600 == pytest.approx(answers * 2.0 / 2)  # two workers
    assert (f"measured in run here on CPU {host.cpu} (2 cores): 1 cells, {answers + 2 * timed} samples"
            in plan.generation.basis)
    assert "runner/planning/estimates.py's table per runtime and GPU class: 1 cells as on" in plan.generation.basis  # the GPU cell
    assert plan.evaluation.basis.startswith(f"4 of 8 answers at the judging time measured on CPU {host.cpu} (2 cores)")
    big = next(c for c in plan.cells if c.id != tiny)  # estimated on an assumed GPU: nothing measured here applies
    assert (big.generation_basis, big.evaluation_measured) == ("table", 0)

    # a newer run of the same cell, twice as slow: the estimate follows the recorded timings
    _record_run(runs, "slower", matrix, tiny, cpu=host.cpu, cores=2, accuracy_s=6.0, latency_s=10.0, eval_s=2.0,
                started=datetime(2025, 6, 3, tzinfo=timezone.utc))
    slower = next(c for c in make_plan(matrix, host=host, runs_dir=runs).cells if c.id == tiny)
    assert slower.generation_basis == "run slower"
    assert slower.generation_hours * 3600 == pytest.approx(4.0 + CELL_OVERHEAD_S["cpu"] + answers * 6.0 + timed * 10.0)

    # reproduce --plan and doctor read the runs folder they are given, on this very host
    import os

    from runner.measuring.fingerprint import cpu_model

    cli_runs = tmp_path / "cli-runs"
    _record_run(cli_runs, "cli", matrix, tiny, cpu=cpu_model(), cores=os.cpu_count(), accuracy_s=3.0, latency_s=5.0,
                eval_s=2.0)
    for args in (["reproduce", matrix.path, "--plan", "--runs-dir", cli_runs], ["doctor", matrix.path, "--runs-dir", cli_runs]):
        result = invoke(*map(str, args), env={"COLUMNS": "200"})
        assert "generation: " in result.output and "(measured in run cli on CPU " in result.output, result.output
    assert not (cli_runs / matrix.name).exists()


def test_the_hardware_class_is_the_gpus_names_else_the_cpus_model_and_cores():
    from runner.planning.estimates import hardware_class, host_hardware

    h200 = [GpuInfo(index=i, name="NVIDIA H200", memory_gib=140, free_gib=140) for i in range(2)]
    assert host_hardware(Host(gpus=h200, cpu="Xeon", cpu_count=64)) == "2 x NVIDIA H200"
    assert hardware_class(["NVIDIA H200", "NVIDIA H200"], "AMD EPYC", 128) == "2 x NVIDIA H200"  # the CPU is not it
    assert hardware_class([], "Test CPU @ 2.0GHz", 2) == "CPU Test CPU @ 2.0GHz (2 cores)" == host_hardware(TWO_CORES)
    assert hardware_class([], "Test CPU @ 2.0GHz", 4) != host_hardware(TWO_CORES)


def test_a_cell_resumed_over_two_sittings_is_not_a_measurement(tmp_path, cpu_host):
    from runner.store import Placement, RunStore

    matrix, runs = load_matrix(write(tmp_path)), tmp_path / "runs"
    tiny = "tiny/llamacpp/q8_0/baseline"
    _record_run(runs, "resumed", matrix, tiny, cpu=TWO_CORES.cpu, cores=2, accuracy_s=3.0, latency_s=5.0, eval_s=2.0)
    store = RunStore(runs / "resumed")
    result = store.read_cell(matrix.cell(tiny))
    store.write_cell(result.model_copy(update={"placements": [*result.placements, Placement(node="elsewhere")]}))
    cell = next(c for c in make_plan(matrix, host=TWO_CORES, runs_dir=runs).cells if c.id == tiny)
    assert cell.generation_basis == "table"
    assert cell.evaluation_measured == 4  # its verdicts' times still count: each answer was judged once


# -- the run's hours: cells at once on a node's GPUs, verdicts reused ------------------------------------------
#: three models whose weights need 1, 2 and 4 GPUs; the 1-GPU one with a second quantization and techniques
EIGHT_GPUS_MATRIX = """
name = "eight"
benchmark = "starter"
backend = "local"
[tasks]
limit = 60
[settings]
latency_tasks = 2
sweep = [1]
sweep_requests = 4
{settings}
[models.small]
name = "Small"
[models.small.quantizations.q8_0]
kind = "hf"
repo = "org/Small-GGUF"
revision = "main"
filename = "small-q8_0.gguf"
disk_gib = 8
gpu_memory_gib = 12
[models.small.quantizations.q4_k_m]
kind = "hf"
repo = "org/Small-GGUF"
revision = "main"
filename = "small-q4_k_m.gguf"
disk_gib = 4.5
gpu_memory_gib = 8
[models.mid]
name = "Mid"
[models.mid.quantizations.q8_0]
kind = "hf"
repo = "org/Mid-GGUF"
revision = "main"
filename = "mid-q8_0.gguf"
disk_gib = 36
gpu_memory_gib = 60
gpus = 2
[models.big]
name = "Big"
[models.big.quantizations.q8_0]
kind = "hf"
repo = "org/Big-GGUF"
revision = "main"
filename = "big-q8_0.gguf"
disk_gib = 75
gpu_memory_gib = 120
gpus = 4
[[cells]]
model = "small"
runtime = "llamacpp"
quantization = "q8_0"
variants = [
  {{ label = "ngram-spec", techniques = {{ spec = "ngram" }} }},
  {{ label = "kv-q8_0", techniques = {{ kv_cache = "q8_0" }} }},
  {{ label = "no-prefix-cache", techniques = {{ prefix_cache = "off" }} }},
]
[[cells]]
model = "small"
runtime = "llamacpp"
quantization = "q4_k_m"
[[cells]]
model = "mid"
runtime = "llamacpp"
quantization = "q8_0"
variants = [{{ label = "ngram-spec", techniques = {{ spec = "ngram" }} }}]
[[cells]]
model = "big"
runtime = "llamacpp"
quantization = "q8_0"
variants = [{{ label = "ngram-spec", techniques = {{ spec = "ngram" }} }}]
"""
EIGHT_H100 = Host(gpus=[GpuInfo(index=i, name="NVIDIA H100 80GB HBM3", memory_gib=80, free_gib=80) for i in range(8)],
                  ram_gib=1024, free_disk_gib=4000, cpu="Test CPU @ 2.0GHz", cpu_count=16)
SMALL, TECHNIQUES = "small/llamacpp/q8_0/baseline", ("ngram-spec", "kv-q8_0", "no-prefix-cache")


def eight(tmp_path, settings: str = ""):
    path = tmp_path / f"eight{re.sub(r'[^a-z0-9]+', '-', settings)}.toml"
    path.write_text(EIGHT_GPUS_MATRIX.format(settings=settings), encoding="utf-8")
    return load_matrix(path)


def _overlap(a, b) -> bool:
    return a is not None and b is not None and a.start_h < b.end_h - 1e-9 and b.start_h < a.end_h - 1e-9


def _check_schedule(plan, matrix, gpus: int) -> None:
    """What the executors guarantee, read off the simulated schedule: each cell on as many GPUs as it asks,
    never one another running cell holds; its phases as long as the plan's; a timed phase alone on its node."""
    planned = {c.id: c for c in plan.cells}
    placed = plan.schedule.cells
    assert [c.id for c in placed] == [c.id for c in matrix.cells]
    for c in placed:
        p = planned[c.id]
        assert len(c.gpu_ids) == matrix.request(p.cell).gpus and set(c.gpu_ids) <= set(range(gpus))
        assert c.timed.end_h - c.timed.start_h == pytest.approx(p.timed_hours)
        untimed = p.generation_hours - p.load_hours - p.timed_hours
        assert c.untimed.end_h - c.untimed.start_h == pytest.approx(untimed)
        assert c.start_h + p.load_hours <= c.untimed.start_h + 1e-9 and c.untimed.end_h <= c.timed.start_h + 1e-9
        assert c.end_h >= c.timed.end_h - 1e-9 and c.end_h >= c.start_h + p.evaluation_hours - 1e-9
    for a in placed:
        for b in placed:
            if a is b or a.node != b.node:
                continue
            if a.start_h < b.end_h - 1e-9 and b.start_h < a.end_h - 1e-9:
                assert not set(a.gpu_ids) & set(b.gpu_ids), (a.id, b.id)
            # nothing else generates on the node while a cell is timed
            assert not _overlap(a.timed, b.timed) and not _overlap(a.timed, b.untimed), (a.id, b.id)


def test_cells_run_at_once_on_eight_gpus_faster_than_one_after_another_their_timed_phases_alone(tmp_path, cpu_host):
    matrix = eight(tmp_path)
    plan = make_plan(matrix, host=EIGHT_H100)
    assert plan.complete
    schedule = plan.schedule
    sequential = sum(max(c.generation_hours, c.evaluation_hours) for c in plan.cells)
    assert schedule.sequential_h == pytest.approx(sequential)
    assert plan.run.hours < 0.8 * sequential and schedule.at_once >= 4
    _check_schedule(plan, matrix, 8)
    # the timed phases cannot overlap: the run lasts at least all of them end to end
    assert plan.run.hours >= sum(c.timed_hours for c in plan.cells)
    assert all(0 < c.timed_hours < c.generation_hours - c.load_hours for c in plan.cells)
    line = next(line for line in plan.lines() if line.startswith("whole run: "))
    assert line.startswith(f"whole run: {_duration(plan.run.hours)} with up to {schedule.at_once} cells at once "
                           f"(sequential: {_duration(sequential)}; cells in matrix order on this host's 8 GPUs")
    assert "timed phases (latency, sweep) alone on their node" in line

    # one cell at a time: the sequential sum, whatever the GPUs
    one = make_plan(eight(tmp_path, "parallel_cells = 1"), host=EIGHT_H100)
    assert one.schedule.at_once == 1
    assert one.run.hours == pytest.approx(sequential) == pytest.approx(one.schedule.sequential_h)
    assert "whole run: " in "\n".join(one.lines()) and "(settings.parallel_cells = 1)" in one.run.basis
    # two at once: between the two, and never more than two running
    two = make_plan(eight(tmp_path, "parallel_cells = 2"), host=EIGHT_H100)
    assert two.schedule.at_once == 2 and plan.run.hours <= two.run.hours < sequential
    for a in two.schedule.cells:
        assert sum(b.start_h <= a.start_h < b.end_h - 1e-9 for b in two.schedule.cells) <= 2
    _check_schedule(two, eight(tmp_path, "parallel_cells = 2"), 8)


def test_a_host_without_gpus_runs_one_cell_at_a_time_unless_told_and_the_judging_pool_can_end_the_run(tmp_path):
    demo = load_matrix("matrices/demo.toml")
    plan = make_plan(demo, host=TWO_CORES)
    assert plan.schedule.at_once == 1 and plan.run.hours == pytest.approx(plan.schedule.sequential_h)
    assert plan.run.basis.startswith("one cell at a time: this host has no GPU")
    three = make_plan(demo.model_copy(update={"settings": demo.settings.model_copy(update={"parallel_cells": 3})}),
                      host=TWO_CORES)
    assert three.schedule.at_once == 3 and three.run.hours < plan.run.hours
    assert three.run.basis.startswith("3 cells at once on this host's CPU")
    # judging slower than generating: the shared evaluation pool, not the cells' schedule, ends the run
    from runner.planning.schedule import ScheduleItem, ScheduleNode, simulate

    items = [ScheduleItem(id=str(i), gpus=0, load_h=0.1, untimed_h=0.5, timed_h=0.2, eval_h=2.0) for i in range(3)]
    schedule = simulate(items, [ScheduleNode(name="this host", gpus=0, cells_at_once=3)])
    assert schedule.makespan_h == pytest.approx(2.0) and schedule.hours == pytest.approx(6.0)
    assert [c.timed.start_h for c in schedule.cells] == pytest.approx([0.6, 0.8, 1.0])  # one after another


class _Cluster:
    """An executor as the plan sees a Ray cluster's: its verdicts per cell and its nodes."""

    name, where = "ray", "on the Ray cluster"

    def __init__(self, nodes):
        self._nodes = nodes

    def plan(self, matrix, backend):
        from runner.planning.doctor import CellPlan

        return [CellPlan(cell=c, runnable=True, device="gpu") for c in matrix.cells]

    def nodes(self):
        if isinstance(self._nodes, Exception):
            raise self._nodes
        return self._nodes


def test_on_a_cluster_cells_spread_over_its_nodes_each_node_timing_one_cell_at_a_time(tmp_path):
    from runner.executors.ray_cluster import NodeInfo

    matrix = eight(tmp_path)
    nodes = [NodeInfo(node_id=f"n{i}", host=f"10.0.0.{i}", cpus=32, gpus=4) for i in (1, 2)]
    plan = make_plan(matrix, executor=_Cluster(nodes))
    schedule = plan.schedule
    assert {c.node for c in schedule.cells} == {"10.0.0.1", "10.0.0.2"}
    _check_schedule(plan, matrix, 4)
    # each node has its own timing lock: two nodes time their cells at the same moment
    from runner.planning.schedule import ScheduleItem, ScheduleNode, simulate

    items = [ScheduleItem(id=str(i), gpus=4, load_h=0.1, untimed_h=0.5, timed_h=0.2, eval_h=0.0) for i in range(2)]
    apart = simulate(items, [ScheduleNode(name=n.host, gpus=4) for n in nodes])
    assert [(c.node, c.timed.start_h) for c in apart.cells] == [("10.0.0.1", pytest.approx(0.6)),
                                                                 ("10.0.0.2", pytest.approx(0.6))]
    assert plan.run.hours < schedule.sequential_h
    assert "cells over the cluster's 2 nodes (8 GPUs)" in plan.run.basis
    # a cluster whose nodes cannot be listed: one cell at a time, said so
    unknown = make_plan(matrix, executor=_Cluster(RuntimeError("no cluster")))
    assert unknown.schedule.at_once == 1 and unknown.run.hours == pytest.approx(unknown.schedule.sequential_h)
    assert unknown.run.basis.startswith("one cell at a time: the cluster's nodes could not be listed")


def test_technique_cells_judge_only_what_their_baseline_did_not_answer_alike(tmp_path, cpu_host):
    from runner.planning.estimates import TECHNIQUE_REUSE

    matrix = eight(tmp_path)
    plan = make_plan(matrix, host=EIGHT_H100)
    by = {c.id: c for c in plan.cells}
    base = by[SMALL]
    for label in TECHNIQUES:  # the same tasks as their baseline, the baseline's verdicts for most
        cell = by[f"small/llamacpp/q8_0/{label}"]
        assert (cell.baseline, cell.reuse) == (SMALL, TECHNIQUE_REUSE)
        assert cell.evaluation_hours == pytest.approx(base.evaluation_hours * (1 - TECHNIQUE_REUSE))
    assert by["mid/llamacpp/q8_0/ngram-spec"].baseline == "mid/llamacpp/q8_0/baseline"
    # baselines and other weights judge every answer
    for cell_id in (SMALL, "small/llamacpp/q4_k_m/baseline", "mid/llamacpp/q8_0/baseline"):
        assert (by[cell_id].baseline, by[cell_id].reuse) == (None, 0.0)
    assert by["small/llamacpp/q4_k_m/baseline"].evaluation_hours == pytest.approx(base.evaluation_hours)
    assert plan.evaluation.hours == pytest.approx(sum(c.evaluation_hours for c in plan.cells))
    assert ("reuse: their baseline's verdict taken for 60% of the 3 technique cells' answers of small (assumed: "
            "runner/planning/estimates.py TECHNIQUE_REUSE; no earlier run here of small measured it); 60% of the 1 "
            "technique cells' answers of mid (assumed") in plan.evaluation.basis
    saved = sum(c.evaluation_reused_hours for c in plan.cells)
    assert saved > 0 and f"{_duration(saved)} less" in plan.evaluation.basis

    # settings.reuse_verdicts = false: every answer judged
    fresh = make_plan(eight(tmp_path, "reuse_verdicts = false"), host=EIGHT_H100)
    full = {c.id: c for c in fresh.cells}
    assert all(c.reuse == 0.0 for c in fresh.cells)
    assert full[f"small/llamacpp/q8_0/{TECHNIQUES[0]}"].evaluation_hours == pytest.approx(base.evaluation_hours)
    assert fresh.evaluation.hours == pytest.approx(plan.evaluation.hours + saved)
    assert "no verdict reused (settings.reuse_verdicts = false)" in fresh.evaluation.basis
    for line in fresh.lines():
        if line.startswith("evaluation: "):
            assert f"evaluation: {_duration(fresh.evaluation.hours)} (" in line


def test_the_reuse_share_is_measured_from_earlier_runs_in_the_runs_folder(tmp_path, cpu_host):
    matrix, runs = eight(tmp_path), tmp_path / "runs"
    common = dict(cpu="Another CPU", cores=64, accuracy_s=1.0, latency_s=1.0, eval_s=3.0)  # any hardware
    n, _ = _record_run(runs, "earlier", matrix, SMALL, **common)
    assert n == 60
    for label, reused in zip(TECHNIQUES, (60, 45, 30)):  # 135 of 180 took the baseline's verdict in that run
        _record_run(runs, "earlier", matrix, f"small/llamacpp/q8_0/{label}", reused=reused,
                    reused_from=f"earlier/{SMALL}", **common)
    # verdicts from another run (a rerun of the same matrix reuses all) say nothing of the techniques
    _record_run(runs, "rerun", matrix, f"small/llamacpp/q8_0/{TECHNIQUES[0]}", reused=60,
                reused_from=f"earlier/small/llamacpp/q8_0/{TECHNIQUES[0]}", **common)
    _record_run(runs, "rerun", matrix, SMALL, reused=60, reused_from=f"earlier/{SMALL}", **common)
    plan = make_plan(matrix, host=EIGHT_H100, runs_dir=runs)
    by = {c.id: c for c in plan.cells}
    share = 135 / 240  # the rerun's technique answers count, none of them reused within it
    assert by[f"small/llamacpp/q8_0/{TECHNIQUES[1]}"].reuse == pytest.approx(share)
    assert by[f"small/llamacpp/q8_0/{TECHNIQUES[1]}"].evaluation_hours == pytest.approx(
        by[SMALL].evaluation_hours * (1 - share))
    assert "reuse: their baseline's verdict taken for 56% of the 3 technique cells' answers of small (measured in " \
           "run earlier, run rerun: 135 of 240 technique answers of small); 60% of the 1 technique cells' answers " \
           "of mid (assumed: " in plan.evaluation.basis
    # another model's share is not this one's: mid's technique keeps the assumed share
    from runner.planning.estimates import TECHNIQUE_REUSE

    assert by["mid/llamacpp/q8_0/ngram-spec"].reuse == TECHNIQUE_REUSE


def test_the_sweeps_rate_points_take_their_requests_over_the_rate_plus_the_last_answer(tmp_path, cpu_host):
    def timed(settings: str, requests: int = 4) -> float:
        path = tmp_path / f"rates{re.sub(r'[^a-z0-9]+', '-', settings)}-{requests}.toml"
        text = EIGHT_GPUS_MATRIX.replace("sweep_requests = 4", f"sweep_requests = {requests}")
        path.write_text(text.format(settings=settings), encoding="utf-8")
        plan = make_plan(load_matrix(path), host=EIGHT_H100)
        return next(c.timed_hours for c in plan.cells if c.id == SMALL) * 3600

    base = timed("")
    # 4 requests at 0.5/s are sent over 8 s, at 0.1/s over 40 s: the difference is the rates' alone
    slow, fast = timed("sweep_rates = [0.1]"), timed("sweep_rates = [0.5]")
    assert slow - fast == pytest.approx(40 - 8, rel=1e-6)
    assert fast - base > 8  # and each point waits for its last answer
    both = timed("sweep_rates = [0.1, 0.5]")
    assert both - base == pytest.approx((slow - base) + (fast - base))
    # a rate far above what the server answers takes as long as the server needs, not 4 / 1000 s
    flood = timed("sweep_rates = [1000]")
    assert flood - base > 4 / 1000 + (fast - base - 8)
    # no sweep requests: no rate point either
    assert timed("sweep_rates = [0.1]", requests=0) == timed("", requests=0) < base
    # the rate search's probes are timed at the rates' median: two probes, two more such points
    median = timed("sweep_rates = [0.1, 0.5, 1000]") - timed("sweep_rates = [0.1, 1000]")
    searched = timed("sweep_rates = [0.1, 0.5, 1000]\nfind_max_rate = 2")
    assert searched - timed("sweep_rates = [0.1, 0.5, 1000]") == pytest.approx(2 * median)


def test_a_run_recorded_before_sweep_rates_existed_still_times_a_matrix_without_them(tmp_path):
    from runner.planning.estimates import timing_key

    matrix = eight(tmp_path)
    cell, models = matrix.cell(SMALL), matrix.resolved()["models"]
    settings = matrix.resolved()["settings"]
    old = {k: v for k, v in settings.items() if k != "sweep_rates"}
    assert timing_key("starter", models, old, cell) == timing_key("starter", models, settings, cell)
    assert timing_key("starter", models, {**settings, "sweep_rates": [1.0]}, cell) != timing_key(
        "starter", models, settings, cell)
