"""How much the measuring client adds: its TTFT and e2e beside llama-server's own timings for the
same requests, beside a minimal synchronous client sending the same bodies, and its decode rate
beside llama.cpp generating in-process (``llama-bench``).

    .venv/bin/python bench/client_overhead.py [--requests 8] [--threads 1] [--tokens 128] [--realtime]

Each task's request is sent by both clients in turn (ours: ``runner.measuring.client.measure``, which reads
the response through an ``asyncio.Protocol`` of its own and parses it after the stream; minimal:
``http.client`` reading the event stream line by line, the JSON parsed per chunk), each opening its
connection before its clock starts, with the prompt cache off, so that the pairs differ only in the
client. ``bench/client_speed.py`` measures the client at GPU token rates instead, against a stream
source whose send times are known. Figures (printed, one per line):
- TTFT: client TTFT - server ``prompt_ms``, median ms, for each client, and ours - minimal (paired);
  what remains for the minimal client is the server's work outside ``prompt_ms`` (HTTP, JSON,
  tokenization, slot launch, the first sampling), shown beside a ``/tokenize`` round trip of the
  same prompt (tokenization plus HTTP, no model work);
- e2e: client e2e - server (``prompt_ms`` + ``predicted_ms``), median ms, per client and paired;
- the cost of ``timings_per_token`` (the server's timings in every chunk, which the client sent
  until the final chunk's were found to suffice): the minimal client's e2e gap with and without it;
- decode: client (completion_tokens - 1) / (e2e - TTFT) against ``llama-bench -p 0 -n TOKENS``
  on the same model and threads (tokens/s, and the ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner import prompts  # noqa: E402
from runner.backends.local import LocalBackend  # noqa: E402
from runner.benchmarks import load_benchmark  # noqa: E402
from runner.matrix import load_matrix  # noqa: E402
from runner.measuring import client  # noqa: E402
from runner.paths import matrices_dir  # noqa: E402
from runner.records import Cell  # noqa: E402
from runner.runtimes import get_runtime  # noqa: E402
from runner.runtimes.llamacpp import llama_server_path  # noqa: E402
from runner.serving.models import prepare  # noqa: E402


class Minimal:
    """The least a streaming client can do: an ``http.client`` connection opened before the clock
    starts (llama-server closes it after a stream), the event stream read line by line, the clock
    read at the first chunk with text and at ``[DONE]``."""

    def __init__(self, base_url: str):
        self.url = urlparse(base_url)

    def _connect(self) -> None:
        self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=600)
        self.conn.connect()

    def stream(self, path: str, body: dict) -> tuple[float, float, dict]:
        data = json.dumps(body).encode()
        self._connect()
        start = time.perf_counter()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        ttft, timings = None, {}
        for raw in response:  # the chunked body, one line at a time
            if not raw.startswith(b"data:"):
                continue
            payload = raw[5:].strip()
            if payload == b"[DONE]":
                break
            chunk = json.loads(payload)
            choices = chunk.get("choices") or []
            if ttft is None and choices and choices[0].get("text"):
                ttft = time.perf_counter() - start
            timings = chunk.get("timings") or timings
        response.read()
        return ttft, time.perf_counter() - start, timings

    def tokenize_ms(self, text: str) -> float:
        self._connect()
        start = time.perf_counter()
        self.conn.request("POST", "/tokenize", body=json.dumps({"content": text}).encode(),
                          headers={"Content-Type": "application/json"})
        self.conn.getresponse().read()
        return (time.perf_counter() - start) * 1000


async def requests(base_url: str, runtime, cell: Cell, served: str, count: int, tokens: int):
    bench = load_benchmark("starter")
    tasks = sorted(bench.available(), key=lambda t: len(t.before) + len(t.after))[:count]
    params = client.SamplingParams(max_tokens=tokens, ignore_eos=True)
    samples, minimal, bare, tokenize = [], [], [], []
    fast = Minimal(base_url)
    async with httpx.AsyncClient(timeout=600) as http:
        warm = prompts.render(tasks[0], "instruct", chat=False)
        await client.measure(http, base_url, runtime, cell, "warmup", warm, params, model=served)
        for index, task in enumerate(tasks):  # one at a time: no queueing on either side
            prompt = prompts.render(task, "instruct", chat=False).model_copy(update={"stop": ()})
            body = client.request_body(cell, runtime, prompt, params, served)
            if index % 2:  # every other pair minimal first: neither client always follows the other
                minimal.append(fast.stream(runtime.completion_endpoint, body))
            sample = await client.measure(http, base_url, runtime, cell, task.id, prompt, params, model=served)
            if sample.error:
                raise SystemExit(f"{task.id}: {sample.error}")
            samples.append(sample)
            if not index % 2:
                minimal.append(fast.stream(runtime.completion_endpoint, body))
            bare.append(fast.stream(runtime.completion_endpoint, {**body, "timings_per_token": True}))
            tokenize.append(fast.tokenize_ms(prompt.text))
    return samples, minimal, bare, tokenize


def _gaps(ttft: float, e2e: float, timings: dict) -> tuple[float, float]:
    return ttft * 1000 - timings["prompt_ms"], e2e * 1000 - timings["prompt_ms"] - timings["predicted_ms"]


def llama_bench(model: Path, threads: int, tokens: int) -> float:
    binary = llama_server_path().with_name("llama-bench")
    out = subprocess.run([str(binary), "-m", str(model), "-t", str(threads), "-p", "0", "-n", str(tokens),
                          "-r", "3", "-o", "json"], capture_output=True, text=True, check=True)
    (row,) = [r for r in json.loads(out.stdout) if r.get("n_gen") == tokens]
    return float(row["avg_ts"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--realtime", action="store_true",
                        help="both clients under SCHED_FIFO (llama-server not): on a shared machine another "
                             "tenant's busy process no longer holds a client's reading back for a scheduler tick")
    parser.add_argument("--record", type=Path, help="also write the figures here as JSON (bench/results/client-overhead.json)")
    args = parser.parse_args()

    matrix = load_matrix(matrices_dir() / "gemma-smoke.toml")
    demo_cell = next(c for c in matrix.cells if c.runtime == "llamacpp")
    files = prepare(matrix, demo_cell).files
    # no prompt cache: every request's prompt is processed, on both clocks
    cell = demo_cell.model_copy(update={"techniques": {"parallel": "1", "prefix_cache": "off"}, "label": "bench"})
    runtime = get_runtime("llamacpp")
    spec = runtime.server_spec(cell, files, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp, LocalBackend().serve(spec, Path(tmp) / "server.log") as server:
        if args.realtime:  # after the server's start: llama-server keeps the ordinary policy
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
        samples, minimal, bare, tokenize = asyncio.run(
            requests(server.base_url, runtime, cell, files.served_name, args.requests, args.tokens))
    in_process = llama_bench(files.path, args.threads, args.tokens)

    ttft_gap = [s.ttft_s * 1000 - s.server_timings.prompt_ms for s in samples]
    ttft_ratio = [s.ttft_s * 1000 / s.server_timings.prompt_ms for s in samples]
    server_e2e = [s.server_timings.prompt_ms + s.server_timings.predicted_ms for s in samples]
    e2e_gap = [s.e2e_s * 1000 - e for s, e in zip(samples, server_e2e)]
    e2e_ratio = [s.e2e_s * 1000 / e for s, e in zip(samples, server_e2e)]
    decode = [(s.completion_tokens - 1) / (s.e2e_s - s.ttft_s) for s in samples]
    print(f"requests: {len(samples)} (one at a time, {args.tokens} tokens each, ignore_eos, threads {args.threads}, "
          f"prompts {min(s.prompt_tokens for s in samples)}-{max(s.prompt_tokens for s in samples)} tokens"
          f"{'; clients SCHED_FIFO' if args.realtime else ''})")
    print(f"TTFT  client - server prompt_ms: median {statistics.median(ttft_gap):.1f} ms, "
          f"ratio client/server median {statistics.median(ttft_ratio):.3f}")
    print(f"e2e   client - server (prompt_ms + predicted_ms): median {statistics.median(e2e_gap):.1f} ms, "
          f"ratio median {statistics.median(e2e_ratio):.3f}")
    ours = [_gaps(s.ttft_s, s.e2e_s, s.server_timings.model_dump()) for s in samples]
    least = [_gaps(*m) for m in minimal]
    plain = [_gaps(*m) for m in bare]
    med = statistics.median
    print(f"TTFT  - prompt_ms: ours {med(o[0] for o in ours):.2f} ms, minimal {med(m[0] for m in least):.2f} ms, "
          f"ours - minimal paired median {med(o[0] - m[0] for o, m in zip(ours, least)):+.2f} ms; "
          f"/tokenize round trip of the same prompts {med(tokenize):.2f} ms")
    spread = sorted(o[0] - m[0] for o, m in zip(ours, least))
    print(f"TTFT  ours - minimal per pair: quartiles {spread[len(spread) // 4]:+.2f} / "
          f"{spread[(3 * len(spread)) // 4]:+.2f} ms (the noise the paired median sits in)")
    print(f"e2e   - server:    ours {med(o[1] for o in ours):.2f} ms, minimal {med(m[1] for m in least):.2f} ms, "
          f"ours - minimal paired median {med(o[1] - m[1] for o, m in zip(ours, least)):+.2f} ms")
    print(f"timings_per_token: minimal e2e gap {med(p[1] for p in plain):.2f} ms with, "
          f"{med(m[1] for m in least):.2f} ms without; TTFT gap {med(p[0] for p in plain):.2f} / "
          f"{med(m[0] for m in least):.2f} ms")
    print(f"decode client {statistics.median(decode):.1f} tok/s vs llama-bench in-process {in_process:.1f} tok/s: "
          f"ratio {statistics.median(decode) / in_process:.3f}")
    if args.record:
        import record  # bench/record.py: a script's own folder is on sys.path

        record.write(args.record, {
            "requests": len(samples), "tokens": args.tokens, "threads": args.threads, "realtime": args.realtime,
            "ttft_ours_minus_minimal_ms": med(o[0] - m[0] for o, m in zip(ours, least)),
            "ttft_quartiles_ms": [spread[len(spread) // 4], spread[(3 * len(spread)) // 4]],
            "e2e_ours_minus_minimal_ms": med(o[1] - m[1] for o, m in zip(ours, least)),
            "ttft_minus_prompt_ms": {"ours": med(o[0] for o in ours), "minimal": med(m[0] for m in least)},
            "decode_tok_s": {"client": statistics.median(decode), "llama_bench": in_process}})


if __name__ == "__main__":
    main()
