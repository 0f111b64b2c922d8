"""GPU memory true to real cards: the capacity table, the KV arithmetic, the paper matrix placed on
eight H100s, refusals that name the key to change, and the launches that say how many GPUs they span."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import UserError
from runner.matrix import load_matrix
from runner.paths import matrices_dir
from runner.planning import gpu_memory
from runner.planning.doctor import GpuInfo, Host, assumed_host, plan_cells
from runner.planning.estimates import UNKNOWN_GPU_GBPS, gpu_bandwidth
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from tests.conftest import require

PAPER = matrices_dir() / "paper.toml"
H100 = 81559 / 1024  # GiB, as NVML reports an H100 80GB
DOCKER_HOST = Host(gpu_note="no NVIDIA driver or GPU", ram_gib=24, free_disk_gib=50, docker="27.0")


def h100s(count: int) -> Host:
    return assumed_host(f"{count}xh100-80gb", DOCKER_HOST)


def reasons(matrix, host: Host) -> dict[str, str | None]:
    return {p.cell.id: p.reason for p in plan_cells(matrix, host)}


# -- the table of kinds -------------------------------------------------------------------------------
def test_each_kind_has_the_memory_nvml_reports_and_a_name_the_estimates_know():
    kinds = {k.key: k for k in gpu_memory.GPU_KINDS}
    assert {key: round(k.memory_gib, 1) for key, k in kinds.items()} == {
        "h100-80gb": 79.6, "h100-pcie-80gb": 79.6, "h200-141gb": 140.4, "a100-80gb": 80.0, "a100-40gb": 40.0,
        "l40s-48gb": 45.0, "rtx4090-24gb": 24.0}
    assert kinds["h100-80gb"].memory_mib == 81559 and kinds["h200-141gb"].memory_mib == 143771
    for kind in kinds.values():  # each names where its total was read, and its bandwidth is in the table
        assert kind.seen and gpu_bandwidth(kind.name)[1] != UNKNOWN_GPU_GBPS, kind
    # the PCIe card is the slower one, the SXM the faster: NVML's names tell them apart
    assert gpu_bandwidth(kinds["h100-pcie-80gb"].name)[1] < gpu_bandwidth(kinds["h100-80gb"].name)[1]


def test_assume_gpus_reads_a_count_and_a_kind_and_refuses_an_unknown_kind_in_one_line():
    assert [(k.key, n) for k, n in map(gpu_memory.parse_assume_gpus, ("8xh100-80gb", "h100-80gb", "A100-80GB x2"))] \
        == [("h100-80gb", 8), ("h100-80gb", 1), ("a100-80gb", 2)]
    with pytest.raises(UserError, match=r"--assume-gpus 8xb200: unknown GPU kind 'b200'; known kinds: h100-80gb "
                                        r"\(NVIDIA H100 80GB HBM3, 79.6 GiB\), "):
        gpu_memory.parse_assume_gpus("8xb200")
    with pytest.raises(UserError, match="at least one GPU"):
        gpu_memory.parse_assume_gpus("0xh100-80gb")
    result = CliRunner().invoke(main, ["reproduce", "--all", "--plan", "--assume-gpus", "8xb200"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert all(k.key in result.output for k in gpu_memory.GPU_KINDS)
    # the help lists every kind the table has
    help_text = " ".join(CliRunner().invoke(main, ["reproduce", "--help"]).output.split())
    assert all(k.key in help_text for k in gpu_memory.GPU_KINDS)


def test_assume_gpus_only_plans():
    result = CliRunner().invoke(main, ["reproduce", "--all", "--assume-gpus", "8xh100-80gb"])
    assert result.exit_code == 2 and "use it with --plan" in result.output, result.output


# -- the arithmetic -----------------------------------------------------------------------------------
def test_kv_cache_bytes_per_token_against_hand_computed_figures():
    # Llama-3-70B: 2 (K, V) x 80 layers x 8 KV heads x 128 x 2 bytes (fp16)
    assert gpu_memory.kv_bytes_per_token(80, 8, 128, 2) == 327_680
    assert gpu_memory.kv_bytes_per_token(56, 8, 128, 2) == 229_376  # Codestral-22B
    matrix = load_matrix(PAPER)
    bf16 = matrix.cell("llama3-70b/vllm/bf16/baseline-tp4")
    memory = gpu_memory.cell_memory(matrix, bf16)
    assert (memory.kv_bytes_per_token, memory.sequences, memory.context) == (327_680, 8, 4096)
    assert memory.kv_gib == 10.0  # 327,680 x 8 x 4,096 bytes = 10 GiB exactly
    # each of 4 GPUs: a quarter of the weights and of the 8 KV heads, plus vLLM's overhead
    assert memory.per_gpu_gib == pytest.approx(131.4 / 4 + 10.0 / 4 + 3.5)
    fp8_kv = gpu_memory.cell_memory(matrix, matrix.cell("llama3-70b/vllm/fp8/kv-fp8"))
    assert fp8_kv.kv_gib == 5.0 and fp8_kv.weights_gib == 67.7 and fp8_kv.weights_from == "weights_gib"
    q8 = gpu_memory.cell_memory(matrix, matrix.cell("llama3-70b/llamacpp/q4_k_m/kv-q8_0"))
    assert q8.kv_gib == pytest.approx(10.0 * 34 / 32 / 2)  # ggml's q8_0: 34 bytes per 32 values
    exl = gpu_memory.cell_memory(matrix, matrix.cell("llama3-70b/exllama/exl2-4.0/kv-q8"))
    assert exl.kv_gib == pytest.approx(10.0 * (1 + 2 / 32) / 2)  # 8 bits and an fp16 scale per 32


def test_vllm_never_splits_a_kv_head():
    matrix = load_matrix(PAPER)
    cell = matrix.cell("llama3-70b/vllm/awq/baseline")
    on_8, on_16 = (gpu_memory.cell_memory(matrix, cell, n) for n in (8, 16))
    assert on_8.kv_share == 1 / 8 and on_16.kv_share == 1 / 8  # 16 GPUs: each of the 8 heads twice


def test_a_measured_gpu_memory_gib_is_trusted_over_the_model(tmp_path):
    text = PAPER.read_text().replace("weights_gib = 67.7\n", "gpu_memory_gib = 60\n", 1)
    (tmp_path / "paper.toml").write_text(text)
    matrix = load_matrix(tmp_path / "paper.toml")
    memory = gpu_memory.cell_memory(matrix, matrix.cell("llama3-70b/vllm/fp8/baseline"))
    assert memory.total_gib == 60 and "(measured)" in memory.basis()


# -- the paper matrix on eight H100s --------------------------------------------------------------------
def test_every_paper_cell_fits_eight_h100s_with_the_capacity_nvml_reports():
    matrix = load_matrix(PAPER)
    assert len(matrix.cells) == 54
    assert reasons(matrix, h100s(8)) == {c.id: None for c in matrix.cells}
    # the few that need more than one card, and on how many
    several = {c.id.rsplit("/", 1)[0]: matrix.request(c).gpus for c in matrix.cells if matrix.request(c).gpus > 1}
    assert several == {"llama3-70b/vllm/bf16": 4, "llama3-70b/vllm/fp8": 2, "llama3-70b/llamacpp/q8_0": 2}
    # and each of those would not fit on half as many
    for c in matrix.cells:
        if matrix.request(c).gpus > 1:
            fewer = gpu_memory.cell_memory(matrix, c.model_copy(update={"techniques": {}}), matrix.request(c).gpus // 2)
            assert fewer.per_gpu_gib > gpu_memory.usable_gib(c.runtime, H100), c.id


def test_a_cell_that_does_not_fit_is_refused_in_one_line_naming_the_key_to_change(tmp_path):
    text = PAPER.read_text()
    # the matrix as it was: the 70B's FP8 on one GPU, its BF16 on two, its Q8_0 on one
    text = text.replace("weights_gib = 67.7\ndisk_gib = 131.4\ngpus = 2\n", "weights_gib = 67.7\ndisk_gib = 131.4\n")
    text = text.replace("disk_gib = 131.4\ngpus = 4\n", "disk_gib = 131.4\ngpus = 2\n")
    text = text.replace('tensor_parallel = "4"', 'tensor_parallel = "2"')
    text = text.replace("disk_gib = 69.8\ngpus = 2\n", "disk_gib = 69.8\n")
    (tmp_path / "paper.toml").write_text(text)
    matrix = load_matrix(tmp_path / "paper.toml")
    found = reasons(matrix, h100s(8))
    refused = {cell: reason for cell, reason in found.items() if reason}
    assert sorted(refused) == ["llama3-70b/llamacpp/q8_0/baseline", "llama3-70b/vllm/bf16/baseline-tp4",
                               *(f"llama3-70b/vllm/fp8/{v}" for v in
                                 ("baseline", "eager", "kv-fp8", "ngram-spec", "no-prefix-cache"))]
    assert all("\n" not in reason for reason in refused.values())
    fp8 = refused["llama3-70b/vllm/fp8/baseline"]
    assert fp8.startswith("needs 81.2 GiB on each of 1 GPU(s) (weights 67.7 GiB (weights_gib) + KV 10.0 GiB")
    assert "each NVIDIA H100 80GB HBM3 here offers 71.7 GiB (--gpu-memory-utilization 0.9 of 79.6 GiB)" in fp8
    assert fp8.endswith("; set models.llama3-70b.quantizations.fp8.gpus = 2 (then 42.4 GiB on each)")
    assert refused["llama3-70b/vllm/bf16/baseline-tp4"].endswith(
        "set models.llama3-70b.quantizations.bf16.gpus and its cells' techniques.tensor_parallel = 4 "
        "(then 38.9 GiB on each)")
    q8 = refused["llama3-70b/llamacpp/q8_0/baseline"]  # llama.cpp may use the whole card
    assert "here offers 79.6 GiB;" in q8 and q8.endswith("set models.llama3-70b.quantizations.q8_0.gpus = 2 "
                                                           "(then 41.9 GiB on each)")
    # on H200s the same matrix fits as written
    assert not any(reasons(matrix, assumed_host("8xh200-141gb", DOCKER_HOST)).values())


def test_a_cell_no_count_of_these_gpus_holds_says_so():
    matrix = load_matrix(PAPER)
    found = reasons(matrix, assumed_host("2xrtx4090-24gb", DOCKER_HOST))
    assert found["llama3-70b/exllama/exl2-8.0/baseline"].endswith(
        'no models.llama3-70b.quantizations."exl2-8.0".gpus up to the 2 GPUs here holds it: use larger GPUs '
        "(--assume-gpus to plan for them), a smaller quantization, fewer sequences (techniques.parallel) or a "
        "quantized KV cache")
    assert found["codestral-22b/exllama/exl2-8.0/baseline-simcopilot"].endswith(
        'set models.codestral-22b.quantizations."exl2-8.0".gpus = 2 (then 15.8 GiB on each)')
    assert found["llama3-70b/vllm/bf16/baseline-tp4"] == "needs 4 GPUs (tensor parallel) and this host has 2"


def test_a_cpu_host_weighs_weights_and_kv_cache_against_its_ram():
    matrix = load_matrix(PAPER)
    big = Host(gpu_note="none", ram_gib=24, docker="27.0")
    reason = reasons(matrix, big)["codestral-22b/llamacpp/q4_k_m/baseline-simcopilot"]
    assert reason == "on the CPU it needs about 19 GiB of memory and this host has 24 GiB RAM"  # 12.4 + 7.0


# -- the launches --------------------------------------------------------------------------------------
MODEL = ModelFiles(path=Path("/models/m"), served_name="m", context_length=4096)


def test_vllm_says_its_memory_share_on_a_gpu_and_spans_every_gpu_it_was_given():
    vllm = get_runtime("vllm")
    argv = vllm.server_spec(Cell(model="m", runtime="vllm", quantization="fp8"), MODEL, gpus=2).argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    one = vllm.server_spec(Cell(model="m", runtime="vllm", quantization="awq"), MODEL, gpus=1).argv
    assert one[one.index("--tensor-parallel-size") + 1] == "1"
    cpu = vllm.server_spec(Cell(model="m", runtime="vllm", quantization="bf16"), MODEL, gpus=0).argv
    assert "--gpu-memory-utilization" not in cpu  # the CPU build sizes its cache by VLLM_CPU_KVCACHE_SPACE


def test_llamacpp_says_its_layer_split_on_several_gpus():
    llamacpp = get_runtime("llamacpp")
    cell = Cell(model="m", runtime="llamacpp", quantization="q8_0")
    two = llamacpp.server_spec(cell, MODEL.model_copy(update={"path": Path("/models/m.gguf")}), gpus=2).argv
    assert two[two.index("--split-mode") + 1] == "layer"
    for gpus in (0, 1):
        assert "--split-mode" not in llamacpp.server_spec(cell, MODEL, gpus=gpus).argv


def test_the_pinned_llama_server_parses_the_split_of_a_two_gpu_launch(tmp_path):
    """The real llama-server's own argument parsing of the whole two-GPU launch (a CPU build accepts the
    GPU flags): it gets as far as loading the (missing) model."""
    import subprocess

    from runner.runtimes.llamacpp import llama_server_path

    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    cell = Cell(model="m", runtime="llamacpp", quantization="q8_0")
    model = MODEL.model_copy(update={"path": tmp_path / "absent.gguf"})
    argv = get_runtime("llamacpp").server_spec(cell, model, threads=1, gpus=2).bind("127.0.0.1", 0).argv
    assert argv[argv.index("--split-mode") + 1] == "layer"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "loading model" in output and "invalid argument" not in output, output[-2000:]


def test_exllama_autosplits_over_its_gpus():
    from runner.runtimes.exllama import tabbyapi_config

    config = tabbyapi_config(Cell(model="m", runtime="exllama", quantization="exl2-8.0"), MODEL)
    assert config["model"]["gpu_split_auto"] is True and config["model"]["tensor_parallel"] is False
