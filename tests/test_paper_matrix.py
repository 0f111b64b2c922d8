"""matrices/paper.toml: loads with the matrix schema and covers the paper's design."""

from __future__ import annotations

import re
from collections import Counter

from runner.matrix import load_matrix
from runner.paths import matrices_dir

PAPER = matrices_dir() / "paper.toml"


def test_the_paper_matrix_loads_and_covers_every_model_runtime_and_format():
    matrix = load_matrix(PAPER)
    assert matrix.backend == "docker" and matrix.benchmark == "simcopilot"
    formats = {(c.model, c.runtime, c.quantization) for c in matrix.cells}
    for model in ("llama3-70b", "codestral-22b"):
        for runtime, quants in {"vllm": ("bf16", "fp8", "awq", "gptq"), "llamacpp": ("q8_0", "q5_k_m", "q4_k_m"),
                                "exllama": ("exl2-8.0", "exl2-6.0", "exl2-4.0")}.items():
            for quant in quants:
                assert (model, runtime, quant) in formats
    # every technique on top of a baseline of the same weights
    techniques = Counter((c.model, c.runtime, tuple(sorted(c.techniques.items()))) for c in matrix.cells)
    for model in ("llama3-70b", "codestral-22b"):
        for switch in (("prefix_cache", "off"), ("kv_cache", "fp8"), ("spec", "ngram"), ("eager", "on")):
            assert techniques[(model, "vllm", (switch,))] >= 1, (model, switch)
        for switch in (("prefix_cache", "off"), ("kv_cache", "q8_0"), ("spec", "ngram")):
            assert techniques[(model, "llamacpp", (switch,))] >= 1, (model, switch)
        assert techniques[(model, "exllama", (("kv_cache", "q8"),))] >= 1


def test_codestral_runs_both_prompts_and_the_70b_bf16_four_gpus():
    matrix = load_matrix(PAPER)
    codestral = [c for c in matrix.cells if c.model == "codestral-22b"]
    assert Counter(c.prompt_style for c in codestral) == {"codestral-fim": len(codestral) // 2,
                                                          "simcopilot": len(codestral) // 2}
    assert {c.prompt_style for c in matrix.cells if c.model == "llama3-70b"} == {"simcopilot"}
    (bf16,) = [c for c in matrix.cells if c.id == "llama3-70b/vllm/bf16/baseline-tp4"]
    assert bf16.techniques == {"tensor_parallel": "4"} and matrix.source(bf16).gpus == 4


def test_every_weight_source_is_pinned_and_states_its_gpu_memory():
    from runner.gpu_memory import cell_memory

    matrix = load_matrix(PAPER)
    for cell in matrix.cells:
        source = matrix.source(cell)
        # the need is computed from the weights' size and the model's architecture, not written by hand
        memory = cell_memory(matrix, cell)
        assert source.kind == "hf" and source.gpu_memory_gib is None and memory.kv_gib, cell.id
        assert memory.weights_gib and memory.per_gpu_gib, cell.id
        # a commit id, or a named branch; never an unnamed default
        assert re.fullmatch(r"[0-9a-f]{40}", source.revision) or source.revision in ("main",) \
            or re.fullmatch(r"\d\.\dbpw", source.revision), (cell.id, source.revision)
        if cell.runtime == "llamacpp":
            assert source.filename.endswith(".gguf") and cell.quantization.upper() in source.filename.upper()
