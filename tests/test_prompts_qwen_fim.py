"""The ``qwen-fim`` prompt style: Qwen2.5-Coder's fill-in-the-middle markers, each one token of the
CPU default model's vocabulary (checked in its GGUF and by a real llama-server's tokenizer)."""

from __future__ import annotations

import asyncio

import httpx

from runner import prompts
from runner.benchmarks import load_benchmark
from runner.records import Mode

MARKERS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")


def starter(mode: Mode):
    return next(t for t in load_benchmark("starter").available() if t.mode == mode and t.language.value == "python")


def test_infill_prompt_is_prefix_suffix_middle_and_ends_at_the_models_own_end():
    task = starter(Mode.infill)
    prompt = prompts.render(task, "qwen-fim")
    assert prompt.kind == "completion"
    assert prompt.text == f"<|fim_prefix|>{task.before}\n<|fim_suffix|>\n{task.after}<|fim_middle|>"
    first_after = next(line for line in task.after.split("\n") if line.strip())
    # the middle ends with an end-of-generation token, or where the model starts writing the suffix again
    assert prompt.stop == ("<|endoftext|>", "\n" + first_after)


def test_completion_prompt_shows_no_suffix_and_stops_at_the_next_definition():
    task = starter(Mode.completion)
    prompt = prompts.render(task, "qwen-fim")
    assert prompt.text == f"<|fim_prefix|>{task.before}\n<|fim_suffix|><|fim_middle|>"
    assert "\ndef " in prompt.stop and len(prompt.stop) <= 4  # vLLM takes at most four


def test_each_marker_is_one_control_token_of_the_gguf_vocabulary():
    from gguf import GGUFReader

    from tests.llama_server import qwen_gguf

    reader = GGUFReader(str(qwen_gguf()))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    for marker in MARKERS:
        ids = [i for i, text in enumerate(tokens) if text == marker]
        assert len(ids) == 1, marker
        assert types[ids[0]] == 3, marker  # CONTROL: a special token, never spelled out of pieces


def test_a_real_server_reads_each_marker_of_a_rendered_prompt_as_its_single_id(tmp_path):
    from tests.llama_server import qwen_gguf, running_llama

    prompt = prompts.render(starter(Mode.infill), "qwen-fim")
    with running_llama(tmp_path / "server.log", model="qwen2.5-coder-0.5b", gguf=qwen_gguf()) as (runtime, _, server, _f):
        async def ids():
            async with httpx.AsyncClient(timeout=120) as http:
                return ([await runtime.tokenize(http, server.base_url, m) for m in MARKERS],
                        await runtime.tokenize(http, server.base_url, prompt.text))
        markers, whole = asyncio.run(ids())
    assert [len(m) for m in markers] == [1, 1, 1]
    for (marker_id,) in markers:
        assert whole.count(marker_id) == 1
    assert whole[0] == markers[0][0]
