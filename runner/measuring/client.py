"""The measuring client: one streamed request, timed the same way for every cell and runtime.

Definitions (the report uses the same words):

- **TTFT** (time to first token): from sending the request to the first streamed chunk that
  carries non-empty text.
- **ITL** (inter-token latency): the gaps between consecutive non-empty chunks after the
  first; the first token is not part of it.
- **e2e**: from sending the request to the end of the stream (``[DONE]`` or connection close).
- **TPOT** (time per output token): ``(e2e - TTFT) / (completion_tokens - 1)``.
- token counts: the server's own ``usage`` (``stream_options.include_usage``), never re-counted.

The clock starts with a connection already open, and the request's JSON already encoded: each
request opens a connection of its own first, which the server closes after the response
(``Connection: close``; llama-server closes one after every stream anyway, and a new connection
inside TTFT would time TCP's setup, not the server). The response is
read by an ``asyncio.Protocol`` that stamps each read with ``time.perf_counter()`` as the event loop
delivers it and keeps the bytes; HTTP, SSE and JSON are parsed afterwards, so that at hundreds of
concurrent streams no parsing delays a reading (``bench/client_speed.py`` measures the lag against a
stream source's send times; ``bench/client_overhead.py`` against a minimal client on llama-server).
A chunk's time is the read that completed its line.

Every sampling parameter is sent explicitly (servers' defaults differ: llama.cpp samples at
0.8). A request that fails or times out becomes a ``Sample`` with outcome ``error`` and the
reason; nothing is retried here.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict

from runner.paths import PACKAGE_DIR
from runner.prompts import Prompt
from runner.records import Cell, Outcome, Sample, ServerTimings, utcnow
from runner.runtimes.base import Runtime

_clock = time.perf_counter
_SLICE = 32  # reads or events parsed between two turns of the event loop
_LINGER_S = 10.0  # how long a finished response's connection waits for the server to close it


class SamplingParams(BaseModel):
    """The sampling parameters every request carries, identical for every cell."""

    model_config = ConfigDict(frozen=True)

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    max_tokens: int = 200
    #: generate exactly ``max_tokens`` (throughput sweeps only, never the accuracy phase)
    ignore_eos: bool = False


def request_body(cell: Cell, runtime: Runtime, prompt: Prompt, params: SamplingParams, model: str,
                 extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of one streamed request for ``prompt`` (``extras`` last, e.g. a cold request's)."""
    body: dict[str, Any] = {
        "model": model,
        **prompt.payload(),
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "max_tokens": params.max_tokens,
        "n": 1,
        "stop": list(prompt.stop),
    }
    if params.ignore_eos:
        body["ignore_eos"] = True
    body.update(runtime.request_extras(cell))
    body.update(extras or {})
    return body


def endpoint(runtime: Runtime, prompt: Prompt) -> str:
    """The path a prompt is posted to: chat messages or completion text."""
    return runtime.chat_endpoint if prompt.kind == "chat" else runtime.completion_endpoint


def _chunk_text(chunk: dict[str, Any]) -> tuple[str, str | None]:
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    delta = choice.get("delta")
    text = (delta.get("content") or "") if isinstance(delta, dict) else (choice.get("text") or "")
    return text, choice.get("finish_reason")


class StreamResult(BaseModel):
    """What one streamed response said, with the client's clock readings."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: list[float] = []
    server_timings: ServerTimings | None = None
    cached_tokens: int | None = None
    system_fingerprint: str | None = None
    #: ``time.perf_counter()`` when the clock started: with ``ttft_s`` and ``itl_s`` it places every
    #: chunk's arrival on the host's monotonic clock (``bench/client_speed.py`` compares them with
    #: a server's send times)
    started_s: float | None = None


async def stream(http: httpx.AsyncClient, base_url: str, runtime: Runtime, cell: Cell, prompt: Prompt,
                 params: SamplingParams, *, model: str, extras: dict[str, Any] | None = None) -> StreamResult:
    """Send one streamed request and time it; raises ``httpx.HTTPError`` or ``ValueError`` on failure.

    ``http`` gives the timeouts (connect, and read: the longest silence allowed); the request
    itself goes over a connection of its own (``_Reader``), opened before the clock starts.
    """
    path = endpoint(runtime, prompt)
    url = urlsplit(base_url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"the measuring client speaks plain HTTP/1.1: cannot stream from {base_url!r}")
    port = url.port or 80
    payload = json.dumps(request_body(cell, runtime, prompt, params, model, extras)).encode()
    head = (f"POST {url.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(payload)}\r\n"
            f"User-Agent: runner\r\nConnection: close\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    timeout = http.timeout
    try:
        transport, reader = await asyncio.wait_for(loop.create_connection(_Reader, url.hostname, port),
                                                   timeout.connect)
    except asyncio.TimeoutError:
        raise httpx.ConnectTimeout(f"no connection to {url.netloc} within {timeout.connect:g}s") from None
    except OSError as exc:
        raise httpx.ConnectError(f"{url.netloc}: {exc}") from None
    try:
        result = StreamResult()
        start = result.started_s = time.perf_counter()
        transport.write(head + payload)
        body = _Body()
        while not body.finished:
            await reader.wait(timeout.read)
            async with _parse_turn():
                await body.feed(reader)
                if body.finished and body.status == 200:
                    await _read_events(body.events, runtime, start, result)
        if body.status != 200:
            raise ValueError(f"HTTP {body.status} from {path}: {bytes(body.raw).decode('utf-8', 'replace')[:300]}")
        result.e2e_s = body.end - start
    except BaseException:
        transport.abort()
        raise
    # the server closes first (Connection: close; _Reader closes on its EOF), so that the
    # connection's TIME_WAIT is the server's, never a sweep's thousands of client ports
    loop.call_later(_LINGER_S, transport.abort)
    return result


_TURNS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


def _parse_turn() -> asyncio.Lock:
    """The running loop's parsing turn: one stream parses at a time, one slice per turn of the
    loop, so that however many streams end together the loop polls its sockets (and stamps the
    other streams' reads) between two slices, not after every stream's slice."""
    loop = asyncio.get_running_loop()
    lock = _TURNS.get(loop)
    if lock is None:
        lock = _TURNS[loop] = asyncio.Lock()
    return lock


class _Reader(asyncio.Protocol):
    """One response's bytes as they arrive, each read stamped with ``time.perf_counter()`` in the
    event loop's own callback — before anything is parsed, so that no parsing (this stream's or
    another's) stands between a chunk's arrival and its clock reading. Parsing waits for
    ``wait``, which returns only at the hints of an end (and after the first read)."""

    def __init__(self) -> None:
        self.reads: list[bytes] = []
        self.times: list[float] = []
        self.closed_at: float | None = None
        self.eager = True  # wake the parser on every read (until it knows the body is a stream)
        self._waiter: asyncio.Future | None = None

    def data_received(self, data: bytes) -> None:
        self.times.append(_clock())
        self.reads.append(data)
        # an end comes as [DONE] or the chunked body's last chunk (b"0\r\n\r\n"), unless split
        # into pieces too small to carry it whole
        if self.eager or b"[DONE]" in data or data[-4:] == b"\r\n\r\n" or len(data) < 8:
            self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport: the response ends here

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed_at = _clock()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, read_timeout: float | None) -> None:
        """Until a read or the connection's end may finish the response; ``httpx.ReadTimeout``
        after ``read_timeout`` seconds without a byte."""
        while True:
            if self.closed_at is not None:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            if read_timeout is None:
                await self._waiter
                return
            last = self.times[-1] if self.times else _clock()
            try:
                await asyncio.wait_for(self._waiter, max(0.0, last + read_timeout - _clock()))
                return
            except asyncio.TimeoutError:
                if (self.times[-1] if self.times else last) <= last:
                    raise httpx.ReadTimeout(f"no byte for {read_timeout:g}s") from None


class _Body:
    """An HTTP/1.1 response parsed from a ``_Reader``'s stamped reads: the status, and each
    ``data:`` line of the event stream with the time of the read that completed it.

    Why not h11, the field's HTTP/1.1 parser (httpx's own): measured in its place with
    ``bench/client_speed.py --realtime`` on this 2-core VM, it costs 23 us per chunk against 17
    here, so that 256 streams at 5 ms (51,200 chunks/s) no longer fit one core and the ITL lag's
    p99 grows from 0.4 ms to 36 ms; at 64 streams both meet the targets (0.27 and 0.64 ms). The
    parser is small (status line, headers, chunked, Content-Length or close-delimited bodies) and
    ``tests/test_stream_source.py`` checks it on every split of a response."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.events: list[tuple[float, bytes]] = []
        self.finished = False
        self.end: float | None = None  # [DONE], the body's end or the connection's, as read
        self.raw = bytearray()  # a non-200 body
        self._done = 0  # reads parsed
        self._head = bytearray()
        self._chunked = False
        self._length: int | None = None  # Content-Length
        self._left = 0  # bytes left of the current chunk (chunked) or of the body (Content-Length)
        self._skip = 0  # the CRLF after a chunk's data
        self._size = bytearray()  # a chunk-size line being read
        self._line = bytearray()

    async def feed(self, reader: _Reader) -> None:
        """Parse the reads that arrived since the last call (a long backlog in slices, letting the
        event loop stamp other streams' reads in between)."""
        reads, times = reader.reads, reader.times
        while self._done < len(reads) and not self.finished:
            for _ in range(min(_SLICE, len(reads) - self._done)):
                data, at = reads[self._done], times[self._done]
                self._done += 1
                self._read(data, at)
                if self.finished:
                    return
                # a 200 event stream wakes the parser only at the hints of its end
                reader.eager = self.status is None or self.status != 200 or not self._chunked
            if self._done < len(reads):
                await asyncio.sleep(0)
        if reader.closed_at is not None and self._done == len(reads) and not self.finished:
            if self.status is not None and not self._chunked and self._length is None:
                self._finish(reader.closed_at)  # a body that ends with its connection
            else:
                raise httpx.RemoteProtocolError("the server closed the connection before the response ended")

    def _finish(self, at: float) -> None:
        self.finished, self.end = True, at

    def _read(self, data: bytes, at: float) -> None:
        if self.status is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            data = bytes(self._head[end + 4:])
            self._headers(bytes(self._head[:end]))
            if self._length == 0:
                self._finish(at)
                return
        if self._chunked:
            self._dechunk(data, at)
        elif self._length is not None:
            data = data[:self._left]
            self._left -= len(data)
            self._body(data, at)
            if self._left == 0:
                self._finish(at)
        else:
            self._body(data, at)

    def _headers(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise httpx.RemoteProtocolError(f"not an HTTP response: {lines[0][:100]!r}") from None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "transfer-encoding":
                self._chunked = "chunked" in value
            elif name == "content-length":
                self._length = self._left = int(value)
        if self._chunked:
            self._length = None

    def _dechunk(self, data: bytes, at: float) -> None:
        view, i, n = memoryview(data), 0, len(data)
        while i < n:
            if self._left:
                take = min(self._left, n - i)
                self._body(view[i:i + take], at)
                self._left -= take
                i += take
                if not self._left:
                    self._skip = 2
            elif self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
            else:
                end = data.find(b"\n", i)
                if end < 0:
                    self._size += view[i:]
                    return
                self._size += view[i:end]
                i = end + 1
                size = int(bytes(self._size).split(b";", 1)[0].strip() or b"0", 16)
                self._size.clear()
                if size == 0:
                    self._finish(at)  # trailers, if any, are not read
                    return
                self._left = size

    def _body(self, piece, at: float) -> None:
        if self.status != 200:
            self.raw += piece
            return
        line = self._line
        line += piece
        start = 0
        while True:
            end = line.find(b"\n", start)
            if end < 0:
                break
            if line.startswith(b"data:", start):
                data = bytes(line[start + 5:end]).strip()
                if data == b"[DONE]":
                    self._finish(at)
                    return
                self.events.append((at, data))
            start = end + 1
        del line[:start]


async def _read_events(events: list[tuple[float, bytes]], runtime: Runtime, start: float,
                       result: StreamResult) -> None:
    """Fill ``result`` from the stream's ``data:`` events and their arrival times (JSON parsed
    here, after the stream: the clock readings were taken as the bytes arrived)."""
    parts: list[str] = []
    # the server's own figures are read once, from the last chunk that carries them, not per chunk
    with_timings: dict[str, Any] | None = None
    with_usage: dict[str, Any] | None = None
    last: float | None = None
    for index, (at, data) in enumerate(events):
        if index and not index % _SLICE:
            await asyncio.sleep(0)
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise ValueError(f"not a JSON object in the stream: {data[:100]!r}")
        if "error" in chunk:
            raise ValueError(f"server error in stream: {json.dumps(chunk['error'])[:300]}")
        text, finish = _chunk_text(chunk)
        if text:
            if last is None:
                result.ttft_s = at - start
            else:
                result.itl_s.append(at - last)
            last = at
            parts.append(text)
        if finish:
            result.finish_reason = finish
        if "usage" in chunk:
            with_usage = chunk
        if "timings" in chunk:
            with_timings = chunk
        result.system_fingerprint = chunk.get("system_fingerprint") or result.system_fingerprint
    usage = (with_usage or {}).get("usage")
    if isinstance(usage, dict):
        result.prompt_tokens = usage.get("prompt_tokens")
        result.completion_tokens = usage.get("completion_tokens")
    for chunk in (with_usage, with_timings):
        if chunk is not None:
            result.server_timings = runtime.parse_timings(chunk) or result.server_timings
            cached = runtime.parse_cached_tokens(chunk)
            result.cached_tokens = cached if cached is not None else result.cached_tokens
    result.text = "".join(parts)


def tpot(e2e_s: float | None, ttft_s: float | None, completion_tokens: int | None) -> float | None:
    """Time per output token after the first: ``(e2e - TTFT) / (completion_tokens - 1)``."""
    if e2e_s is None or ttft_s is None or not completion_tokens or completion_tokens < 2:
        return None
    return (e2e_s - ttft_s) / (completion_tokens - 1)


async def measure(http: httpx.AsyncClient, base_url: str, runtime: Runtime, cell: Cell, task_id: str,
                  prompt: Prompt, params: SamplingParams, *, model: str, phase: str = "accuracy",
                  chat_template_sha256: str | None = None, timeout_s: float | None = None,
                  cache_state: str | None = None, extras: dict[str, Any] | None = None,
                  trace: list[StreamResult] | None = None) -> Sample:
    """One timed request as a ``Sample`` (not yet evaluated); a failure is a sample with outcome ``error``.

    ``timeout_s`` bounds the whole request (the client's own timeouts bound each read);
    ``cache_state`` is recorded as told (the caller prepared the server's cache); ``trace``, when
    given, receives the ``StreamResult`` with its clock readings (``bench/client_speed.py``).
    """
    sample = Sample(task_id=task_id, cell_id=cell.id, phase=phase, prompt_style=prompt.style, cache_state=cache_state,
                    prompt_sha256=prompt.sha256,
                    chat_template_sha256=chat_template_sha256 if prompt.kind == "chat" else None)
    try:
        result = await asyncio.wait_for(stream(http, base_url, runtime, cell, prompt, params, model=model,
                                               extras=extras), timeout_s)
    except asyncio.TimeoutError:
        sample.outcome, sample.error = Outcome.error, f"timeout: no complete answer within {timeout_s:g}s"
    except httpx.TimeoutException as exc:
        sample.outcome, sample.error = Outcome.error, f"timeout: {type(exc).__name__} after {_timeout_of(http)}"
    except (httpx.HTTPError, ValueError) as exc:
        sample.outcome, sample.error = Outcome.error, f"{type(exc).__name__}: {exc}"[:500]
    else:
        if trace is not None:
            trace.append(result)
        sample.raw_text = result.text
        sample.finish_reason = result.finish_reason
        sample.prompt_tokens = result.prompt_tokens
        sample.completion_tokens = result.completion_tokens
        sample.ttft_s = result.ttft_s
        sample.e2e_s = result.e2e_s
        sample.itl_s = result.itl_s
        sample.tpot_s = tpot(result.e2e_s, result.ttft_s, result.completion_tokens)
        sample.server_timings = result.server_timings
        sample.cached_tokens = result.cached_tokens
        sample.system_fingerprint = result.system_fingerprint
    sample.finished_at = utcnow()
    return sample


def overhead_note(path: Path | None = None) -> str | None:
    """One line on this client's own overhead at high token rates, as ``bench/client_speed.py``
    last measured it (the checkout's ``bench/results/client-speed.json``, or ``path``), saying
    where and when; None without that file (an installed runner has none)."""
    path = path or PACKAGE_DIR.parent / "bench" / "results" / "client-speed.json"
    try:
        measured = json.loads(path.read_text(encoding="utf-8"))
        by_config = {(f["streams"], f["gap_ms"]): f for f in measured["figures"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    parts = []
    for config in ((64, 5), (256, 5)):
        f = by_config.get(config)
        if f is not None:
            parts.append(f"{config[0]} streams x {config[1]} ms gaps: readings lag the sends by p50 "
                         f"{f['itl_added_p50_ms']:.2f} ms, p99 {f['itl_added_p99_ms']:.2f} ms, TTFT "
                         f"+{f['ttft_added_p50_ms']:.2f} ms")
    if not parts:
        return None
    top = max(f["chunks_per_s"] for f in measured["figures"])
    return (f"Client overhead (not measured in these runs: bench/client_speed.py on {measured.get('machine')}, "
            f"{str(measured.get('measured', ''))[:10]}, {measured.get('setup')}; the sweep's requests go through "
            f"the same runner.measuring.client.measure): " + "; ".join(parts) + f"; up to {top:,.0f} chunks/s received.")


def _timeout_of(http: httpx.AsyncClient) -> str:
    read = http.timeout.read
    return f"{read:g}s" if read else "the client's timeout"
