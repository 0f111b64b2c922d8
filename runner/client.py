"""The measuring client: one streamed request, timed the same way for every cell and runtime.

Definitions (the report uses the same words):

- **TTFT** (time to first token): from sending the request to the first streamed chunk that
  carries non-empty text.
- **ITL** (inter-token latency): the gaps between consecutive non-empty chunks after the
  first; the first token is not part of it.
- **e2e**: from sending the request to the end of the stream (``[DONE]`` or connection close).
- **TPOT** (time per output token): ``(e2e - TTFT) / (completion_tokens - 1)``.
- token counts: the server's own ``usage`` (``stream_options.include_usage``), never re-counted.

The clock starts with a connection already open: llama-server closes the connection after every
streamed response, so each request would otherwise pay for a new TCP connection (and httpx's
setup of it) inside its TTFT; a kept-alive ``GET /health`` first leaves one open in the pool
(``bench/client_overhead.py`` measures the difference against a minimal client).

Every sampling parameter is sent explicitly (servers' defaults differ: llama.cpp samples at
0.8). A request that fails or times out becomes a ``Sample`` with outcome ``error`` and the
reason; nothing is retried here.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from runner.prompts import Prompt
from runner.records import Cell, Outcome, Sample, ServerTimings, utcnow
from runner.runtimes.base import Runtime


class SamplingParams(BaseModel):
    """The sampling parameters every request carries, identical for every cell."""

    model_config = ConfigDict(frozen=True)

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    max_tokens: int = 200
    #: generate exactly ``max_tokens`` (throughput sweeps only, never the accuracy phase)
    ignore_eos: bool = False


def request_body(cell: Cell, runtime: Runtime, prompt: Prompt, params: SamplingParams, model: str,
                 extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of one streamed request for ``prompt`` (``extras`` last, e.g. a cold request's)."""
    body: dict[str, Any] = {
        "model": model,
        **prompt.payload(),
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "max_tokens": params.max_tokens,
        "n": 1,
        "stop": list(prompt.stop),
    }
    if params.ignore_eos:
        body["ignore_eos"] = True
    body.update(runtime.request_extras(cell))
    body.update(extras or {})
    return body


def endpoint(runtime: Runtime, prompt: Prompt) -> str:
    """The path a prompt is posted to: chat messages or completion text."""
    return runtime.chat_endpoint if prompt.kind == "chat" else runtime.completion_endpoint


def _chunk_text(chunk: dict[str, Any]) -> tuple[str, str | None]:
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    delta = choice.get("delta")
    text = (delta.get("content") or "") if isinstance(delta, dict) else (choice.get("text") or "")
    return text, choice.get("finish_reason")


class StreamResult(BaseModel):
    """What one streamed response said, with the client's clock readings."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: list[float] = []
    server_timings: ServerTimings | None = None
    cached_tokens: int | None = None
    system_fingerprint: str | None = None


async def stream(http: httpx.AsyncClient, base_url: str, runtime: Runtime, cell: Cell, prompt: Prompt,
                 params: SamplingParams, *, model: str, extras: dict[str, Any] | None = None) -> StreamResult:
    """Send one streamed request and time it; raises ``httpx.HTTPError`` or ``ValueError`` on failure."""
    body = request_body(cell, runtime, prompt, params, model, extras)
    result = StreamResult()
    parts: list[str] = []
    await _open_connection(http, base_url, runtime)
    # the server's own figures are read once, from the last chunk that carries them, not per chunk
    with_timings: dict[str, Any] | None = None
    with_usage: dict[str, Any] | None = None
    start = time.perf_counter()
    last: float | None = None
    async with http.stream("POST", f"{base_url}{endpoint(runtime, prompt)}", json=body) as response:
        if response.status_code != 200:
            detail = (await response.aread()).decode("utf-8", "replace")[:300]
            raise ValueError(f"HTTP {response.status_code} from {endpoint(runtime, prompt)}: {detail}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            now = time.perf_counter()
            chunk = json.loads(data)
            if "error" in chunk:
                raise ValueError(f"server error in stream: {json.dumps(chunk['error'])[:300]}")
            text, finish = _chunk_text(chunk)
            if text:
                if last is None:
                    result.ttft_s = now - start
                else:
                    result.itl_s.append(now - last)
                last = now
                parts.append(text)
            if finish:
                result.finish_reason = finish
            if "usage" in chunk:
                with_usage = chunk
            if "timings" in chunk:
                with_timings = chunk
            result.system_fingerprint = chunk.get("system_fingerprint") or result.system_fingerprint
    result.e2e_s = time.perf_counter() - start
    usage = (with_usage or {}).get("usage")
    if isinstance(usage, dict):
        result.prompt_tokens = usage.get("prompt_tokens")
        result.completion_tokens = usage.get("completion_tokens")
    for chunk in (with_usage, with_timings):
        if chunk is not None:
            result.server_timings = runtime.parse_timings(chunk) or result.server_timings
            cached = runtime.parse_cached_tokens(chunk)
            result.cached_tokens = cached if cached is not None else result.cached_tokens
    result.text = "".join(parts)
    return result


async def _open_connection(http: httpx.AsyncClient, base_url: str, runtime: Runtime) -> None:
    """Leave an open, kept-alive connection in ``http``'s pool before a timed request (its failure is
    the timed request's to report)."""
    try:
        await http.get(f"{base_url}{runtime.health_endpoint}")
    except httpx.HTTPError:
        pass


def tpot(e2e_s: float | None, ttft_s: float | None, completion_tokens: int | None) -> float | None:
    """Time per output token after the first: ``(e2e - TTFT) / (completion_tokens - 1)``."""
    if e2e_s is None or ttft_s is None or not completion_tokens or completion_tokens < 2:
        return None
    return (e2e_s - ttft_s) / (completion_tokens - 1)


async def measure(http: httpx.AsyncClient, base_url: str, runtime: Runtime, cell: Cell, task_id: str,
                  prompt: Prompt, params: SamplingParams, *, model: str, phase: str = "accuracy",
                  chat_template_sha256: str | None = None, timeout_s: float | None = None,
                  cache_state: str | None = None, extras: dict[str, Any] | None = None) -> Sample:
    """One timed request as a ``Sample`` (not yet evaluated); a failure is a sample with outcome ``error``.

    ``timeout_s`` bounds the whole request (the client's own timeouts bound each read);
    ``cache_state`` is recorded as told (the caller prepared the server's cache).
    """
    sample = Sample(task_id=task_id, cell_id=cell.id, phase=phase, prompt_style=prompt.style, cache_state=cache_state,
                    prompt_sha256=prompt.sha256,
                    chat_template_sha256=chat_template_sha256 if prompt.kind == "chat" else None)
    try:
        result = await asyncio.wait_for(stream(http, base_url, runtime, cell, prompt, params, model=model,
                                               extras=extras), timeout_s)
    except asyncio.TimeoutError:
        sample.outcome, sample.error = Outcome.error, f"timeout: no complete answer within {timeout_s:g}s"
    except httpx.TimeoutException as exc:
        sample.outcome, sample.error = Outcome.error, f"timeout: {type(exc).__name__} after {_timeout_of(http)}"
    except (httpx.HTTPError, ValueError) as exc:
        sample.outcome, sample.error = Outcome.error, f"{type(exc).__name__}: {exc}"[:500]
    else:
        sample.raw_text = result.text
        sample.finish_reason = result.finish_reason
        sample.prompt_tokens = result.prompt_tokens
        sample.completion_tokens = result.completion_tokens
        sample.ttft_s = result.ttft_s
        sample.e2e_s = result.e2e_s
        sample.itl_s = result.itl_s
        sample.tpot_s = tpot(result.e2e_s, result.ttft_s, result.completion_tokens)
        sample.server_timings = result.server_timings
        sample.cached_tokens = result.cached_tokens
        sample.system_fingerprint = result.system_fingerprint
    sample.finished_at = utcnow()
    return sample


def _timeout_of(http: httpx.AsyncClient) -> str:
    read = http.timeout.read
    return f"{read:.0f}s" if read else "the client's timeout"
