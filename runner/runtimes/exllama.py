"""ExLlamaV2 behind TabbyAPI: EXL2 folders on NVIDIA GPUs only (no CPU build exists).

TabbyAPI's main branch dropped ExLlamaV2 in 2026; the image pins its ``exl2-checkpoint`` branch
(``TABBYAPI_REF``). TabbyAPI is configured by a ``config.yml``: the spec carries it in
``ServerSpec.files`` (written by the backend under ``cache_dir()/tabbyapi/``, a folder a container
backend mounts) and launches ``main.py --config <that file>``.

Technique switches: ``kv_cache=fp16|q8|q6|q4`` -> ``model.cache_mode``; ``spec=draft`` ->
``draft_model`` (TabbyAPI's ExLlamaV2 backend drafts only with a draft model: no n-gram mode);
``parallel=<n>`` -> ``model.max_batch_size`` (default 8) with a cache of ``n`` full contexts.
TabbyAPI has no endpoint that empties ExLlamaV2's page cache (``cache_reset`` is None): its
cells have ``warm`` latency samples and no ``cold`` ones, which the report says.
ExLlamaV2's dynamic generator always reuses cached prompt pages, so there is no prefix-cache
switch to offer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

import httpx
import yaml

from runner.errors import UserError
from runner.paths import cache_dir
from runner.records import Cell, ServerTimings
from runner.runtimes import register_runtime
from runner.runtimes.base import Batching, ModelFiles, Runtime, ServerSpec

#: TabbyAPI's last branch with the ExLlamaV2 backend (the Docker image pins a commit of it)
TABBYAPI_REF = "exl2-checkpoint"
DEFAULT_SLOTS = 8
#: the report's label of a cell whose TabbyAPI fell back to one sequence at a time
UNBATCHED_NO_FLASH_ATTN = "unbatched (no flash-attn)"
_CACHE_MODES = {"fp16": "FP16", "q8": "Q8", "q6": "Q6", "q4": "Q4"}
_EXL2 = re.compile(r"exl2-(\d(\.\d+)?)")


def tabbyapi_dir() -> Path:
    """TabbyAPI's checkout: ``$RUNNER_TABBYAPI_DIR``, else ``/opt/tabbyAPI`` (where the image has it)."""
    return Path(os.environ.get("RUNNER_TABBYAPI_DIR", "/opt/tabbyAPI"))


def tabbyapi_config(cell: Cell, model: ModelFiles) -> dict[str, Any]:
    """TabbyAPI's ``config.yml`` for ``cell``, as a dict (host and port left as ``{host}`` and ``{port}``)."""
    t = cell.techniques
    slots = int(t.get("parallel", DEFAULT_SLOTS))
    # the cache holds `slots` full contexts, rounded up to TabbyAPI's multiple of 256
    cache_size = -(-model.context_length * slots // 256) * 256
    config: dict[str, Any] = {
        # loopback-only locally, and only the published port in a container: no API key needed
        "network": {"host": "{host}", "port": "{port}", "disable_auth": True, "api_servers": ["OAI"]},
        "logging": {"log_prompt": False, "log_generation_params": False, "log_requests": False},
        "model": {
            "model_dir": str(model.path.parent), "model_name": model.path.name, "backend": "exllamav2",
            "max_seq_len": model.context_length, "cache_size": cache_size,
            "cache_mode": _CACHE_MODES[t.get("kv_cache", "fp16")], "max_batch_size": slots,
            "gpu_split_auto": True, "tensor_parallel": False,
        },
        # no sampler preset: every sampling parameter the client sends is used as sent
        "sampling": {"override_preset": None},
    }
    if t.get("spec") == "draft":
        if model.draft_path is None:
            raise UserError(f"cell {cell.id}: spec=draft needs a draft model; set the model's `draft` in the matrix")
        config["draft_model"] = {"draft_model_dir": str(model.draft_path.parent),
                                 "draft_model_name": model.draft_path.name,
                                 "draft_cache_mode": config["model"]["cache_mode"]}
    return config


@register_runtime
class ExLlamaV2(Runtime):
    """ExLlamaV2 through TabbyAPI's OpenAI-compatible server."""

    name: ClassVar[str] = "exllama"
    quantizations: ClassVar[tuple[str, ...]] = ("exl2-8.0", "exl2-6.0", "exl2-5.0", "exl2-4.65", "exl2-4.0",
                                                "exl2-3.5", "exl2-3.0", "exl2-2.5")
    techniques: ClassVar[dict[str, tuple[str, ...]]] = {
        "kv_cache": tuple(_CACHE_MODES), "spec": ("none", "draft"), "parallel": ("<n>",),
    }
    #: exllamav2 v0.3.2 (the image's) has no batch-invariant mode; its dynamic generator says even a seed
    #: "doesn't guarantee perfect determinism" (exllamav2/generator/dynamic.py:581), and TabbyAPI's
    #: config at the image's commit has no such option
    refused_techniques: ClassVar[dict[str, str]] = {
        "batch_invariant": "ExLlamaV2 0.3.2 (TabbyAPI) has no batch-invariant mode; parallel = 1 serves one "
                           "request at a time instead, which stops batching rather than making it invariant",
    }
    model_format: ClassVar[str] = "exl2"
    requires_gpu: ClassVar[bool] = True
    tokenize_endpoint: ClassVar[str] = "/v1/token/encode"
    metrics_endpoint: ClassVar[str | None] = None  # TabbyAPI serves no Prometheus metrics

    def server_spec(self, cell: Cell, model: ModelFiles, *, threads: int | None = None, gpus: int = 0) -> ServerSpec:
        """``main.py --config <file>`` with the cell's ``config.yml`` in ``files``; ``threads`` is unused (GPU)."""
        self.validate(cell)
        # one file per port: two servers of one cell never share a config
        config_path = cache_dir() / "tabbyapi" / f"{cell.slug}-{{port}}.yml"
        # the port as a YAML integer once filled in: the placeholder is written unquoted
        settings = tabbyapi_config(cell, model)
        files: dict[Path, str] = {}
        if model.chat_template is not None:
            # the runner's template, beside the config (one mount): TabbyAPI opens an absolute
            # prompt_template as given (common/templating.py, find_prompt_template)
            template_file = model.chat_template.server_file(config_path.parent)
            settings["model"]["prompt_template"] = str(template_file)
            files[template_file] = model.chat_template.text
        config = yaml.safe_dump(settings, sort_keys=False).replace("'{port}'", "{port}")
        mounts = [model.path] + ([model.draft_path] if cell.techniques.get("spec") == "draft" else [])
        return ServerSpec(runtime=self.name, argv=["python3", str(tabbyapi_dir() / "main.py"), "--config",
                                                   str(config_path)],
                          health_path="/health", mounts=mounts, image_service="exllama",
                          files={config_path: config, **files})

    def local_problem(self) -> str | None:
        """TabbyAPI must be checked out at ``tabbyapi_dir()`` (the GPU check is the planner's)."""
        main = tabbyapi_dir() / "main.py"
        return None if main.is_file() else (f"TabbyAPI ({TABBYAPI_REF}) is not installed at {main.parent}; "
                                            "use the docker backend or set RUNNER_TABBYAPI_DIR")

    async def tokenize(self, http: httpx.AsyncClient, base_url: str, text: str) -> list[int]:
        """TabbyAPI's ``/v1/token/encode`` (BOS added, as for a completion)."""
        response = await http.post(f"{base_url}{self.tokenize_endpoint}", json={"text": text, "add_bos_token": True})
        response.raise_for_status()
        return [int(t) for t in response.json()["tokens"]]

    async def detokenize(self, http: httpx.AsyncClient, base_url: str, tokens: list[int]) -> str:
        """TabbyAPI's ``/v1/token/decode``."""
        response = await http.post(f"{base_url}/v1/token/decode", json={"tokens": tokens})
        response.raise_for_status()
        return response.json()["text"]

    def parse_timings(self, chunk: dict[str, Any]) -> ServerTimings | None:
        """TabbyAPI's extended ``usage``: ``prompt_time`` and ``completion_time`` in seconds (10 ms steps)."""
        usage = chunk.get("usage")
        if not isinstance(usage, dict) or "completion_time" not in usage:
            return None
        return ServerTimings(prompt_n=usage.get("prompt_tokens"), prompt_ms=_ms(usage.get("prompt_time")),
                             predicted_n=usage.get("completion_tokens"), predicted_ms=_ms(usage.get("completion_time")))

    async def batching(self, http: httpx.AsyncClient, base_url: str, cell: Cell) -> Batching | None:
        """TabbyAPI's ``GET /v1/model``: its ``max_batch_size`` is the configured slots in paged mode,
        and 1 in its compatibility mode, which it enters when ExLlamaV2 has no flash-attn (missing,
        ``EXLLAMA_NO_FLASH_ATTN``) or a GPU is older than Ampere; it then serves one sequence at a time."""
        try:
            response = await http.get(f"{base_url}/v1/model")
            response.raise_for_status()
            served = int(response.json()["parameters"]["max_batch_size"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        asked = int(cell.techniques.get("parallel", DEFAULT_SLOTS))
        if served > 1:
            return Batching(batched=True, slots=served)
        return Batching(batched=False, slots=served,
                        label=UNBATCHED_NO_FLASH_ATTN if asked > 1 else "unbatched (parallel=1)")


def _ms(seconds: Any) -> float | None:
    return float(seconds) * 1000 if isinstance(seconds, (int, float)) else None
