"""The host probe and the per-cell plan: which cells this host can run, and why not."""

from __future__ import annotations

import re

import pytest

from runner.matrix import load_matrix
from runner.planning.doctor import GpuInfo, Host, plan_cells, probe_host
from runner.runtimes.llamacpp import llama_server_path
from tests.conftest import require

MATRIX = """
name = "plan"
[models.llama3-70b]
name = "Llama 3 70B Instruct"
[models.llama3-70b.quantizations.q4_k_m]
kind = "hf"
repo = "org/Llama-3-70B-Instruct-GGUF"
revision = "0123456789abcdef0123456789abcdef01234567"
filename = "llama-3-70b-instruct.Q4_K_M.gguf"
gpu_memory_gib = 44
[models.llama3-70b.quantizations."exl2-6.0"]
kind = "hf"
repo = "org/Llama-3-70B-Instruct-exl2"
revision = "6.0bpw"
gpu_memory_gib = 60
[models.llama3-70b.quantizations."exl2-8.0"]
kind = "hf"
repo = "org/Llama-3-70B-Instruct-exl2"
revision = "8.0bpw"
gpu_memory_gib = 80
gpus = 2
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "path"
path = "{tiny}"
gpu_memory_gib = 1

[[cells]]
model = "llama3-70b"
runtime = "exllama"
quantization = "exl2-6.0"
[[cells]]
model = "llama3-70b"
runtime = "exllama"
quantization = "exl2-8.0"
[[cells]]
model = "llama3-70b"
runtime = "llamacpp"
quantization = "q4_k_m"
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q8_0"
"""


@pytest.fixture
def matrix(tmp_path):
    path, tiny = tmp_path / "plan.toml", tmp_path / "tiny.gguf"
    tiny.write_bytes(b"GGUF")  # a kind = "path" file must exist to plan as runnable
    path.write_text(MATRIX.replace("{tiny}", str(tiny)), encoding="utf-8")
    return load_matrix(path)


def gpu(memory_gib: float, index: int = 0) -> GpuInfo:
    return GpuInfo(index=index, name="NVIDIA H100 80GB HBM3", memory_gib=memory_gib, free_gib=memory_gib)


def verdicts(plans) -> dict[str, str | None]:
    return {p.cell.id: (None if p.runnable else p.reason) for p in plans}


def test_this_host_is_probed_for_real():
    host = probe_host()
    assert host.ram_gib > 1 and host.free_disk_gib > 0
    assert set(host.runtimes) >= {"llamacpp", "exllama"}
    if not host.gpus:  # a CPU machine: NVML says why, and the CUDA-only runtime is refused
        assert "NVIDIA" in host.gpu_note or "nvidia-ml-py" in host.gpu_note
        assert host.runtimes["exllama"].startswith("needs an NVIDIA GPU")
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    assert host.runtimes["llamacpp"] is None
    names = [check.name for check in host.checks()]
    assert names[:5] == ["NVIDIA GPUs", "Docker engine", "memory", "free disk", "Java + JUnit"]


def test_a_cpu_host_runs_small_llamacpp_cells_only(matrix, monkeypatch, tmp_path):
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("RUNNER_LLAMA_SERVER", str(binary))
    host = Host(gpu_note="no NVIDIA driver or GPU", ram_gib=24, docker=None, docker_note="not reachable")
    plans = verdicts(plan_cells(matrix, host))
    assert plans["llama3-70b/exllama/exl2-6.0/baseline"].startswith("runtime exllama runs on NVIDIA GPUs only")
    assert plans["llama3-70b/llamacpp/q4_k_m/baseline"] == ("on the CPU it needs about 44 GiB of memory and this "
                                                           "host has 24 GiB RAM")
    assert plans["tiny/llamacpp/q8_0/baseline"] is None
    assert {p.device for p in plan_cells(matrix, host)} == {"cpu"}


def test_gpu_memory_and_count_decide_on_a_gpu_host_without_gpu_stand_in(matrix, monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_TABBYAPI_DIR", str(tmp_path))
    (tmp_path / "main.py").write_text("")
    one_80 = Host(gpus=[gpu(79.6)], gpu_note="driver 550, CUDA 12.4", ram_gib=512, docker="27.0")
    plans = verdicts(plan_cells(matrix, one_80))
    assert plans["llama3-70b/exllama/exl2-6.0/baseline"] is None
    assert plans["llama3-70b/exllama/exl2-8.0/baseline"] == "needs 2 GPUs (tensor parallel) and this host has 1"
    one_48 = Host(gpus=[gpu(47.5)], ram_gib=512, docker="27.0")
    assert verdicts(plan_cells(matrix, one_48))["llama3-70b/exllama/exl2-6.0/baseline"].startswith(
        "needs 60.0 GiB on each of 1 GPU(s) (gpu_memory_gib = 60 (measured) over 1 GPU(s)) and each NVIDIA H100 "
        '80GB HBM3 here offers 47.5 GiB; no models.llama3-70b.quantizations."exl2-6.0".gpus up to the 1 GPUs here')
    two_48 = Host(gpus=[gpu(47.5), gpu(47.5, 1)], ram_gib=512, docker="27.0")
    assert verdicts(plan_cells(matrix, two_48))["llama3-70b/exllama/exl2-8.0/baseline"] is None


def test_backend_requirements(matrix, monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_LLAMA_SERVER", str(tmp_path / "absent"))
    host = Host(gpus=[gpu(80)], ram_gib=512, docker=None, docker_note="not reachable (connection refused)")
    local = verdicts(plan_cells(matrix, host, backend="local"))
    assert local["tiny/llamacpp/q8_0/baseline"].startswith("llama-server is not built at")
    docker = verdicts(plan_cells(matrix, host, backend="docker"))
    assert docker["tiny/llamacpp/q8_0/baseline"] == ("the docker backend needs the Docker engine, which is not "
                                                     "reachable (connection refused)")


def test_cli_doctor_reports_the_host_and_the_plan(matrix):
    import json

    from click.testing import CliRunner

    from runner.cli import main

    result = CliRunner().invoke(main, ["doctor", str(matrix.path), "--json"])
    report = json.loads(result.stdout)
    # as reproduce --plan: 1 when some cell cannot run
    assert result.exit_code == (0 if all(c["runnable"] for c in report["cells"]) else 1), result.output
    assert report["host"]["ram_gib"] > 1
    plans = {p["cell"]["model"] + "/" + p["cell"]["runtime"] + "/" + p["cell"]["quantization"]: p
             for p in report["cells"]}
    assert len(plans) == 4
    if not report["host"]["gpus"]:
        assert plans["llama3-70b/exllama/exl2-6.0"]["runnable"] is False
        assert "NVIDIA GPUs only" in plans["llama3-70b/exllama/exl2-6.0"]["reason"]
    text = CliRunner().invoke(main, ["doctor"])
    assert text.exit_code == 0 and "NVIDIA GPUs" in text.stdout and "Docker engine" in text.stdout


SIMCOPILOT_2025_MATRIX = """
name = "unscoreable"
benchmark = "simcopilot"
edition = "2025"
[tasks]
programs = ["Image_Filtering", "Credit_Scoring_Fairness", "Timeseries_Clustering"]
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "path"
path = "/models/tiny.gguf"
gpu_memory_gib = 1
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q8_0"
"""


def test_doctor_names_the_unscoreable_programs_with_their_tasks_and_why(simcopilot_2025, tmp_path):
    """The 2025 edition as upstream's archive has it: three of the matrix's programs read a data file
    no copy has. doctor says what the environment check (cached, or taken with --check-environment) found."""
    import json

    from click.testing import CliRunner

    from runner.cli import main
    from runner.evaluation.sandbox import capabilities

    require(capabilities().complete, "a complete local sandbox")
    path = tmp_path / "unscoreable.toml"
    path.write_text(SIMCOPILOT_2025_MATRIX, encoding="utf-8")

    def doctor(*extra: str):
        result = CliRunner().invoke(main, ["doctor", str(path), *extra], env={"COLUMNS": "300"})
        assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
        return result

    # nothing checked yet in this runner home: doctor says so, and how to check now
    [before] = json.loads(doctor("--json").stdout)["data"]
    assert before["edition"] == "2025" and before["unscoreable"] == []
    assert "as cached: 0 of 3 programs checked" in before["scoring"] and "doctor --check-environment" in before["scoring"]

    [taken] = json.loads(doctor("--json", "--check-environment").stdout)["data"]
    found = {u["program"]: u for u in taken["unscoreable"]}
    assert {p: (u["language"], u["tasks"]) for p, u in found.items()} == {
        "Image_Filtering": ("python", 107), "Credit_Scoring_Fairness": ("python", 41),
        "Timeseries_Clustering": ("python", 42)}
    for program, missing in (("Image_Filtering", "alice.avi"), ("Credit_Scoring_Fairness", "bankfullclean.csv"),
                             ("Timeseries_Clustering", "norm_ret_df.csv")):
        assert found[program]["reason"].startswith(f"a data file is missing: the program reads {missing}, not in ")
    assert re.fullmatch(r"the environment check in the (local|docker) sandbox: 3 of 3 programs checked", taken["scoring"])

    # then from the check's cache, in the table as in the JSON (and the run would reuse it)
    [cached] = json.loads(doctor("--json").stdout)["data"]
    assert cached["unscoreable"] == taken["unscoreable"] and "as cached: 3 of 3 programs checked" in cached["scoring"]
    row = " ".join(line.strip("│ ") for line in doctor().stdout.splitlines() if "│" in line)
    assert "unscoreable here: Credit_Scoring_Fairness: 41 tasks (a data file is missing: the program reads " \
           "bankfullclean.csv" in " ".join(row.split())
