"""Every launch of a matrix as its runtime builds it for a GPU host, checked offline by the runtime's own code.

A cell's launch is built exactly as an executor builds it (``Runtime.server_spec`` on the GPUs the
matrix gives the cell), with its weights at a fixed place (``MODEL_ROOT``), so that what is
generated from them (TabbyAPI's ``config.yml``) is the same on every host. Then:

- **vLLM**: ``vllm_check.py`` runs in the vLLM venv (``runner.runtimes.vllm.vllm_python``): vLLM's
  own ``serve`` parser and engine-config validation, on vLLM's CUDA platform with the device facts
  of the target GPU (see that file for what is posed and why).
- **llama.cpp**: the pinned ``llama-server`` parses the cell's arguments (the CPU build registers
  the same options as the CUDA build, common/arg.cpp; GPU options only warn) and is seen to reach
  model loading ("loading model '...'"), where a model file that does not exist stops it.
- **TabbyAPI**: ``scripts/check-tabbyapi-config.py`` loads each generated ``config.yml`` with
  TabbyAPI's own config models at the pinned commit (it cannot run in CI: TabbyAPI is not on PyPI);
  its verdicts are recorded with each config's sha256 (``TABBYAPI_CHECK``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from pydantic import BaseModel, Field

from runner.backends.base import free_port
from runner.matrix import Matrix
from runner.paths import PACKAGE_DIR
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles, ServerSpec

#: where a launch's weights are said to be: a fixed folder, so that generated files do not depend on the host
MODEL_ROOT = Path("/models")
#: the GPU a launch is checked for: an H100 SXM (compute capability 9.0) as its driver reports it
H100 = {"capability": [9, 0], "device_name": "NVIDIA H100 80GB HBM3", "device_memory_gib": 79.6}
VLLM_CHECK_SCRIPT = PACKAGE_DIR / "runtimes" / "vllm_check.py"
#: TabbyAPI's verdicts on the generated configs (scripts/check-tabbyapi-config.py writes it)
TABBYAPI_CHECK = PACKAGE_DIR.parent / "bench" / "results" / "tabbyapi-config-check.json"


class PlannedLaunch(BaseModel):
    """One cell's launch as a GPU host would start it."""

    cell: Cell
    gpus: int
    model: ModelFiles
    spec: ServerSpec


def model_files(matrix: Matrix, cell: Cell, root: Path = MODEL_ROOT) -> ModelFiles:
    """The cell's weights as ``runner.serving.models.prepare`` hands them over, placed under ``root``."""
    fmt = get_runtime(cell.runtime).model_format
    spec = matrix.model(cell)

    def place(model: str, quant: str) -> Path:
        return root / model / (f"{quant}.gguf" if fmt == "gguf" else quant)

    path = place(cell.model, cell.quantization)
    draft = (place(spec.draft.model, spec.draft.quantization)
             if cell.techniques.get("spec") == "draft" and spec.draft is not None else None)
    from runner.prompts import chat_templates

    return ModelFiles(path=path, served_name=cell.model, context_length=spec.context_length, draft_path=draft,
                      tokenizer_path=None if fmt == "gguf" else path,
                      chat_template=chat_templates.load(spec.chat_template) if spec.chat_template else None)


def write_files(spec: ServerSpec, port: int) -> None:
    """Write the files a launch needs beside its arguments (a chat template, TabbyAPI's config), as a backend does."""
    for path, content in spec.bind("127.0.0.1", port).files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def planned_launches(matrix: Matrix, runtime: str | None = None, root: Path = MODEL_ROOT) -> list[PlannedLaunch]:
    """Each cell's (of ``runtime``, or all) launch on the GPUs the matrix gives it, as an executor builds it."""
    launches = []
    for cell in matrix.cells:
        if runtime is not None and cell.runtime != runtime:
            continue
        gpus = matrix.request(cell).gpus
        files = model_files(matrix, cell, root)
        spec = get_runtime(cell.runtime).server_spec(cell, files, gpus=gpus)
        launches.append(PlannedLaunch(cell=cell, gpus=gpus, model=files, spec=spec))
    return launches


# -- vLLM ----------------------------------------------------------------------------------------------
class VllmVerdict(BaseModel):
    """vLLM's answer on one launch: accepted (with what it resolved), or its own error message."""

    id: str
    ok: bool
    error: str | None = None
    traceback: str | None = None
    quantization: str | None = None  # the method vLLM resolved, e.g. auto_awq
    quant_config: str | None = None  # its config class, e.g. AutoAWQConfig
    dtype: str | None = None
    tensor_parallel_size: int | None = None
    max_model_len: int | None = None
    kv_cache_dtype: str | None = None
    worker_cls: str | None = None  # the platform's choice: vllm.v1.worker.gpu_worker.Worker on CUDA
    device: str | None = None
    supported_act_dtypes: list[str] | None = None
    kernels: dict[str, str] = Field(default_factory=dict)  # linear layer -> "<method>: <kernel>"
    log_lines: list[str] = Field(default_factory=list)  # what a server with this config logs about it


def vllm_serve_args(spec: ServerSpec, model_dir: Path | None = None) -> list[str]:
    """The launch's arguments after the program (``serve MODEL ...``), bound to a port, the model
    folder replaced by ``model_dir`` where given (a folder holding the checkpoint's config)."""
    write_files(spec, 8000)  # vLLM's validation opens --chat-template
    argv = spec.bind("0.0.0.0", 8000).argv[1:]
    if model_dir is not None:
        assert argv[0] == "serve", argv
        argv[1] = str(model_dir)
    return argv


def check_vllm(launches: list[tuple[str, list[str], int]], *, python: Path | None = None,
               device: dict | None = None, timeout: float = 900) -> list[VllmVerdict]:
    """vLLM's verdict on each ``(id, serve args, gpus)``, as on ``gpus`` GPUs like ``device`` (default an H100)."""
    from runner.runtimes.vllm import vllm_python

    request = {**(device or H100), "launches": [{"id": i, "argv": a, "gpus": g} for i, a, g in launches]}
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_CONFIGURE_LOGGING": "0"}
    done = subprocess.run([str(python or vllm_python()), str(VLLM_CHECK_SCRIPT)], input=json.dumps(request),
                          capture_output=True, text=True, timeout=timeout, env=env)
    verdicts = [VllmVerdict.model_validate_json(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or len(verdicts) != len(launches):
        raise RuntimeError(f"vllm_check.py exited {done.returncode} with {len(verdicts)} of {len(launches)} "
                           f"verdicts; stderr: {done.stderr[-3000:]}")
    return verdicts


# -- llama.cpp -----------------------------------------------------------------------------------------
class ParseVerdict(BaseModel):
    """``llama-server``'s answer on one launch's arguments."""

    ok: bool  # parsed, and went on to load the model
    error: str | None = None  # the parser's own message
    output_tail: str = ""


#: common/arg.cpp's messages for arguments it refuses (common_params_parse_ex, common_params_parse)
_PARSE_ERRORS = re.compile(r"(error: invalid argument: .*|error while handling argument .*|expected value for argument.*"
                           r"|error: .*)")
#: tools/server/server-context.cpp logs this once the arguments are accepted and the HTTP server is up
_LOADING = re.compile(r"loading model '")
_LOAD_FAILED = re.compile(r"failed to load model|failed to open|No such file")


def check_llama_server(spec: ServerSpec, binary: Path, timeout: float = 60) -> ParseVerdict:
    """Run ``binary`` with the launch's arguments and a model file that does not exist (in a folder that
    does: the parser checks ``--slot-save-path``): the arguments are accepted when it reaches loading
    the model and fails there, not in the parser (common/arg.cpp's messages otherwise)."""
    port = free_port()
    write_files(spec, port)  # the parser reads --chat-template-file
    argv = [str(binary), *spec.bind("127.0.0.1", port).argv[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}  # only the argv counts
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**env, **spec.env},
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return ParseVerdict(ok=False, error=f"still running after {timeout:.0f}s", output_tail=out[-2000:])
    output = done.stdout + done.stderr
    tail = output[-2000:]
    if _LOADING.search(output) and _LOAD_FAILED.search(output):
        return ParseVerdict(ok=True, output_tail=tail)
    found = _PARSE_ERRORS.search(output)
    return ParseVerdict(ok=False, error=found.group(1).strip() if found else f"exit {done.returncode}, no model load",
                        output_tail=tail)


# -- TabbyAPI ------------------------------------------------------------------------------------------
def tabbyapi_config_text(launch: PlannedLaunch) -> str:
    """The ``config.yml`` the launch writes, with the port the check binds (5000, TabbyAPI's default)."""
    bound = launch.spec.bind("0.0.0.0", 5000)
    (content,) = [text for path, text in bound.files.items() if path.suffix == ".yml"]
    return content


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
