"""Rendering a run for people: rich progress bars on stderr, a summary table on stdout."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from runner.errors import cap
from runner.measuring.passrate import pass_count
from runner.records import Cell, Outcome, Sample, Task
from runner.running.events import RunEvents
from runner.running.run import RunOutcome
from runner.store import CellResult, Manifest, RunStore, SweepPoint


class RichEvents(RunEvents):
    """One progress bar per cell and phase, with the pass count so far; notes as log lines."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[passed]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.console, transient=False)
        # cells may run at once, and answers are judged after their cell has moved on: a bar per
        # cell and phase, each cell's current phase apart
        self.current: dict[str, object] = {}
        self.bars: dict[tuple[str, str], object] = {}
        self.passed: dict[str, int] = {}
        self.judged: dict[str, int] = {}

    def __enter__(self) -> "RichEvents":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def run_started(self, store: RunStore, manifest: Manifest, tasks: list[Task]) -> None:
        self.console.log(f"run {store.root}: {len(manifest.cells)} cells, {len(tasks)} tasks")

    def cell_started(self, cell: Cell, index: int, count: int) -> None:
        self.console.log(f"cell {index + 1}/{count}: {cell.id} (preparing the model, starting the server)")
        self.passed[cell.id] = self.judged[cell.id] = 0

    def cell_skipped(self, result: CellResult) -> None:
        self.console.log(f"{result.cell.id}: already complete")

    def phase_started(self, cell: Cell, phase: str, total: int, done: int) -> None:
        if cell.id in self.current:
            self.progress.stop_task(self.current[cell.id])
        bar = self.current[cell.id] = self.progress.add_task(f"{cell.id} {phase}", total=total, completed=done,
                                                             passed="")
        self.bars[(cell.id, phase)] = bar

    def sample_written(self, cell: Cell, sample: Sample) -> None:
        if sample.phase == "accuracy" and sample.outcome is not None:
            self.judged[cell.id] = self.judged.get(cell.id, 0) + 1
            self.passed[cell.id] = self.passed.get(cell.id, 0) + (sample.outcome == Outcome.passed)
        passed = (f"pass {self.passed.get(cell.id, 0)}/{self.judged.get(cell.id, 0)}"
                  if sample.phase == "accuracy" else "")
        bar = self.bars.get((cell.id, sample.phase))
        if bar is not None:
            self.progress.update(bar, advance=1, passed=passed)
        if sample.outcome == Outcome.error:
            self.console.log(f"{cell.id} {sample.task_id}: request error: {cap(sample.error, 300)}")

    def sweep_measured(self, cell: Cell, point: SweepPoint) -> None:
        bar = self.current.get(cell.id)
        if bar is not None:
            self.progress.update(bar, advance=1, passed=f"{point.label}: {point.output_tokens_per_s:.1f} tok/s")

    def cell_finished(self, result: CellResult) -> None:
        bar = self.current.pop(result.cell.id, None)
        if bar is not None:
            self.progress.stop_task(bar)
        tail = f": {cap(result.reason)}" if result.reason else ""
        self.console.log(f"{result.cell.id}: {result.status}{tail}")

    def note(self, message: str) -> None:
        self.console.log(message)


def duration(seconds: float) -> str:
    """``42 s``, ``12 min 05 s`` or ``2 h 05 min``: what a person reads in a progress line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class CountProgress:
    """Progress of ``total`` like items (answers scored, tasks checked), with the passes and an ETA.

    On a terminal: a rich bar on stderr. Elsewhere (a log file, CI): a line through ``log`` every
    ``every`` items or ``seconds``, whichever comes first, and on the last item, each with its ETA.
    """

    def __init__(self, verb: str, total: int, log: Callable[[str], None], *, every: int | None = None,
                 seconds: float = 30.0, console: Console | None = None, clock: Callable[[], float] = time.monotonic):
        self.verb, self.total, self.log, self.clock = verb, total, log, clock
        # about ten lines for a small set, one per 25 items for a large one
        self.every = every or max(1, min(25, total // 10))
        self.seconds = seconds
        self.done = self.passed = 0
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None

    def __enter__(self) -> "CountProgress":
        self.started = self.last = self.clock()
        if self.console.is_terminal:
            self.progress = Progress(TextColumn(f"{self.verb}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[passed]} passed"), TimeElapsedColumn(),
                                     TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
            self.bar = self.progress.add_task(self.verb, total=self.total, passed=0)
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def advance(self, passed: bool) -> None:
        """One more item done, passed or not."""
        self.done += 1
        self.passed += bool(passed)
        if self.progress is not None:
            self.progress.update(self.bar, advance=1, passed=self.passed)
            return
        now = self.clock()
        if self.done % self.every and now - self.last < self.seconds and self.done != self.total:
            return
        self.last = now
        self.log(self.line(now - self.started))

    def line(self, elapsed: float) -> str:
        """``120/1163 scored, 80 passed, 4 min 10 s elapsed, ETA 36 min 12 s`` (the rate so far)."""
        text = f"{self.done}/{self.total} {self.verb}, {self.passed} passed, {duration(elapsed)} elapsed"
        if self.done < self.total:
            text += f", ETA {duration(elapsed / self.done * (self.total - self.done))}" if self.done else ", ETA unknown"
        return text


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


def summary_table(store: RunStore, outcome: RunOutcome) -> Table:
    """Per cell: status, accuracy over the scoreable tasks (best-of-cascade and cleaned-only), the
    unscoreable tasks left out, answers judged and verdicts reused, latency medians, throughput;
    the caption: the run's judged and reused answers in total."""
    from runner.evaluation.verdicts import JudgingCounts, judging_counts

    table = Table(title=f"run {outcome.run_dir}")
    for column in ("cell", "status", "pass", "pass (cleaned)", "unscoreable", "request errors", "judged/reused",
                   "TTFT ms cold", "TTFT ms warm", "TPOT ms warm", "e2e ms warm", "load s", "sweep tok/s"):
        table.add_column(column, justify="left" if column in ("cell", "status") else "right")
    total = JudgingCounts()
    for result in store.cell_results():
        samples = store.latest_samples(result.cell)
        count = pass_count(samples)  # request errors count as not passing, and are shown apart
        judging = judging_counts(samples)
        total += judging
        timed = [s for s in samples if s.phase == "latency" and s.outcome != Outcome.error]
        cold = [s for s in timed if s.cache_state == "cold"]
        latency = [s for s in timed if s.cache_state == "warm"]  # the realistic copilot case
        sweep = " ".join(f"{p.label}:{p.output_tokens_per_s:.0f}" for p in result.sweep) or "-"
        table.add_row(result.cell.id, result.status + (f" ({result.reason[:60]})" if result.reason else ""),
                      f"{count.passed}/{count.scoreable}", f"{count.cleaned_passed}/{count.scoreable}",
                      str(count.unscoreable), str(count.errors), f"{judging.judged}/{judging.reused}",
                      _median_ms([s.ttft_s for s in cold if s.ttft_s is not None]),
                      _median_ms([s.ttft_s for s in latency if s.ttft_s is not None]),
                      _median_ms([s.tpot_s for s in latency if s.tpot_s is not None]),
                      _median_ms([s.e2e_s for s in latency if s.e2e_s is not None]),
                      f"{result.load_seconds:.1f}" if result.load_seconds is not None else "-", sweep)
    table.caption = (f"answers: {total.label} (a reused verdict is the one an identical answer got in "
                     "this environment: runner.evaluation.verdicts)")
    return table
