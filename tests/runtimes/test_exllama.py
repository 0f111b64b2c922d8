"""ExLlamaV2 via TabbyAPI needs CUDA, so here only its launch, its config and how it reads what
TabbyAPI reports (answered by a stand-in for TabbyAPI's HTTP API) are tested."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml

from runner.errors import UserError
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles

RUNTIME = get_runtime("exllama")
MODEL = ModelFiles(path=Path("/models/llama3-70b-exl2-6.0"), served_name="llama3-70b", context_length=4096,
                   draft_path=Path("/models/llama3-8b-exl2-6.0"))


def cell(**techniques: str) -> Cell:
    return Cell(model="llama3-70b", runtime="exllama", quantization="exl2-6.0", techniques=techniques)


def config_of(c: Cell, model: ModelFiles = MODEL, port: int = 5123) -> tuple[list[str], dict]:
    spec = RUNTIME.server_spec(c, model).bind("127.0.0.1", port)
    ((path, text),) = spec.files.items()
    assert spec.argv[-2:] == ["--config", str(path)] and spec.argv[1].endswith("main.py")
    return spec.argv, yaml.safe_load(text)


def test_baseline_config_without_gpu():
    _, config = config_of(cell())
    assert config["network"] == {"host": "127.0.0.1", "port": 5123, "disable_auth": True, "api_servers": ["OAI"]}
    model = config["model"]
    assert (model["model_dir"], model["model_name"], model["backend"]) == ("/models", "llama3-70b-exl2-6.0", "exllamav2")
    assert model["max_seq_len"] == 4096 and model["cache_mode"] == "FP16"
    assert model["max_batch_size"] == 8 and model["cache_size"] == 8 * 4096
    assert config["sampling"] == {"override_preset": None}
    assert "draft_model" not in config


def test_technique_switches_in_config_without_gpu():
    _, config = config_of(cell(kv_cache="q4", spec="draft", parallel="3"),
                          MODEL.model_copy(update={"context_length": 1000}))
    assert config["model"]["cache_mode"] == "Q4"
    assert config["model"]["max_batch_size"] == 3 and config["model"]["cache_size"] == 3072  # multiple of 256
    assert config["draft_model"] == {"draft_model_dir": "/models", "draft_model_name": "llama3-8b-exl2-6.0",
                                     "draft_cache_mode": "Q4"}


def test_refusals_without_gpu():
    with pytest.raises(UserError, match="does not serve quantization 'q4_k_m'"):
        RUNTIME.validate(Cell(model="m", runtime="exllama", quantization="q4_k_m"))
    with pytest.raises(UserError, match=r"technique spec='ngram' is not offered by exllama; use one of none, draft"):
        RUNTIME.validate(cell(spec="ngram"))
    with pytest.raises(UserError, match="has no technique 'prefix_cache'"):
        RUNTIME.validate(cell(prefix_cache="off"))
    with pytest.raises(UserError, match="spec=draft needs a draft model"):
        config_of(cell(spec="draft"), MODEL.model_copy(update={"draft_path": None}))


def test_usage_timings_without_gpu():
    chunk = {"choices": [], "usage": {"prompt_tokens": 812, "completion_tokens": 57, "prompt_time": 0.13,
                                      "completion_time": 1.52, "total_time": 1.65}}
    timings = RUNTIME.parse_timings(chunk)
    assert (timings.prompt_n, timings.predicted_n) == (812, 57)
    assert timings.prompt_ms == pytest.approx(130.0) and timings.predicted_ms == pytest.approx(1520.0)
    assert RUNTIME.parse_timings({"choices": [{"text": "x"}]}) is None


def test_local_problem_names_the_missing_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_TABBYAPI_DIR", str(tmp_path))
    assert f"not installed at {tmp_path}" in RUNTIME.local_problem()
    (tmp_path / "main.py").write_text("")
    assert RUNTIME.local_problem() is None
    assert RUNTIME.requires_gpu and RUNTIME.metrics_endpoint is None


def model_card(max_batch_size: int) -> dict:
    """TabbyAPI's ``GET /v1/model`` at the pinned commit (ModelCard, its ModelCardParameters)."""
    return {"id": "llama3-70b-exl2-6.0", "object": "model", "created": 0, "owned_by": "tabbyAPI",
            "parameters": {"max_seq_len": 4096, "max_batch_size": max_batch_size, "cache_size": 32768,
                           "cache_mode": "FP16", "chunk_size": 2048}}


def batching_of(c: Cell, answer: httpx.Response):
    async def ask():
        transport = httpx.MockTransport(lambda request: answer if request.url.path == "/v1/model"
                                        else httpx.Response(404))
        async with httpx.AsyncClient(transport=transport) as http:
            return await RUNTIME.batching(http, "http://tabby", c)
    return asyncio.run(ask())


def test_batching_is_what_tabbyapi_reports_tabbyapi_standin():
    # paged mode (flash-attn there): the configured slots
    paged = batching_of(cell(), httpx.Response(200, json=model_card(8)))
    assert (paged.batched, paged.slots, paged.label) == (True, 8, None)
    # compatibility mode (no flash-attn, or a pre-Ampere GPU): TabbyAPI sets max_batch_size to 1
    compat = batching_of(cell(), httpx.Response(200, json=model_card(1)))
    assert (compat.batched, compat.slots, compat.label) == (False, 1, "unbatched (no flash-attn)")
    # one slot asked for: unbatched by the cell's own choice, not for want of flash-attn
    assert batching_of(cell(parallel="1"), httpx.Response(200, json=model_card(1))).label == "unbatched (parallel=1)"
    # a server that does not say leaves the record unknown, never guessed
    assert batching_of(cell(), httpx.Response(404)) is None
    assert batching_of(cell(), httpx.Response(200, json={"id": "m", "parameters": None})) is None
