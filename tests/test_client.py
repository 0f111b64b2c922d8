"""The measuring client against a real llama-server: timing invariants, usage, determinism, failures."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from runner import prompts
from runner.benchmarks import load_benchmark
from runner.measuring import client
from runner.records import Mode, Outcome
from tests.llama_server import running_llama

pytestmark = pytest.mark.slow
PARAMS = client.SamplingParams(max_tokens=24)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    with running_llama(tmp_path_factory.mktemp("llama") / "server.log") as served:
        yield served


@pytest.fixture(scope="module")
def task():
    bench = load_benchmark("starter")
    # the shortest prompt keeps prompt processing on one CPU thread quick
    return min((t for t in bench.available() if t.mode == Mode.completion), key=lambda t: len(t.before))


def measure(llama, prompt, params=PARAMS, timeout_s=120.0, base_url=None):
    runtime, cell, server, files = llama

    async def go():
        async with httpx.AsyncClient(timeout=120) as http:
            return await client.measure(http, base_url or server.base_url, runtime, cell, "t", prompt, params,
                                        model=files.served_name, timeout_s=timeout_s)
    return asyncio.run(go())


def test_timings_add_up_and_token_counts_are_the_servers(llama, task):
    sample = measure(llama, prompts.render(task, "instruct", chat=False))
    assert sample.outcome is None and sample.error is None
    assert sample.raw_text and sample.finish_reason in ("length", "stop")
    assert 0 < sample.ttft_s <= sample.e2e_s
    # the gaps run from the first token to the last; e2e adds only the closing chunks
    assert abs(sum(sample.itl_s) - (sample.e2e_s - sample.ttft_s)) < 0.05 + 0.02 * sample.e2e_s
    timings = sample.server_timings
    assert sample.completion_tokens == timings.predicted_n and 1 < sample.completion_tokens <= 24
    assert sample.prompt_tokens == timings.prompt_n + (timings.cache_n or 0)
    assert sample.tpot_s == pytest.approx((sample.e2e_s - sample.ttft_s) / (sample.completion_tokens - 1))
    # the server's own prompt time excludes HTTP and queueing: never more than the client's TTFT
    assert timings.prompt_ms / 1000 <= sample.ttft_s
    assert sample.system_fingerprint.startswith("b")


def test_the_same_request_twice_gives_the_same_text(llama, task):
    prompt = prompts.render(task, "codellama-fim")
    first, second = measure(llama, prompt), measure(llama, prompt)
    assert first.raw_text and first.raw_text == second.raw_text
    assert first.completion_tokens == second.completion_tokens


def test_ignore_eos_generates_exactly_max_tokens(llama, task):
    params = client.SamplingParams(max_tokens=12, ignore_eos=True)
    sample = measure(llama, prompts.render(task, "instruct", chat=False).model_copy(update={"stop": ()}), params)
    assert sample.completion_tokens == 12 and sample.finish_reason == "length"


def test_a_refused_connection_is_an_error_sample(llama, task):
    from runner.backends.base import free_port

    sample = measure(llama, prompts.render(task, "codellama-fim"), base_url=f"http://127.0.0.1:{free_port()}")
    assert sample.outcome == Outcome.error and "ConnectError" in sample.error
    assert sample.prompt_sha256 == prompts.render(task, "codellama-fim").sha256 and sample.finished_at


def test_a_timeout_is_an_error_sample_that_says_so(llama, task):
    sample = measure(llama, prompts.render(task, "instruct", chat=False), timeout_s=0.05)
    assert sample.outcome == Outcome.error and sample.error == "timeout: no complete answer within 0.05s"


def test_a_chat_prompt_reaches_the_chat_endpoint(llama, task):
    sample = measure(llama, prompts.render(task, "instruct"))
    assert sample.outcome is None and sample.completion_tokens >= 1 and sample.prompt_tokens > 100


def test_fit_counts_with_the_servers_tokenizer(llama):
    runtime, cell, server, files = llama
    bench = load_benchmark("starter")
    task = max((t for t in bench.available() if t.mode == Mode.infill), key=lambda t: len(t.before) + len(t.after))

    async def go():
        async with httpx.AsyncClient(timeout=60) as http:
            async def count(text: str) -> int:
                return len(await runtime.tokenize(http, server.base_url, text))
            full = await count(prompts.render(task, "codellama-fim").text)
            prompt = await prompts.fit(task, "codellama-fim", count, context_length=full // 2, max_tokens=50)
            return full, prompt, await count(prompt.text)

    full, prompt, used = asyncio.run(go())
    assert used + 50 <= full // 2
    assert prompt.dropped_after_lines > 0
