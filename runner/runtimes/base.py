"""What every runtime provides: turning a cell into a server launch, and knowing its API.

A runtime is stateless: ``validate`` refuses what it cannot serve (plan time), ``server_spec``
builds the launch, and the ``async`` helpers read what the running server reports about itself
(token ids, per-request timings, Prometheus metrics, version). The client (``runner.measuring.client``)
calls these with its own ``httpx.AsyncClient`` so that one connection pool serves a whole cell.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field, ValidationError

from runner.prompts.chat_templates import ChatTemplate
from runner.records import Cell, ServerQuantization, ServerTimings

log = logging.getLogger(__name__)


class ModelFiles(BaseModel):
    """The prepared files a cell serves: a GGUF file, a Hugging Face folder or an EXL2 folder."""

    path: Path  # file (GGUF) or folder (HF / EXL2)
    served_name: str  # the name the server answers to in the OpenAI ``model`` field
    context_length: int = 4096
    draft_path: Path | None = None  # draft model for draft-model speculative decoding
    tokenizer_path: Path | None = None
    #: the shipped chat template the server applies to chat requests (None: the model's own)
    chat_template: ChatTemplate | None = None


#: llama.cpp's gguf-split names: ``<stem>-00001-of-00003.gguf``; llama.cpp loads the rest from beside the first
SPLIT_GGUF = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<parts>\d{5})\.gguf$")


def split_parts(filename: str) -> list[str]:
    """Every part of a split GGUF named by its first part (``X-00001-of-00003.gguf``), else ``[filename]``."""
    found = SPLIT_GGUF.match(filename)
    if not found or int(found["part"]) != 1:
        return [filename]
    parts = int(found["parts"])
    return [f"{found['stem']}-{n:05d}-of-{found['parts']}.gguf" for n in range(1, parts + 1)]


def split_first(filename: str) -> bool:
    """Whether ``filename`` is the first part of a split GGUF (whose other parts must lie beside it)."""
    return len(split_parts(Path(filename).name)) > 1


class ServerSpec(BaseModel):
    """What to run for one cell's server: the runtime's part of a launch, a value any backend and any
    executor can carry. Where it listens is not in it: the program's arguments, ``env`` values, and
    the paths and contents of ``files`` hold the literal placeholders ``{host}`` and ``{port}``, which
    the backend fills with ``bind`` (it picks the port; 127.0.0.1 for a local process, 0.0.0.0 inside
    a container). Equal specs serve identically, so an equal spec may reuse a running server."""

    runtime: str
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    health_path: str = "/health"
    mounts: list[Path] = Field(default_factory=list)  # host paths the server reads (read-only)
    image_service: str | None = None  # compose.yaml service whose image runs this runtime
    #: files the backend must write before launch, path -> content (e.g. TabbyAPI's config.yml);
    #: paths are absolute on the host, and the backend mounts their folder for a container
    files: dict[Path, str] = Field(default_factory=dict)

    def bind(self, host: str, port: int) -> "ServerSpec":
        """This spec listening on ``host``:``port`` (fills every ``{host}`` and ``{port}`` placeholder)."""
        fill = lambda text: text.replace("{host}", host).replace("{port}", str(port))  # noqa: E731
        return self.model_copy(update={
            "argv": [fill(a) for a in self.argv],
            "env": {k: fill(v) for k, v in self.env.items()},
            "files": {Path(fill(str(p))): fill(c) for p, c in self.files.items()},
        })


class Batching(BaseModel):
    """Whether the running server serves concurrent requests together, as it reports about itself."""

    batched: bool
    slots: int | None = None  # sequences it runs at once, by its own count
    label: str | None = None  # the report's words for a server that does not batch, e.g. "unbatched (no flash-attn)"


def parse_prometheus(text: str) -> dict[str, float]:
    """Flatten Prometheus exposition text to ``{'name{label="v",...}': value}`` (labels sorted)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return values


class GpuSwitch(BaseModel):
    """A technique switch of a cell that only a GPU build of its runtime serves, and why."""

    key: str  # the technique, e.g. "batch_invariant"
    value: str
    why: str  # the evidence, in one clause: what the runtime's CPU build lacks


class Runtime(ABC):
    """One inference server. Subclasses register with ``@register_runtime`` in ``runner.runtimes``."""

    name: ClassVar[str]
    #: technique switch -> allowed values; anything else is refused at plan time. The single
    #: value ``"<n>"`` means any positive integer (e.g. ``parallel``).
    techniques: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: technique switch -> why this runtime refuses it (a technique another runtime offers and this one
    #: has no counterpart for; refused in one line, naming the evidence)
    refused_techniques: ClassVar[dict[str, str]] = {}
    #: quantization formats this runtime can serve
    quantizations: ClassVar[tuple[str, ...]] = ()
    #: the model format ``runner.serving.models.prepare`` must hand over: "gguf" (one file),
    #: "hf" (a Hugging Face folder) or "exl2" (an EXL2 folder)
    model_format: ClassVar[str] = "gguf"
    #: True when the server only runs on an NVIDIA GPU (no CPU build exists)
    requires_gpu: ClassVar[bool] = False
    #: OpenAI-compatible paths the client posts to
    chat_endpoint: ClassVar[str] = "/v1/chat/completions"
    completion_endpoint: ClassVar[str] = "/v1/completions"
    tokenize_endpoint: ClassVar[str] = "/tokenize"
    #: a cheap GET the server answers on a kept-alive connection (the client opens its connection with it)
    health_endpoint: ClassVar[str] = "/health"
    metrics_endpoint: ClassVar[str | None] = "/metrics"

    def needs_gpu(self, cell: Cell) -> bool:
        """Whether ``cell`` can only be served on an NVIDIA GPU (the runtime's, or its weights' format)."""
        return self.requires_gpu

    def gpu_switch(self, cell: Cell) -> GpuSwitch | None:
        """The technique switch of ``cell`` that only a GPU build of this runtime serves, or None (the default)."""
        return None

    def cpu_build(self, backend: str) -> str | None:
        """Why this runtime's server on ``backend`` runs without a GPU whatever the host has (a CPU-only
        build), or None (the default: it uses the GPUs it is given)."""
        return None

    def validate(self, cell: Cell) -> None:
        """Raise ``UserError`` for a quantization or technique switch this runtime does not offer."""
        from runner.errors import UserError

        if self.quantizations and cell.quantization not in self.quantizations:
            raise UserError(
                f"cell {cell.id}: runtime {self.name} does not serve quantization "
                f"{cell.quantization!r}; use one of {', '.join(self.quantizations)}"
            )
        for key, value in cell.techniques.items():
            allowed = self.techniques.get(key)
            if allowed is None and key in self.refused_techniques:
                raise UserError(f"cell {cell.id}: technique {key}={value!r} is not offered by {self.name}: "
                                f"{self.refused_techniques[key]}")
            if allowed is None:
                raise UserError(
                    f"cell {cell.id}: runtime {self.name} has no technique {key!r}; "
                    f"it offers {', '.join(sorted(self.techniques)) or 'none'}"
                )
            if value not in allowed and not (allowed == ("<n>",) and value.isdigit() and int(value) > 0):
                raise UserError(
                    f"cell {cell.id}: technique {key}={value!r} is not offered by {self.name}; "
                    f"use one of {', '.join(allowed)}"
                )

    @abstractmethod
    def server_spec(self, cell: Cell, model: ModelFiles, *, threads: int | None = None, gpus: int = 0) -> ServerSpec:
        """What to run for ``cell``'s server (validate first): ``threads`` CPU threads for a CPU server,
        on ``gpus`` GPUs (0: the CPU build), as the executor placed it; the port is the backend's."""

    def local_problem(self) -> str | None:
        """Why this host cannot start the server as a local process (missing binary...), or None."""
        return None

    # -- the running server's API ---------------------------------------------------------------
    def request_extras(self, cell: Cell) -> dict[str, Any]:
        """Fields added to every completion request of ``cell`` (e.g. llama.cpp ``cache_prompt``)."""
        return {}

    async def tokenize(self, http: httpx.AsyncClient, base_url: str, text: str) -> list[int]:
        """The token ids the server makes of ``text`` (llama.cpp-style ``POST /tokenize``)."""
        response = await http.post(f"{base_url}{self.tokenize_endpoint}", json={"content": text})
        response.raise_for_status()
        return [int(t) for t in response.json()["tokens"]]

    async def detokenize(self, http: httpx.AsyncClient, base_url: str, tokens: list[int]) -> str:
        """The text of ``tokens`` (llama.cpp-style ``POST /detokenize``)."""
        response = await http.post(f"{base_url}/detokenize", json={"tokens": tokens})
        response.raise_for_status()
        return response.json()["content"]

    async def count_chat(self, http: httpx.AsyncClient, base_url: str, messages: list[dict]) -> int | None:
        """The tokens ``messages`` take once the served model's chat template formats them (the
        generation prompt included), or None where the server cannot say (the default)."""
        return None

    def tokens(self, http: httpx.AsyncClient, base_url: str) -> "ServerTokens":
        """The served model's tokenizer through the running server (``runner.prompts.ServerTokens``)."""
        return ServerTokens(self, http, base_url)

    def parse_timings(self, chunk: dict[str, Any]) -> ServerTimings | None:
        """The server's own timings carried by one response chunk, or None (default: none reported)."""
        return None

    def parse_cached_tokens(self, chunk: dict[str, Any]) -> int | None:
        """Prompt tokens the server reused from its cache, if this chunk says (OpenAI ``usage`` details)."""
        usage = chunk.get("usage")
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return int(cached) if isinstance(cached, (int, float)) else None

    # -- cache states ---------------------------------------------------------------------------------
    #: how ``reset_cache`` leaves the server without a reusable prefix (said in the report);
    #: None: this runtime offers no way, and its cells have no ``cold`` samples
    cache_reset: ClassVar[str | None] = None

    async def reset_cache(self, http: httpx.AsyncClient, base_url: str) -> None:
        """Drop every reusable prompt prefix the server holds (raise ``httpx.HTTPError`` on failure)."""
        raise NotImplementedError(f"{self.name} offers no cache reset")

    def cold_extras(self, cell: Cell) -> dict[str, Any]:
        """Fields added to a ``cold`` request, beyond ``request_extras`` (default: none)."""
        return {}

    async def scrape_metrics(self, http: httpx.AsyncClient, base_url: str) -> dict[str, float]:
        """The server's Prometheus metrics, flattened; empty when the server serves none."""
        if self.metrics_endpoint is None:
            return {}
        try:
            response = await http.get(f"{base_url}{self.metrics_endpoint}")
        except httpx.HTTPError as exc:
            log.warning("%s: cannot read %s: %s", self.name, self.metrics_endpoint, exc)
            return {}
        if response.status_code != 200:
            return {}
        return parse_prometheus(response.text)

    async def server_version(self, http: httpx.AsyncClient, base_url: str) -> str | None:
        """The server's build or version string, or None when it does not say."""
        return None

    async def batching(self, http: httpx.AsyncClient, base_url: str, cell: Cell) -> Batching | None:
        """Whether the running server batches ``cell``'s concurrent requests; None where it always
        does as launched (the default: vLLM, llama.cpp's slots) or cannot say."""
        return None

    def server_quantization(self, log: str) -> ServerQuantization | None:
        """The quantization method and kernels the server reported in its output ``log``, or None
        where this runtime reports none (the default)."""
        return None


def timings_from(payload: Any) -> ServerTimings | None:
    """A ``ServerTimings`` from a llama.cpp-style ``timings`` object, or None if absent or malformed."""
    if not isinstance(payload, dict):
        return None
    try:
        return ServerTimings.model_validate(payload)
    except ValidationError:
        return None


class ServerTokens:
    """The served model's tokenizer, asked of one running server (what prompt truncation counts with)."""

    def __init__(self, runtime: Runtime, http: httpx.AsyncClient, base_url: str) -> None:
        self.runtime, self.http, self.base_url = runtime, http, base_url

    async def encode(self, text: str) -> list[int]:
        return await self.runtime.tokenize(self.http, self.base_url, text)

    async def decode(self, tokens: list[int]) -> str:
        return await self.runtime.detokenize(self.http, self.base_url, tokens)

    async def count_chat(self, messages: list[dict]) -> int | None:
        return await self.runtime.count_chat(self.http, self.base_url, messages)
