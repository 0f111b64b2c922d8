"""llama.cpp's ``llama-server``: GGUF weights, on the CPU here and on CUDA in its container.

Technique switches and the flags they become (checked against ``llama-server --help`` of the
pinned build, llama-cpp-python 0.3.36):

- ``spec=ngram``: ``--spec-type ngram-simple`` (prompt lookup: drafts continue an n-gram already
  in the context, which code infill repeats often); ``spec=draft``: ``--spec-type draft-simple
  -md <draft.gguf>``; ``spec=none``: no speculation (the default).
- ``kv_cache=f16|bf16|q8_0|q4_0``: ``-ctk`` and ``-ctv``. A quantized V cache needs flash
  attention, so it turns ``-fa on`` unless ``flash_attn=off`` asks otherwise (refused).
- ``prefix_cache=off``: ``--no-cache-prompt --cache-ram 0`` and ``cache_prompt: false`` in every
  request; ``on`` (the default) keeps the server's slot and host-RAM prompt caches.
- cache states (``runner.running.run``): ``cold`` erases every slot (``POST /slots/{id}?action=erase``,
  which the pinned server only routes when started with ``--slot-save-path``, although erase
  writes nothing there) and sends the timed request with ``cache_prompt: false``, because the
  host-RAM prompt cache (``--cache-ram``) has no erase and would otherwise restore a similar
  prompt; the reused count is ``timings.cache_n``.
- ``flash_attn=on|off|auto``: ``-fa``; ``parallel=<n>``: ``-np n`` slots (default 8, the
  default accuracy-phase concurrency), each with the model's full context length.
- on several GPUs (the weights' ``gpus``): ``--split-mode layer``, the layers spread over them.
- ``batch_invariant`` (vLLM's ``VLLM_BATCH_INVARIANT``): refused, the pinned server has no counterpart
  (``BATCH_INVARIANT_NONE``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import httpx

from runner.errors import UserError
from runner.infra.lifetime import run_tied
from runner.paths import PACKAGE_DIR, cache_dir
from runner.prompts import spells_word_boundaries
from runner.records import Cell, ServerTimings
from runner.runtimes import register_runtime
from runner.runtimes.base import ModelFiles, Runtime, ServerSpec, timings_from

log = logging.getLogger(__name__)

#: the llama-cpp-python release whose vendored llama.cpp tree is built (scripts/build-llama-server.sh)
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
DEFAULT_SLOTS = 8
_BUILD_SCRIPT = PACKAGE_DIR.parent / "scripts" / "build-llama-server.sh"

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_0", "q4_k_m", "q4_k_s",
              "q4_0", "iq4_xs", "q3_k_m", "q3_k_s", "q2_k")
_QUANTIZED_KV = ("q8_0", "q4_0")
#: The pinned llama.cpp (llama-cpp-python 0.3.36's vendor/llama.cpp, ggml commit 0c1e570, `llama-server
#: --version`: "0.5.0-dev (build 1, commit 0c1e570)") has no batch-invariant or deterministic switch: its
#: options (common/arg.cpp, `llama-server --help`) name none. The candidates are not one: --kv-unified
#: (arg.cpp:1724) shares one KV buffer across slots, -b/-ub (arg.cpp:1669, 1676) size the batches,
#: -np 1 (arg.cpp:2544) stops batching altogether; none makes a batched answer equal an unbatched one.
#: Its own docs and tests say so: tools/server/README.md:587 (logits "not guaranteed to be bit-for-bit
#: identical for different batch sizes") and tools/server/tests/unit/test_completion.py:371 ("the result
#: is not deterministic when using other slot than slot 0").
BATCH_INVARIANT_NONE = ("the pinned llama-server (llama-cpp-python 0.3.36, llama.cpp commit 0c1e570) has no "
                        "batch-invariant mode (no such option in its common/arg.cpp or --help); parallel = 1 "
                        "serves one request at a time instead, which stops batching rather than making it invariant")


def llama_server_path() -> Path:
    """Where the ``llama-server`` binary is: ``$RUNNER_LLAMA_SERVER`` or the runner's cache."""
    env = os.environ.get("RUNNER_LLAMA_SERVER")
    if env:
        return Path(env).expanduser()
    return cache_dir() / "llama.cpp" / f"{LLAMA_CPP_PYTHON_VERSION}-cpu" / "bin" / "llama-server"


def ensure_llama_server(log_path: Path | None = None) -> Path:
    """The ``llama-server`` binary, building it first (CPU, several minutes) when missing."""
    binary = llama_server_path()
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    if os.environ.get("RUNNER_LLAMA_SERVER"):
        raise UserError(f"RUNNER_LLAMA_SERVER={binary}: no executable there; unset it to build one "
                        "or point it at a built llama-server")
    if not _BUILD_SCRIPT.is_file():
        raise UserError(f"llama-server is not built and {_BUILD_SCRIPT} is missing; build it with "
                        "scripts/build-llama-server.sh from a checkout, or set RUNNER_LLAMA_SERVER")
    return _build("llama-server", binary, log_path)


def llama_quantize_path() -> Path:
    """``llama-quantize``, beside ``llama-server`` (built from the same source by the same script)."""
    return llama_server_path().parent / "llama-quantize"


def ensure_llama_quantize() -> Path:
    """The ``llama-quantize`` binary, building it first (only that target) when missing."""
    binary = llama_quantize_path()
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    if os.environ.get("RUNNER_LLAMA_SERVER"):
        raise UserError(f"RUNNER_LLAMA_SERVER={llama_server_path()}: no llama-quantize beside it at {binary}; "
                        "build it from the same llama.cpp source (scripts/build-llama-server.sh DEST)")
    dest = binary.parent.parent
    return _build("llama-quantize", binary, dest.parent / f"build-{dest.name}-quantize.log")


def _build(name: str, binary: Path, log_path: Path | None) -> Path:
    """Run the build script into ``binary``'s tree (it makes every binary the runner uses)."""
    import fcntl

    dest = binary.parent.parent
    log_path = log_path or dest.parent / f"build-{dest.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # one build per tree across processes: a second runner (or test) sharing the cache waits for the
    # first and takes its binary, instead of compiling the same sources again beside it
    with open(dest.parent / f".build-{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
        return _build_locked(name, binary, dest, log_path)


def _build_locked(name: str, binary: Path, dest: Path, log_path: Path) -> Path:
    log.info("building %s into %s (minutes; log: %s)", name, dest, log_path)
    with open(log_path, "w", encoding="utf-8") as fh:
        # tied: a runner killed mid-build takes cmake, make and the compilers with it
        done = run_tied(["bash", str(_BUILD_SCRIPT), str(dest)], stdout=fh, stderr=subprocess.STDOUT,
                        env={**os.environ, "LLAMA_CPP_PYTHON_VERSION": LLAMA_CPP_PYTHON_VERSION,
                             "PYTHON": sys.executable})
    if done.returncode != 0 or not binary.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        raise UserError(f"building {name} failed (exit {done.returncode}; log {log_path}): "
                        + " | ".join(tail) + "; it needs cmake, g++ and make")
    return binary


@register_runtime
class LlamaCpp(Runtime):
    """``llama-server``, OpenAI-compatible, reporting its own timings per request."""

    name: ClassVar[str] = "llamacpp"
    quantizations: ClassVar[tuple[str, ...]] = GGUF_TYPES
    techniques: ClassVar[dict[str, tuple[str, ...]]] = {
        "spec": ("none", "ngram", "draft"),
        "kv_cache": ("f16", "bf16", "q8_0", "q4_0"),
        "prefix_cache": ("on", "off"),
        "flash_attn": ("on", "off", "auto"),
        "parallel": ("<n>",),
    }
    refused_techniques: ClassVar[dict[str, str]] = {"batch_invariant": BATCH_INVARIANT_NONE}
    model_format: ClassVar[str] = "gguf"

    def validate(self, cell: Cell) -> None:
        """Refuse what this build cannot serve, including a quantized V cache without flash attention."""
        super().validate(cell)
        if cell.techniques.get("kv_cache") in _QUANTIZED_KV and cell.techniques.get("flash_attn") == "off":
            raise UserError(f"cell {cell.id}: llama.cpp needs flash attention for a quantized V cache "
                            f"(kv_cache={cell.techniques['kv_cache']}); drop flash_attn=off")

    def server_spec(self, cell: Cell, model: ModelFiles, *, threads: int | None = None, gpus: int = 0) -> ServerSpec:
        """``llama-server`` on ``model.path`` with the cell's switches as flags."""
        self.validate(cell)
        t = cell.techniques
        slots = int(t.get("parallel", DEFAULT_SLOTS))
        argv = [str(llama_server_path()), "--model", str(model.path), "--alias", model.served_name,
                "--host", "{host}", "--port", "{port}",
                "--ctx-size", str(model.context_length * slots), "--parallel", str(slots),
                # every layer on the GPU when the build has one; the CPU build ignores it. --fit off:
                # a model that does not fit must fail, not silently shrink its context
                "--n-gpu-layers", "all", "--fit", "off",
                # the model's own chat template (Jinja), as the other runtimes apply it
                "--jinja", "--metrics", "--no-webui", "--log-timestamps",
                # only so that POST /slots/{id}?action=erase is routed (cold cache state); erase
                # writes nothing, save/restore are never called; the model's folder exists everywhere
                "--slot-save-path", str(model.path.parent)]
        if threads:
            argv += ["--threads", str(threads), "--threads-batch", str(threads)]
        if gpus > 1:  # its layers over every GPU it was given (llama.cpp's default, said)
            argv += ["--split-mode", "layer"]
        kv = t.get("kv_cache")
        if kv:
            argv += ["--cache-type-k", kv, "--cache-type-v", kv]
        flash = t.get("flash_attn") or ("on" if kv in _QUANTIZED_KV else None)
        if flash:
            argv += ["--flash-attn", flash]
        if t.get("prefix_cache") == "off":
            argv += ["--no-cache-prompt", "--cache-ram", "0"]
        spec = t.get("spec", "none")
        mounts = [model.path]
        if spec == "ngram":
            argv += ["--spec-type", "ngram-simple"]
        elif spec == "draft":
            if model.draft_path is None:
                raise UserError(f"cell {cell.id}: spec=draft needs a draft model; set the model's "
                                "`draft` in the matrix")
            argv += ["--spec-type", "draft-simple", "--model-draft", str(model.draft_path),
                     "--n-gpu-layers-draft", "all"]
            mounts.append(model.draft_path)
        files: dict[Path, str] = {}
        if model.chat_template is not None:
            # the runner's template for a model whose GGUF carries none, in place of llama.cpp's
            # silent fallback (ChatML); --jinja is already on (runner.prompts.chat_templates)
            template_file = model.chat_template.server_file()
            argv += ["--chat-template-file", str(template_file)]
            files[template_file] = model.chat_template.text
        if spells_word_boundaries(cell.prompt_style, model.chat_template):
            # the prompt spells the space after each special token (Mistral's format); llama.cpp's
            # SentencePiece tokenizer would add one of its own after every special token
            argv += ["--override-kv", "tokenizer.ggml.add_space_prefix=bool:false"]
        return ServerSpec(runtime=self.name, argv=argv, health_path="/health",
                          mounts=mounts, image_service="llamacpp", files=files)

    def local_problem(self) -> str | None:
        """Why ``llama-server`` cannot start here, or None."""
        binary = llama_server_path()
        if binary.is_file() and os.access(binary, os.X_OK):
            return None
        return f"llama-server is not built at {binary} (`runner models prepare` builds it)"

    def request_extras(self, cell: Cell) -> dict[str, Any]:
        """The prompt cache as the cell asks. No ``timings_per_token``: the last chunk carries the
        request's timings anyway, and timings in every chunk cost the server time per token
        (bench/client_overhead.py)."""
        return {"cache_prompt": cell.techniques.get("prefix_cache", "on") != "off"}

    cache_reset: ClassVar[str | None] = ("every slot erased (POST /slots/{id}?action=erase) and the request sent "
                                         "with cache_prompt=false (the host-RAM prompt cache has no erase)")

    async def reset_cache(self, http: httpx.AsyncClient, base_url: str) -> None:
        """Erase every slot's cached prompt (``GET /slots`` lists them)."""
        response = await http.get(f"{base_url}/slots")
        response.raise_for_status()
        for slot in response.json():
            erased = await http.post(f"{base_url}/slots/{int(slot['id'])}", params={"action": "erase"})
            erased.raise_for_status()

    def cold_extras(self, cell: Cell) -> dict[str, Any]:
        """No prefix reuse for this request, not even from the host-RAM prompt cache."""
        return {"cache_prompt": False}

    def parse_cached_tokens(self, chunk: dict[str, Any]) -> int | None:
        """``timings.cache_n``: prompt tokens taken from the slot's cache."""
        timings = chunk.get("timings")
        cached = timings.get("cache_n") if isinstance(timings, dict) else None
        return int(cached) if isinstance(cached, (int, float)) else super().parse_cached_tokens(chunk)

    async def count_chat(self, http: httpx.AsyncClient, base_url: str, messages: list[dict]) -> int | None:
        """``POST /apply-template`` (the prompt the server would build, without generating), then
        ``/tokenize`` of it, its special tokens parsed as the completion request parses them."""
        response = await http.post(f"{base_url}/apply-template", json={"messages": messages})
        response.raise_for_status()
        return len(await self.tokenize(http, base_url, response.json()["prompt"]))

    def parse_timings(self, chunk: dict[str, Any]) -> ServerTimings | None:
        """llama.cpp's ``timings``: ``predicted_ms`` covers tokens 2..n, ``prompt_n`` excludes ``cache_n``."""
        return timings_from(chunk.get("timings"))

    async def server_version(self, http: httpx.AsyncClient, base_url: str) -> str | None:
        """``b<build>-<commit>`` from ``/props`` (the same string as each chunk's ``system_fingerprint``)."""
        try:
            response = await http.get(f"{base_url}/props")
            response.raise_for_status()
            return response.json().get("build_info")
        except (httpx.HTTPError, ValueError):
            return None
