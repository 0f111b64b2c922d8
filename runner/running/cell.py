"""One cell's phases against its running server, on whichever machine runs it.

Per cell: **accuracy** (every selected task, ``settings.concurrency`` requests in flight, each answer
judged on a worker pool while generation goes on), **repeat** (the noise floor, where the cell
measures one: ``runner.measuring.noise``), **latency** (a seeded subset, one request at a
time, in each cache state, after untimed warm-up requests) and **sweep** (throughput at each
concurrency), with the server's metrics read before and after. What a cell produces goes to its
``CellSink``: the run store in this process, or a stream back to the driver (``runner.executors``).
A cell needs from its run only a ``RunContext``: the matrix, the run's tasks, the events to report to.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx

from runner import prompts
from runner.backends.base import Backend, RunningServer, log_tail
from runner.benchmarks import load_benchmark
from runner.benchmarks.benchmark import Benchmark
from runner.errors import UserError
from runner.matrix import Matrix, RunSettings
from runner.measuring import client, fingerprint
from runner.measuring.activity import Activity, TimingLock, phase_record
from runner.measuring.goodput import goodput
from runner.measuring.noise import REPEAT, REPEAT_SERIAL
from runner.measuring.ratesearch import next_rate_probe
from runner.planning.selection import (cell_latency_tasks, cell_tasks, predecessor, repeat_tasks, state_key,
                                       RATE_SEARCH, cell_sweep_requests, sweep_loads, sweep_tasks, warmup_tasks)
from runner.records import Cell, EditionVerdict, Outcome, Sample, Task, utcnow
from runner.running.events import RunEvents
from runner.running.score import EditionJudge
from runner.runtimes.base import ModelFiles, Runtime
from runner.store import CellResult, Placement, SweepPoint, load_label, parse_load

if TYPE_CHECKING:
    from runner.measuring.resources import ResourceMeter

log = logging.getLogger(__name__)

#: tokens a server may add to a prompt beyond its text (BOS, special tokens); with it, a prompt of
#: at most ``context - max_tokens - margin`` UTF-8 bytes fits without asking the tokenizer
_TOKEN_MARGIN = 32


class CellFailure(Exception):
    """The cell cannot go on (its server died); the message says why."""


_COUNTER_SUFFIXES = ("_total", "_sum", "_count", "_bucket", "_created")


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the cell added: counters and histogram series as differences, gauges as read after."""
    delta = {}
    for key, value in after.items():
        name = key.split("{", 1)[0]
        counter = name.endswith(_COUNTER_SUFFIXES) and not name.endswith("_created")
        if name.endswith("_created"):
            continue  # a timestamp, not a quantity
        delta[key] = value - before.get(key, 0.0) if counter else value
    return delta


# -- where a cell's results go ---------------------------------------------------------------------
class CellSink(Protocol):
    """Where a running cell puts what it produces: the run store here, or a stream back to the driver."""

    log_path: Path  # the server's log, on the machine that runs it

    def write(self, sample: Sample) -> None:
        """Keep a finished sample (appended and flushed before returning, where the store is)."""

    def judge(self, task: Task, sample: Sample) -> None:
        """Have an answer evaluated, then kept with its verdict; must not block generation."""

    def update(self, result: CellResult) -> None:
        """Keep the cell's record as it grows (sweep points)."""

    def done_keys(self) -> set[tuple[str, str]]:
        """The cell's samples already kept, as ``RunStore.done_keys`` gives them."""

    def activity(self, record: Activity) -> None:
        """Keep one line of the run's ``activity.jsonl`` (a phase, where and when it ran)."""


def judge_sample(evaluator, task: Task, sample: Sample, compared: Sequence[EditionJudge] = ()) -> Sample:
    """Judge one answer with ``evaluator`` and return the sample with its verdict (any worker, any node);
    ``compared``: the run's other editions, each adding its own verdict on the same answer.

    Where the evaluator judges through a verdict cache (``runner.evaluation.verdicts``: attached by
    the run, or a Ray node's own), an answer already judged in this environment takes that verdict,
    and ``sample.verdict_from`` says where it was first judged."""
    from runner.evaluation import verdicts

    try:
        cache = verdicts.cache_of(evaluator, task)
        if cache is None:
            verdict, reused_from = evaluator.evaluate(task, sample.raw_text), None
        else:
            judgment = cache.judge(evaluator, task, sample.raw_text, origin=sample.cell_id)
            verdict, reused_from = judgment.verdict, judgment.reused_from
    except UserError:
        raise  # e.g. the sandbox refuses: surfaces from the run, the sample is asked for again
    except Exception as exc:  # noqa: BLE001 - a broken check must not pass as a verdict on the model
        log.exception("evaluating %s failed", task.id)
        sample.outcome, sample.error = Outcome.error, f"evaluation failed: {type(exc).__name__}: {exc}"
    else:
        sample.outcome, sample.cleaned_outcome = verdict.outcome, verdict.cleaned_outcome
        sample.code, sample.stage, sample.stderr_tail = verdict.code, verdict.stage, verdict.stderr_tail
        sample.cascade, sample.upstream, sample.runner = verdict.cascade, verdict.upstream, verdict.runner
        sample.unscoreable_reason, sample.expected_outputs = verdict.unscoreable_reason, verdict.expected_outputs
        sample.eval_seconds = round(verdict.seconds, 3)
        sample.verdict_from = reused_from
        judge_editions(compared, sample)
    return sample


def judge_editions(compared: Sequence[EditionJudge], sample: Sample) -> Sample:
    """Add the verdict of each edition in ``compared`` that ``sample`` lacks (a failed check is an
    ``error`` verdict there, never the model's failure)."""
    have = {v.edition for v in sample.editions}
    for judge in compared:
        if judge.edition in have:
            continue
        try:
            sample.editions.append(judge.verdict(sample.task_id, sample.raw_text))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - as for the headline: named, kept out of the score
            log.exception("evaluating %s under edition %s failed", sample.task_id, judge.edition)
            sample.editions.append(EditionVerdict(edition=judge.edition, outcome=Outcome.error,
                                                  error=f"evaluation failed: {type(exc).__name__}: {exc}"))
    return sample


def evaluator_for(benchmark: Benchmark, sandbox):
    """The run's evaluator over ``benchmark`` in ``sandbox`` (any node): SimCoPilot's headline is
    upstream's own scoring, our stricter cascade kept beside it; other benchmarks the reverse.
    Its programs are not checked yet: ``runner.evaluation.environment.check_environment`` does that."""
    from runner.benchmarks import default_cascade, scoring_root
    from runner.evaluation import Evaluator

    return Evaluator(benchmark.programs, sandbox=sandbox, junit_console=benchmark.junit_jar,
                     cascade=default_cascade(benchmark.name), both=True, upstream_root=scoring_root(benchmark))


class EvalBacklog:
    """Answers of one cell generated but not judged yet, thread-safe; its figures go to ``cell.json``."""

    def __init__(self, result: CellResult):
        self.result = result
        self._lock = threading.Lock()
        self.pending: set[str] = set()  # ``key``s

    @staticmethod
    def key(sample: Sample) -> str:
        """What the backlog holds for ``sample``: an accuracy answer's task id (``Reproduction.missing``
        counts those as done), a repeated answer's phase with it (the same task, judged apart)."""
        return sample.task_id if sample.phase == "accuracy" else f"{sample.phase}:{sample.task_id}"

    def add(self, task_id: str) -> None:
        with self._lock:
            self.pending.add(task_id)
            self.result.eval_pending = len(self.pending)
            self.result.eval_backlog_peak = max(self.result.eval_backlog_peak, len(self.pending))

    def done(self, task_id: str) -> None:
        with self._lock:
            self.pending.discard(task_id)
            self.result.eval_pending = len(self.pending)
            self.result.evaluated_at = utcnow()


class RunContext(Protocol):
    """What a cell needs from its run, wherever it runs (a ``CellContext``, or the ``Reproduction`` itself)."""

    matrix: Matrix
    tasks: list[Task]
    latency_tasks: list[Task]
    events: RunEvents

    @property
    def settings(self) -> RunSettings: ...

    @property
    def benchmark(self) -> Benchmark: ...


@dataclass
class CellContext:
    """What a cell needs from its run, wherever it runs: the matrix, the run's tasks, what it reports to."""

    matrix: Matrix
    tasks: list[Task]
    latency_tasks: list[Task]
    events: RunEvents = field(default_factory=RunEvents)

    @property
    def settings(self) -> RunSettings:
        return self.matrix.settings

    @functools.cached_property
    def benchmark(self) -> Benchmark:
        """The run's benchmark as this machine has it (loaded on first use)."""
        return load_benchmark(self.matrix.benchmark, self.matrix.edition)


def this_node(gpu_ids: list[int], executor: str, *, node_id: str | None = None,
              gpu_type: str | None = None) -> Placement:
    """A placement on this machine with ``gpu_ids``; the GPU name from NVML when it sees them, else ``gpu_type``."""
    names = {g.get("index"): g.get("name") for g in fingerprint.gpus()}
    known = [names[i] for i in gpu_ids if names.get(i)]
    return Placement(executor=executor, node=socket.gethostname(), node_id=node_id, gpu_ids=gpu_ids,
                     gpu_name=known[0] if known else gpu_type)


class CellRun:
    """The phases of one cell against its running server, on whichever machine runs it: what it
    produces goes to ``sink`` (the run store here, or the stream back to the driver)."""

    def __init__(self, run: RunContext, cell: Cell, runtime: Runtime, backend: Backend,
                 server: RunningServer, files: ModelFiles, sink: CellSink, result: CellResult):
        self.context = run
        self.cell = cell
        self.runtime = runtime
        self.backend = backend
        self.server = server
        self.files = files
        self.sink = sink
        self.result = result
        self.settings = run.settings
        self.events = run.events
        self.params = client.SamplingParams(temperature=self.settings.temperature, seed=self.settings.seed,
                                            max_tokens=self.settings.max_tokens)
        self.prompts: dict[str, prompts.Prompt] = {}
        self.death: str | None = None
        self.chat_template_sha256: str | None = None

    @property
    def base(self) -> str:
        return self.server.base_url

    async def run(self, accuracy: list[Task], latency: list[Task], sweep: list[str]) -> None:
        # open-loop points may have every request of the point in flight at once
        limits = httpx.Limits(max_connections=max([self.settings.concurrency, *self.settings.sweep,
                                                   cell_sweep_requests(self.context.matrix, self.cell)]) + 4)
        timeout = httpx.Timeout(self.settings.request_timeout_s, connect=10.0)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
            self.http = http
            self.result.server_version = await self.runtime.server_version(http, self.base)
            batching = await self.runtime.batching(http, self.base, self.cell)
            if batching is not None:
                self.result.batched, self.result.batching = batching.batched, batching.label
            self.chat_template_sha256 = await self._chat_template_sha256()
            before = await self.runtime.scrape_metrics(http, self.base)
            meter = self._meter().start()
            try:
                async with self._phase("accuracy", timed=False, idle=not accuracy):
                    await self._accuracy(accuracy)
                repeats = self._repeats()
                async with self._phase("repeat", timed=False, idle=not any(todo for *_, todo in repeats)):
                    await self._repeat(repeats)
                async with self._phase("latency", timed=True, idle=not latency):
                    await self._latency(latency)
                async with self._phase("sweep", timed=True, idle=not sweep):
                    await self._sweep(sweep)
            finally:
                self.result.server_quantization = self._server_quantization()
                used = meter.stop()
                self.result.energy_joules, self.result.energy_source = used.energy_joules, used.energy_source
                self.result.peak_gpu_memory_mib, self.result.peak_rss_mib = used.peak_gpu_memory_mib, used.peak_rss_mib
                self.result.resources_absent = used.absent
                if self.death is None and self.backend.alive(self.server):
                    after = await self.runtime.scrape_metrics(http, self.base)
                    self.result.server_metrics = metrics_delta(before, after)

    def _server_quantization(self):
        """What the server reported about its quantization, from its log (a reused server's too)."""
        path = self.server.log_path or self.sink.log_path
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return self.runtime.server_quantization(text)

    @contextlib.asynccontextmanager
    async def _phase(self, name: str, *, timed: bool, idle: bool = False):
        """Run a phase under the node's timing lock (exclusive when ``timed``) and record it in the
        run's activity; an ``idle`` phase (nothing left to ask) takes no lock and leaves no record."""
        if idle:
            yield
            return
        placement = self.result.placements[-1] if self.result.placements else None
        node = placement.node if placement else socket.gethostname()
        node_id = (placement.node_id if placement else None) or node
        gpu_ids = list(placement.gpu_ids) if placement else []
        lock = TimingLock(node_id, tell=lambda text: self.events.note(f"{self.cell.id}: {text}"))
        started, outcome = utcnow(), "failed"
        async with (lock.exclusive() if timed else lock.shared()):
            started = utcnow()
            try:
                yield
                outcome = "done"
            finally:
                self.sink.activity(phase_record(self.cell.id, name, node_id, node, gpu_ids, started, timed=timed,
                                                lock_wait_s=lock.waited, outcome=outcome))

    def _meter(self) -> "ResourceMeter":
        """Energy and memory of this cell: the local server's process tree, the host's GPUs (NVML), RAPL."""
        from runner.measuring.resources import ResourceMeter

        local = self.backend.name == "local" and self.server.ident.isdigit()
        return ResourceMeter(server_pid=int(self.server.ident) if local else None)

    async def _chat_template_sha256(self) -> str | None:
        """sha256 of the chat template the server applies: llama.cpp's ``/props``, else the model folder's."""
        try:
            response = await self.http.get(f"{self.base}/props")
            if response.status_code == 200:
                template = response.json().get("chat_template")
                if template:
                    return hashlib.sha256(template.encode()).hexdigest()
        except (httpx.HTTPError, ValueError):
            pass
        folder = self.files.tokenizer_path or (self.files.path if self.files.path.is_dir() else None)
        if folder is not None:
            import json

            for name in ("chat_template.jinja", "tokenizer_config.json"):
                path = folder / name
                if path.is_file():
                    text = path.read_text(encoding="utf-8")
                    template = json.loads(text).get("chat_template") if name.endswith(".json") else text
                    if template:
                        return hashlib.sha256(str(template).encode()).hexdigest()
        return None

    async def _prompt(self, task: Task) -> prompts.Prompt:
        cached = self.prompts.get(task.id)
        if cached is not None:
            return cached
        chat = self.context.matrix.model(self.cell).chat
        edition = self.context.benchmark.edition  # the SimCoPilot edition's prompt and truncation (None: starter)
        prompt = prompts.render(task, self.cell.prompt_style, chat=chat, edition=edition)
        room = self.files.context_length - self.settings.max_tokens - _TOKEN_MARGIN
        # a token is at least one byte: a prompt with fewer bytes than the room fits unasked
        if len(prompt.token_text().encode("utf-8")) > room:
            async def count(text: str) -> int:
                return len(await self.runtime.tokenize(self.http, self.base, text))

            if self.cell.prompt_style == "simcopilot":  # upstream's own truncation rule, by tokens
                prompt = await prompts.fit_upstream(task, self.cell.prompt_style, self.runtime.tokens(self.http, self.base),
                                                    context_length=self.files.context_length,
                                                    max_tokens=self.settings.max_tokens, chat=chat, edition=edition)
            else:
                prompt = await prompts.fit(task, self.cell.prompt_style, count,
                                           context_length=self.files.context_length,
                                           max_tokens=self.settings.max_tokens, chat=chat, edition=edition)
        self.prompts[task.id] = prompt
        return prompt

    async def _request(self, task: Task, phase: str, params: client.SamplingParams | None = None, *,
                       cache_state: str | None = None, extras: dict | None = None, load: str | None = None) -> Sample:
        try:
            prompt = await self._prompt(task)
        except httpx.HTTPError as exc:
            return Sample(task_id=task.id, cell_id=self.cell.id, phase=phase, prompt_style=self.cell.prompt_style,
                          prompt_sha256="", outcome=Outcome.error, error=f"tokenize failed: {exc}",
                          cache_state=cache_state, load=load, finished_at=utcnow())
        sample = await client.measure(self.http, self.base, self.runtime, self.cell, task.id, prompt,
                                    params or self.params, model=self.files.served_name, phase=phase,
                                    chat_template_sha256=self.chat_template_sha256,
                                    timeout_s=self.settings.request_timeout_s, cache_state=cache_state,
                                    extras=extras)
        return sample.model_copy(update={"load": load}) if load else sample

    async def _server_died(self, sample: Sample) -> bool:
        """Whether a failed request failed because the server is gone (then the cell stops)."""
        if sample.outcome != Outcome.error:
            return False
        if self.death is not None:
            return True
        await asyncio.sleep(0.2)  # let a dying process be reaped before asking
        if self.backend.alive(self.server):
            return False
        self.death = (f"server died during the cell ({sample.error}); log {self.sink.log_path}: "
                      f"{log_tail(self.sink.log_path, 5)}")
        return True

    def _write(self, sample: Sample) -> None:
        self.sink.write(sample)

    async def _accuracy(self, tasks: list[Task]) -> None:
        total = len(cell_tasks(self.context.matrix, self.context.benchmark, self.context.tasks, self.cell))
        self.events.phase_started(self.cell, "accuracy", total, total - len(tasks))
        await self._judged(tasks, "accuracy", self.settings.concurrency)

    def _repeats(self) -> list[tuple[str, int, list[Task], list[Task]]]:
        """The noise floor's repetitions (``runner.measuring.noise``): per phase its concurrency, its tasks and
        those not yet kept; none where the cell does not repeat."""
        tasks = repeat_tasks(self.context.matrix, self.context.benchmark, self.context.tasks, self.cell)
        if not tasks:
            return []
        done = self.sink.done_keys()
        return [(phase, level, tasks, [t for t in tasks if (phase, t.id) not in done])
                for phase, level in ((REPEAT, self.settings.concurrency), (REPEAT_SERIAL, 1))]

    async def _repeat(self, repeats: list[tuple[str, int, list[Task], list[Task]]]) -> None:
        """Some of the cell's tasks asked again at the accuracy phase's concurrency, then one at a
        time, judged like its answers; never in a pass rate."""
        for phase, level, tasks, todo in repeats:
            self.events.phase_started(self.cell, phase, len(tasks), len(tasks) - len(todo))
            await self._judged(todo, phase, level)

    async def _judged(self, tasks: list[Task], phase: str, concurrency: int) -> None:
        """Ask ``tasks`` with ``concurrency`` in flight, each answer handed to the sink to judge."""
        if not tasks:
            return
        gate = asyncio.Semaphore(concurrency)

        async def one(task: Task) -> None:
            async with gate:
                if self.death:
                    return
                sample = await self._request(task, phase)
            if await self._server_died(sample):
                return
            if sample.outcome == Outcome.error:
                self._write(sample)
            else:
                self.sink.judge(task, sample)  # judged beside generation, never awaited here

        await asyncio.gather(*(one(task) for task in tasks))
        if self.death:
            raise CellFailure(self.death)

    async def _latency(self, tasks: list[Task]) -> None:
        subset = cell_latency_tasks(self.context.matrix, self.context.latency_tasks, self.cell)
        states = list(self.settings.cache_states)
        if "cold" in states and self.runtime.cache_reset is None:
            states.remove("cold")
            self.result.reason = f"no cold latency samples: {self.runtime.name} offers no cache reset"
            self.events.note(f"{self.cell.id}: {self.result.reason}")
        done = self.sink.done_keys()
        keys = [state_key(s) for s in states if s != "replay"]
        self.events.phase_started(self.cell, "latency", len(subset) * len(keys),
                                  sum((key, t.id) in done for key in keys for t in subset))
        if not tasks:
            return
        pool = self.context.benchmark.available()
        # untimed, unstored, on prompts that are never timed: allocator, threads and the decode path
        # warm (a few tokens do it), no prefix of a timed prompt left behind
        warmup = self.params.model_copy(update={"max_tokens": min(16, self.params.max_tokens)})
        for task in warmup_tasks(pool, subset, self.settings.warmup_requests, self.settings.seed):
            await self._untimed(task, "warmup", warmup)
        primer = self.params.model_copy(update={"max_tokens": 1})
        for task in tasks:
            served_last = False  # whether the server's last request was this very prompt
            for state in states:
                if (state_key(state), task.id) in done:
                    served_last = False
                    continue
                if state == "replay":
                    if not served_last:
                        await self._untimed(task, "replay-primer")
                    sample = await self._timed(task, "replay", "replay")
                elif state == "cold":
                    await self._reset()
                    sample = await self._timed(task, "latency", "cold", self.runtime.cold_extras(self.cell))
                else:  # warm: only the previous task of the same program is in the cache
                    await self._reset()
                    before = predecessor(task, pool)
                    if before is None:  # a first gap (latency_subset avoids them): no warm state exists
                        self.events.note(f"{self.cell.id}: {task.id} has no earlier gap: no warm sample")
                        continue
                    await self._untimed(before, "warm-primer", primer)
                    sample = await self._timed(task, "latency", "warm")
                served_last = sample.outcome != Outcome.error

    async def _reset(self) -> None:
        """The runtime's own cache reset, when it has one (a failure fails the cell: cold would be a lie)."""
        if self.runtime.cache_reset is None:
            return
        try:
            await self.runtime.reset_cache(self.http, self.base)
        except httpx.HTTPError as exc:
            if self.backend.alive(self.server):
                raise CellFailure(f"{self.runtime.name}: cache reset failed ({type(exc).__name__}: {exc}); "
                                  f"cold and warm latency need it") from None
            raise CellFailure(f"server died during the cell; log {self.sink.log_path}") from None

    async def _untimed(self, task: Task, phase: str, params: client.SamplingParams | None = None) -> None:
        sample = await self._request(task, phase, params)
        if await self._server_died(sample):
            raise CellFailure(self.death)

    async def _timed(self, task: Task, phase: str, state: str, extras: dict | None = None) -> Sample:
        sample = await self._request(task, phase, cache_state=state, extras=extras)
        if await self._server_died(sample):
            raise CellFailure(self.death)
        self._write(sample)
        return sample

    async def _sweep(self, loads: list[str]) -> None:
        """Each sweep point still missing: the sweep's task sample asked at that load with the accuracy
        phase's sampling (so that each answer pairs with the task's accuracy answer), timed as a whole;
        then, where ``loads`` holds ``RATE_SEARCH``, the rate search's probes (runner.measuring.ratesearch).
        Answers are kept as they come, unjudged; they are judged once the last point is measured, so
        that no test run shares the CPU with a timed point (a run resumed before that judges them)."""
        total = len(sweep_loads(self.context.matrix, self.cell))
        points = [load for load in loads if load != RATE_SEARCH]
        self.events.phase_started(self.cell, "sweep", total, total - len(points))
        tasks = sweep_tasks(self.context.matrix, self.context.benchmark, self.context.tasks, self.cell)
        if not tasks:
            return
        answered: list[tuple[Task, Sample]] = []
        for load in points:
            answered += await self._point(tasks, load)
        if RATE_SEARCH in loads:
            target, probes = self.context.matrix.slo.attainment, self.settings.find_max_rate
            while (rate := next_rate_probe(self.result.sweep, target, probes)) is not None:
                answered += await self._point(tasks, load_label(rate=rate), probe=True)
        for task, sample in answered:
            self.sink.judge(task, sample)

    async def _point(self, tasks: list[Task], load: str, *, probe: bool = False) -> list[tuple[Task, Sample]]:
        """One sweep point measured and recorded; its answered requests, to be judged."""
        concurrency, rate = parse_load(load)
        started = time.perf_counter()
        if rate is None:
            samples = await self._closed_loop(tasks, load, concurrency)
        else:
            samples = await self._open_loop(tasks, load, rate)
        seconds = time.perf_counter() - started
        errors = [s for s in samples if s.outcome == Outcome.error]
        for sample in errors:
            if await self._server_died(sample):
                raise CellFailure(self.death)
            self.events.note(f"{self.cell.id}: sweep request at {load} failed: {sample.error}")
        ok = [s for s in samples if s.outcome != Outcome.error]
        for sample in samples:
            self._write(sample)
        tokens = sum(s.completion_tokens or 0 for s in ok)
        self.result.sweep.append(SweepPoint(concurrency=concurrency, rate=rate, requests=len(ok), seconds=seconds,
                                            requests_per_s=len(ok) / seconds, output_tokens_per_s=tokens / seconds,
                                            errors=len(errors), tasks=len(tasks), probe=probe,
                                            attainment=goodput(samples, seconds, self.context.matrix.slo).attainment))
        self.sink.update(self.result)
        self.events.sweep_measured(self.cell, self.result.sweep[-1])
        return [(t, s) for t, s in zip(tasks, samples) if s.outcome != Outcome.error]

    async def _closed_loop(self, tasks: list[Task], load: str, concurrency: int) -> list[Sample]:
        """``tasks`` with ``concurrency`` requests in flight, a new one sent as one is answered."""
        gate = asyncio.Semaphore(concurrency)

        async def one(task: Task) -> Sample:
            async with gate:
                return await self._request(task, "sweep", load=load)

        return list(await asyncio.gather(*(one(task) for task in tasks)))

    async def _open_loop(self, tasks: list[Task], load: str, rate: float) -> list[Sample]:
        """``tasks`` sent at seeded Poisson arrival times of mean ``rate`` per second, whatever is in
        flight (open loop: a slow server queues, it does not slow the arrivals)."""
        from runner.measuring.arrivals import poisson_arrivals

        offsets = poisson_arrivals(rate, len(tasks), self.settings.seed)
        origin = time.perf_counter()

        async def one(task: Task, offset: float) -> Sample:
            await asyncio.sleep(max(0.0, origin + offset - time.perf_counter()))
            return await self._request(task, "sweep", load=load)

        return list(await asyncio.gather(*(one(t, o) for t, o in zip(tasks, offsets))))
