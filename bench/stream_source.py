"""A stream source for measuring the client, not the model: an OpenAI-compatible streaming server
that emits a token every ``gap_ms`` to any number of concurrent requests and records when it sent
each chunk, on ``CLOCK_MONOTONIC`` — the clock behind ``time.perf_counter`` on Linux, so that on
the same host the client's readings and the server's are directly comparable.

    .venv/bin/python bench/stream_source.py [--gap-ms 5] [--tokens 200] [--align] [--cpu 0] [--impl c]

Two implementations with the same wire format and record:
- ``c`` (the default): ``stream_source.c``, compiled with gcc on first use into the runner's cache;
  one thread, epoll and an absolute timerfd schedule;
- ``python``: asyncio streams, for comparison and where there is no C compiler; at a few thousand
  chunks a second it is late on its own schedule (``client_speed.py --impl python`` shows by how much).

A request body may set ``max_tokens`` (the number of tokens, every one of them sent: no EOS),
``stream_gap_us`` (the gap), ``stream_ttft_us`` (the first token's delay after the request, a
prefill's time; the gap by default) and ``stream_id`` (an integer naming the request in the record).
The answers have the shape of vLLM's and llama-server's ``/v1/completions`` and
``/v1/chat/completions`` streams: one ``data:`` event per token, the last with ``finish_reason``
``length``, then a ``usage`` event (``stream_options.include_usage``) and ``data: [DONE]``, each
event one HTTP chunk (chunked transfer encoding, as both servers send).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("stream_source.c")


@dataclass
class StreamRecord:
    """What the source did for one request, in ``CLOCK_MONOTONIC`` nanoseconds."""

    stream_id: int
    request_ns: int  # the whole request read
    due_ns: int  # the first token's scheduled send; token k (from 0) is due at due_ns + k * gap_ns
    gap_ns: int
    sends_ns: np.ndarray  # each token's chunk handed to send(2)

    @property
    def lateness_ns(self) -> np.ndarray:
        """How late each send was on its own schedule (the source's own lag)."""
        return self.sends_ns - (self.due_ns + self.gap_ns * np.arange(len(self.sends_ns)))


def binary() -> Path:
    """The compiled C source, built once per version of ``stream_source.c``."""
    from runner.paths import cache_dir

    text = SOURCE.read_bytes()
    out = cache_dir() / "stream-source" / hashlib.sha256(text).hexdigest()[:16] / "stream_source"
    if not out.is_file():
        compiler = shutil.which("gcc") or shutil.which("cc")
        if compiler is None:
            raise RuntimeError("no C compiler (gcc or cc) on PATH: use --impl python")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f"stream_source.{os.getpid()}.partial")
        subprocess.run([compiler, "-O2", "-o", str(partial), str(SOURCE)], check=True)
        partial.replace(out)
    return out


def realtime_priority() -> None:
    """Run the calling process under ``SCHED_FIFO`` at a low real-time priority (needs root or
    CAP_SYS_NICE; ``PermissionError`` otherwise). The kernel's real-time throttling still leaves
    other processes 5% of each CPU where one of these would spin."""
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamSource:
    """The source as a child process: ``with StreamSource(gap_ms=5) as source: source.base_url``.

    ``cpu`` pins it to that CPU (``os.sched_setaffinity``) so that the client measured beside it
    has the other cores to itself; ``align`` sends every running stream's token at the same step
    of a global ``gap`` grid (a GPU server's batch) instead of ``gap`` after each request arrived;
    ``realtime`` runs it under ``SCHED_FIFO`` (``realtime_priority``), so that other processes on
    its CPU never hold a due send back for a scheduler tick.
    """

    def __init__(self, gap_ms: float = 5.0, tokens: int = 200, *, align: bool = False, cpu: int | None = None,
                 impl: str = "c", realtime: bool = False):
        self.gap_ms, self.tokens, self.align, self.cpu, self.impl = gap_ms, tokens, align, cpu, impl
        self.realtime = realtime
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="stream-source-")
        self.record_path = Path(self._dir.name) / "record.txt"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        args = [str(self.port), str(self.record_path), str(round(self.gap_ms * 1000)), str(self.tokens),
                "1" if self.align else "0"]
        if self.impl == "c":
            return [str(binary()), *args]
        return [sys.executable, str(Path(__file__).resolve()), "--serve", *args]

    def __enter__(self) -> "StreamSource":
        cpu, realtime = self.cpu, self.realtime

        def preexec() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            if realtime:
                realtime_priority()

        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, text=True,
                                     preexec_fn=preexec if cpu is not None or realtime else None)
        line = self.proc.stdout.readline()
        if not line.startswith("listening"):
            self.proc.kill()
            raise RuntimeError(f"stream source did not start: {line!r}")
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._dir.cleanup()

    def records(self) -> dict[int, StreamRecord]:
        """Every finished stream so far, by ``stream_id`` (an unnamed stream's id is -1: the last one wins)."""
        out = {}
        for line in self.record_path.read_text().splitlines():
            fields = line.split()
            if len(fields) < 5:
                continue  # a line being written
            ident, request, due, gap = (int(f) for f in fields[:4])
            out[ident] = StreamRecord(ident, request, due, gap, np.array(fields[4:], dtype=np.int64))
        return out

    def record(self, ident: int, timeout_s: float = 5.0) -> StreamRecord:
        """Stream ``ident``'s record, waiting for the source to write it: the client may read the
        last chunk before the source has logged the stream it just ended."""
        deadline = time.monotonic() + timeout_s
        while (found := self.records().get(ident)) is None:
            if time.monotonic() > deadline:
                raise KeyError(f"stream {ident}: no record after {timeout_s} s")
            time.sleep(0.01)
        return found


# -- the asyncio implementation ---------------------------------------------------------------------
def _event(payload: str) -> bytes:
    data = f"data: {payload}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


def _number(body: str, key: str, fallback: int) -> int:
    found = re.search(rf'"{key}"\s*:\s*"?(-?\d+)', body)
    return int(found.group(1)) if found else fallback


async def _serve(port: int, record_path: Path, gap_us: int, tokens: int, align: bool) -> None:
    record = record_path.open("w")
    origin = time.perf_counter_ns()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = re.search(r"(?im)^content-length:\s*(\d+)", head)
                body = (await reader.readexactly(int(length.group(1)))).decode() if length else ""
                if not head.startswith("POST "):
                    writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n'
                                 b'{"status":"ok"}')
                    continue
                chat = "/chat/completions" in head.split("\r\n", 1)[0]
                count = max(1, _number(body, "max_tokens", tokens))
                gap = max(1000, _number(body, "stream_gap_us", gap_us)) * 1000
                ident = _number(body, "stream_id", -1)
                first = _number(body, "stream_ttft_us", 0) * 1000
                request = time.perf_counter_ns()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                due = (request + first if first > 0 else origin + ((request - origin) // gap + 1) * gap if align
                       else request + gap)
                kind = "chat.completion.chunk" if chat else "text_completion"
                sends = []
                for k in range(count):
                    wait = due + k * gap - time.perf_counter_ns()
                    if wait > 0:
                        await asyncio.sleep(wait / 1e9)
                    finish = '"length"' if k == count - 1 else "null"
                    choice = ('{"index":0,"delta":{"content":" tok"},' if chat else '{"index":0,"text":" tok",')
                    sends.append(time.perf_counter_ns())
                    writer.write(_event(f'{{"id":"cmpl-source","object":"{kind}","created":0,"model":"stream-source",'
                                        f'"choices":[{choice}"logprobs":null,"finish_reason":{finish}}}]}}'))
                usage = {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}
                writer.write(_event(json.dumps({"id": "cmpl-source", "object": kind, "choices": [], "usage": usage}))
                             + _event("[DONE]") + b"0\r\n\r\n")
                await writer.drain()
                record.write(f"{ident} {request} {due} {gap} {' '.join(map(str, sends))}\n")
                record.flush()
                if "connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"listening {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Serve until Ctrl-C (or, with ``--serve``, be the asyncio implementation's process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=5, metavar=("PORT", "RECORD", "GAP_US", "TOKENS", "ALIGN"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--align", action="store_true")
    parser.add_argument("--cpu", type=int)
    parser.add_argument("--impl", choices=("c", "python"), default="c")
    args = parser.parse_args()
    if args.serve:
        port, record, gap_us, tokens, align = args.serve
        asyncio.run(_serve(int(port), Path(record), int(gap_us), int(tokens), align == "1"))
        return
    with StreamSource(args.gap_ms, args.tokens, align=args.align, cpu=args.cpu, impl=args.impl) as source:
        print(f"{source.base_url} (record: {source.record_path}); Ctrl-C stops", flush=True)
        try:
            source.proc.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
