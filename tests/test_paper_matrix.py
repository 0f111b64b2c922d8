"""matrices/paper.toml: loads with the matrix schema and covers the paper's design."""

from __future__ import annotations

import json
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
    from runner.planning.gpu_memory import cell_memory

    matrix = load_matrix(PAPER)
    for cell in matrix.cells:
        source = matrix.source(cell)
        # the need is computed from the weights' size and the model's architecture, not written by hand
        memory = cell_memory(matrix, cell)
        assert source.kind == "hf" and source.gpu_memory_gib is None and memory.kv_gib, cell.id
        assert memory.weights_gib and memory.per_gpu_gib, cell.id
        # every source pinned to a commit, never a branch
        assert re.fullmatch(r"[0-9a-f]{40}", source.revision), (cell.id, source.revision)
        if cell.runtime == "llamacpp":
            assert source.filename.endswith(".gguf") and cell.quantization.upper() in source.filename.upper()


def test_the_paper_lock_matches_its_matrix_and_names_the_page_of_every_entry():
    from runner.serving.lock import load_lock, matrix_problems

    matrix = load_matrix(PAPER)
    lock = load_lock(matrix)
    assert lock is not None and not matrix_problems(matrix, lock)
    assert len(lock.sources) == 20
    for entry in lock.sources:
        assert entry.commit == entry.revision and entry.checked_on == "hub-pages", entry.key
        assert entry.evidence.startswith("https://huggingface.co/"), entry.key
        assert entry.files, entry.key
        for file in entry.files:
            # a file says where its hash was read, and a rounded size is a note, never a size
            assert not file.sha256 or file.evidence, (entry.key, file.path)
            assert file.size is None or not (file.size_note or "").startswith("rounded"), (entry.key, file.path)
    # a split GGUF locks every part; a folder read off pages is completed at its commit on download
    q8 = lock.entry("llama3-70b", "q8_0")
    assert [f.path.rsplit("-", 3)[-3:] for f in q8.files] == [["00001", "of", "00002.gguf"], ["00002", "of", "00002.gguf"]]
    assert q8.complete and not lock.entry("llama3-70b", "bf16").complete


def test_every_paper_cell_dry_runs_runnable_on_eight_h100s_with_its_locked_source(simcopilot):
    from click.testing import CliRunner

    from runner.cli import main

    result = CliRunner().invoke(main, ["reproduce", "--all", "--dry-run", "--json", "--assume-gpus", "8xh100-80gb"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0, [(c["cell"], c["reason"]) for c in lines if not c["runnable"]][:3]
    assert len(lines) == 54 and all(c["runnable"] for c in lines)
    for cell in lines:
        source = cell["source"]
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]) and source["files"], cell["cell"]
        assert cell["argv"] and cell["request"]["max_tokens"] == 200 and cell["request"]["temperature"] == 0.0
        assert cell["launch"]["image"] and cell["launch"]["gpus"] >= 1
