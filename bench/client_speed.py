"""The measuring client at GPU speeds: ``runner.measuring.client.measure`` (the function the latency and sweep
phases call, on an httpx client set up as the sweep sets it up) against ``bench/stream_source.py``,
which sends a token every 1, 5 or 20 ms to 1, 16, 64 and 256 concurrent streams and records when
it sent each chunk on the clock the client reads (``CLOCK_MONOTONIC``, same host).

    .venv/bin/python bench/client_speed.py [--quick] [--realtime] [--align] [--rounds 2] [--repeat 3] [--json PATH]

The source runs in its own process pinned to CPU 0 and this process to CPU 1 (``--no-pin``: as
the scheduler likes); ``--realtime`` puts both under ``SCHED_FIFO``, so that on a shared machine
another tenant's busy process no longer holds a reading back for a scheduler tick (that, not the
client, is most of the p99 without it); ``--align`` sends all streams' tokens at the same instants
(a GPU server's batch step), the harder case for a client that reads them one by one. Each
configuration runs ``--repeat`` times with a fresh source, and the median run's figures are shown
(every run's are in the JSON). Per configuration, one line:
- TTFT added p50: the client's TTFT minus the source's own time to its first send (request read to
  first chunk sent): what the client adds, its sending of the request included;
- ITL added p50 / p99: each chunk after the first, the client's reception (its clock start + TTFT +
  the ITLs so far) minus the source's send — the lag the client's readings carry;
- ITL error p50 / p99 of |measured ITL - the source's gap between the two sends|;
- chunks/s received, and the client process's CPU time (user + system) per chunk;
- source late p99: the source's own lag on its schedule (the source is not the bottleneck while
  it stays small).
Then TTFT+ of ours beside ``bench/client_overhead.py``'s minimal ``http.client`` client, request
pairs one at a time (``--versus-minimal``). The last line is the 64-stream, 5 ms configuration as
key=value pairs. A full run writes every
configuration to ``bench/results/client-speed.json`` (``--json`` elsewhere), which the report quotes
beside the sweep's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner.measuring import client  # noqa: E402
from runner.prompts import Prompt  # noqa: E402
from runner.records import Cell  # noqa: E402
from runner.runtimes import get_runtime  # noqa: E402
from stream_source import StreamRecord, StreamSource, realtime_priority  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "client-speed.json"
STREAMS = (1, 16, 64, 256)
GAPS_MS = (1, 5, 20)
HEADLINE = (64, 5)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_config(base_url: str, streams: int, gap_ms: float, tokens: int, rounds: int):
    """``streams`` concurrent streams, each ``rounds`` requests of ``tokens`` tokens one after another."""
    runtime = get_runtime("vllm")
    cell = Cell(model="stream-source", runtime="vllm", quantization="none", label="client-speed")
    prompt = Prompt(style="bench", kind="completion", text="x", sha256="0" * 64)
    params = client.SamplingParams(max_tokens=tokens, ignore_eos=True)
    # as the sweep phase sets its client up (runner.running.run): one pool with room for every stream
    limits = httpx.Limits(max_connections=streams + 4)
    traces: list[tuple[int, client.StreamResult]] = []
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), limits=limits) as http:
        async def one(stream: int) -> None:
            for r in range(rounds):
                ident = stream * rounds + r
                trace: list[client.StreamResult] = []
                sample = await client.measure(http, base_url, runtime, cell, f"s{ident}", prompt, params,
                                              model="stream-source", phase="sweep", timeout_s=120.0, trace=trace,
                                              extras={"stream_id": ident, "stream_gap_us": round(gap_ms * 1000)})
                if sample.error:
                    errors.append(sample.error)
                else:
                    traces.append((ident, trace[0]))

        cpu, wall = _cpu_s(), time.perf_counter()
        await asyncio.gather(*(one(s) for s in range(streams)))
        wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
    return traces, errors, wall, cpu


def analyse(traces: list[tuple[int, client.StreamResult]], records: dict[int, StreamRecord], wall: float,
            cpu: float) -> dict:
    """The figures of one configuration (milliseconds, except chunks/s and µs of CPU per chunk)."""
    ttft_added, itl_added, itl_error, late = [], [], [], []
    chunks = 0
    for ident, result in traces:
        record = records[ident]
        sends = record.sends_ns / 1e9
        received = result.started_s + result.ttft_s + np.concatenate(([0.0], np.cumsum(result.itl_s)))
        if len(received) != len(sends):
            raise SystemExit(f"stream {ident}: {len(received)} chunks with text received, {len(sends)} sent")
        chunks += len(received)
        ttft_added.append(result.ttft_s - (sends[0] - record.request_ns / 1e9))
        itl_added.append(received[1:] - sends[1:])
        itl_error.append(np.abs(np.asarray(result.itl_s) - np.diff(sends)))
        late.append(record.lateness_ns / 1e6)
    added = np.concatenate(itl_added) * 1000
    error = np.concatenate(itl_error) * 1000
    return {
        "ttft_added_p50_ms": float(np.percentile(np.array(ttft_added) * 1000, 50)),
        "itl_added_p50_ms": float(np.percentile(added, 50)),
        "itl_added_p99_ms": float(np.percentile(added, 99)),
        "itl_error_p50_ms": float(np.percentile(error, 50)),
        "itl_error_p99_ms": float(np.percentile(error, 99)),
        "chunks_per_s": chunks / wall,
        "cpu_us_per_chunk": cpu / chunks * 1e6,
        "source_late_p99_ms": float(np.percentile(np.concatenate(late), 99)),
        "chunks": chunks,
    }


async def versus_minimal(base_url: str, requests: int, tokens: int):
    """``requests`` pairs, one at a time, of ours and ``bench/client_overhead.py``'s minimal
    ``http.client`` client, in turn first: each client's (stream id, TTFT, e2e)."""
    from client_overhead import Minimal

    runtime = get_runtime("vllm")
    cell = Cell(model="stream-source", runtime="vllm", quantization="none", label="client-speed")
    prompt = Prompt(style="bench", kind="completion", text="x", sha256="0" * 64)
    params = client.SamplingParams(max_tokens=tokens, ignore_eos=True)
    fast = Minimal(base_url)
    ours, least = [], []
    async with httpx.AsyncClient(timeout=60) as http:
        for i in range(requests):
            order = (0, 1) if i % 2 else (1, 0)
            for who in order:
                ident = 2 * i + who
                if who == 0:
                    sample = await client.measure(http, base_url, runtime, cell, f"o{i}", prompt, params,
                                                  model="stream-source", extras={"stream_id": ident})
                    ours.append((ident, sample.ttft_s, sample.e2e_s))
                else:
                    body = client.request_body(cell, runtime, prompt, params, "stream-source", {"stream_id": ident})
                    ttft, e2e, _ = fast.stream(runtime.completion_endpoint, body)
                    least.append((ident, ttft, e2e))
    return ours, least


def pin(cpu: int) -> bool:
    """Keep this process on ``cpu`` (True when it could)."""
    try:
        os.sched_setaffinity(0, {cpu})
        return True
    except (AttributeError, OSError):
        return False


def main() -> None:
    """Run every configuration, print a line each, write the JSON, end with the headline line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one request per stream, 50 tokens, gaps 1 and 5 ms")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="requests per stream, one after another")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per configuration, each with a fresh source; the median run's figures are shown")
    parser.add_argument("--streams", type=int, nargs="*", default=list(STREAMS))
    parser.add_argument("--gaps", type=float, nargs="*", default=list(GAPS_MS), help="inter-token gaps, ms")
    parser.add_argument("--align", action="store_true",
                        help="every stream's token at the same step of a global grid (a GPU server's batch)")
    parser.add_argument("--impl", choices=("c", "python"), default="c", help="the stream source's implementation")
    parser.add_argument("--no-pin", action="store_true", help="leave both processes to the scheduler")
    parser.add_argument("--realtime", action="store_true",
                        help="source and client under SCHED_FIFO: other processes on a shared machine no longer "
                             "hold a reading back for a scheduler tick (root or CAP_SYS_NICE)")
    parser.add_argument("--versus-minimal", type=int, metavar="PAIRS",
                        help="TTFT beside bench/client_overhead.py's minimal client, one request at a time "
                             "(40, --quick 10; 0: not)")
    parser.add_argument("--json", type=Path, help=f"write the figures here (a full run: {RESULTS})")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.rounds, args.repeat = 50, 1, 1
        args.gaps = [g for g in args.gaps if g <= 5] or args.gaps
    if args.versus_minimal is None:
        args.versus_minimal = 10 if args.quick else 40
    out_path = args.json or (None if args.quick or args.impl != "c" else RESULTS)

    cpus = sorted(os.sched_getaffinity(0))
    pinned = not args.no_pin and len(cpus) >= 2 and pin(cpus[1])
    source_cpu = cpus[0] if pinned else None
    where = (f"source on CPU {cpus[0]}, client on CPU {cpus[1]}" if pinned
             else "unpinned (source and client share the scheduler's CPUs)")
    if args.realtime:
        try:
            realtime_priority()
        except PermissionError:
            raise SystemExit("--realtime needs root or CAP_SYS_NICE (SCHED_FIFO)") from None
        where += ", both SCHED_FIFO"
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {where}; "
          f"{args.tokens} tokens x {args.rounds} request(s) per stream, median of {args.repeat} run(s); "
          f"source {args.impl}"
          f"{', aligned sends' if args.align else ''}")
    print(f"{'streams':>7} {'gap ms':>6} | {'TTFT+ p50':>9} | {'ITL+ p50':>8} {'p99':>7} | {'|ITL err| p50':>13} "
          f"{'p99':>7} | {'chunks/s':>8} | {'CPU us/chunk':>12} | {'source late p99':>15}")
    figures = []
    for gap in args.gaps:
        for streams in args.streams:
            runs = []
            for _ in range(args.repeat):
                with StreamSource(gap_ms=gap, tokens=args.tokens, align=args.align, cpu=source_cpu,
                                  impl=args.impl, realtime=args.realtime) as source:
                    traces, errors, wall, cpu = asyncio.run(run_config(source.base_url, streams, gap, args.tokens,
                                                                       args.rounds))
                    records = source.records()
                if errors:
                    raise SystemExit(f"{len(errors)} requests failed at {streams} streams, {gap:g} ms: {errors[0]}")
                runs.append(analyse(traces, records, wall, cpu))
            # the median run of each figure: one stall of a shared machine (another tenant, the
            # hypervisor) moves one run's p99, not the figure
            f = {"streams": streams, "gap_ms": gap, **{k: float(np.median([r[k] for r in runs])) for k in runs[0]},
                 "runs": runs}
            figures.append(f)
            print(f"{streams:>7} {gap:>6g} | {f['ttft_added_p50_ms']:>6.3f} ms | {f['itl_added_p50_ms']:>5.3f} ms "
                  f"{f['itl_added_p99_ms']:>7.3f} | {f['itl_error_p50_ms']:>10.3f} ms {f['itl_error_p99_ms']:>7.3f} | "
                  f"{f['chunks_per_s']:>8.0f} | {f['cpu_us_per_chunk']:>9.1f} us | {f['source_late_p99_ms']:>12.3f} ms"
                  + (f" | p99 of {len(runs)} runs: " + " ".join(f"{r['itl_added_p99_ms']:.2f}" for r in runs)
                     if len(runs) > 1 else ""), flush=True)
    minimal = None
    if args.versus_minimal:
        with StreamSource(gap_ms=5, tokens=20, cpu=source_cpu, realtime=args.realtime) as source:
            ours, least = asyncio.run(versus_minimal(source.base_url, args.versus_minimal, 20))
            records = source.records()

        def added(pairs, which):  # TTFT past the first send, e2e past the last (then [DONE])
            return np.array([times[which] - (records[i].sends_ns[0 if which == 0 else -1] - records[i].request_ns) / 1e9
                             for i, *times in pairs]) * 1000

        minimal = {"requests": len(ours)}
        for which, name in ((0, "ttft"), (1, "e2e")):
            mine, theirs = added(ours, which), added(least, which)
            minimal.update({f"{name}_added_p50_ms": float(np.median(mine)),
                            f"minimal_{name}_added_p50_ms": float(np.median(theirs)),
                            f"{name}_ours_minus_minimal_p50_ms": float(np.median(mine - theirs))})
            print(f"1 stream x 5 ms x 20 tokens, {len(mine)} pairs one at a time: {name.upper()}+ p50 ours "
                  f"{np.median(mine):.3f} ms, minimal http.client client (bench/client_overhead.py) "
                  f"{np.median(theirs):.3f} ms, ours - minimal paired median {np.median(mine - theirs):+.3f} ms")
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps({
            "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})",
            "command": "python bench/client_speed.py " + " ".join(sys.argv[1:]),
            "setup": where, "aligned": args.align, "realtime": args.realtime, "tokens": args.tokens, "rounds": args.rounds,
            "repeat": args.repeat,
            "load_average": round(os.getloadavg()[0], 1), "versus_minimal": minimal, "figures": figures},
                                       indent=1) + "\n")
    head = next((f for f in figures if (f["streams"], f["gap_ms"]) == HEADLINE), figures[-1])
    print(f"streams={head['streams']} gap_ms={head['gap_ms']:g} itl_added_p50_ms={head['itl_added_p50_ms']:.3f} "
          f"itl_added_p99_ms={head['itl_added_p99_ms']:.3f} ttft_added_p50_ms={head['ttft_added_p50_ms']:.3f} "
          f"chunks_per_s={head['chunks_per_s']:.0f}")


if __name__ == "__main__":
    main()
