"""What ran where and when on a run's nodes (``activity.jsonl``), and the node-level timing lock.

Several cells may share a node. Their accuracy phases may overlap: an answer does not depend on
what a neighbour does (the noise floor measures how much batching moves it). A timed phase
(latency, sweep) must not: a latency figure taken while a neighbour generates is not the cell's
own. So every phase that generates takes the node's ``TimingLock``, shared for untimed phases and
exclusive for timed ones, and records itself in ``activity.jsonl``: node, GPU ids, start and end,
the seconds it waited for the lock. ``overlapping_timed`` reads that back to prove, per timed
sample, that nothing else generated on its node meanwhile; the report shows the count.

The lock is a pair of ``flock`` files under the runner home, one pair per node, so it holds across
threads (the in-process executor's cells) and processes (Ray's workers on one node, two runners
under the same home) alike. A waiting timed phase blocks new untimed phases (writer preference):
otherwise a matrix of many cells would postpone every timed phase to its end, each holding its GPUs.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from runner.paths import runner_home
from runner.records import Sample, utcnow

#: phases during which a cell's server generates; the timed ones take the node's lock exclusively
GENERATING = ("accuracy", "repeat", "latency", "sweep")
TIMED = ("latency", "sweep")
#: sample phases whose timing is a reported figure (``replay`` is the latency phase's own state)
TIMED_SAMPLE_PHASES = ("latency", "replay")
#: a wait longer than this is told as it happens (shorter ones only land in the activity record)
_TELL_AFTER_S = 1.0
_POLL_S = 0.05

ACTIVITY_NAME = "activity.jsonl"


class Activity(BaseModel):
    """One line of ``activity.jsonl``: a cell attempt, one of its phases, or one evaluation."""

    kind: Literal["cell", "phase", "eval"] = Field(description="what ran: a cell attempt, a phase of it, a test")
    cell_id: str
    phase: str | None = Field(None, description="the phase (kind phase): accuracy, repeat, latency, sweep")
    task_id: str | None = Field(None, description="the task judged (kind eval)")
    node_id: str = Field(description="the cluster's node id; the host name in process")
    node: str = Field(description="the host name")
    gpu_ids: list[int] = Field(default_factory=list, description="GPU ids the cell's server holds")
    started_at: datetime
    ended_at: datetime
    outcome: str | None = None
    timed: bool = Field(False, description="a timed phase: it held the node's timing lock alone")
    lock_wait_s: float | None = Field(None, description="seconds the phase waited for the node's timing lock")


class ActivityLog:
    """``activity.jsonl`` of one run directory: appended and flushed a line at a time, any thread."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ACTIVITY_NAME
        self._lock = threading.Lock()

    def append(self, record: Activity) -> None:
        from runner.store import private_file

        with self._lock, open(private_file(self.path), "a", encoding="utf-8") as fh:
            fh.write(record.model_dump_json() + "\n")
            fh.flush()


def read_activity(run_dir: Path) -> list[Activity] | None:
    """The run's activity records, oldest first; None when the run kept none (made before them)."""
    path = Path(run_dir) / ACTIVITY_NAME
    if not path.is_file():
        return None
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Activity.model_validate_json(line))
    return out


# -- the timing lock --------------------------------------------------------------------------------
def _lock_dir() -> Path:
    folder = runner_home() / "locks"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


class TimingLock:
    """The node's timing lock: ``shared()`` while a phase generates untimed, ``exclusive()`` while one is timed.

    Both are async context managers that poll a non-blocking ``flock`` (a cancelled cell stops
    waiting at once); ``waited`` holds the seconds the last acquisition took."""

    def __init__(self, node: str, *, folder: Path | None = None, tell: Callable[[str], None] | None = None):
        self.node = node
        digest = hashlib.sha256(node.encode()).hexdigest()[:16]  # any node id is a safe file name
        base = (folder or _lock_dir()) / f"timing-{digest}"
        self._main, self._turnstile = Path(f"{base}.lock"), Path(f"{base}.turnstile")
        self._tell = tell or (lambda _text: None)
        self.waited = 0.0

    def shared(self) -> "_Held":
        return _Held(self, exclusive=False)

    def exclusive(self) -> "_Held":
        return _Held(self, exclusive=True)

    @staticmethod
    def _open(path: Path) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    async def _take(self, fd: int, mode: int, what: str, started: float, told: list[bool]) -> None:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if not told[0] and time.monotonic() - started > _TELL_AFTER_S:
                told[0] = True
                self._tell(f"waiting for the timing lock on node {self.node} ({what})")
            await asyncio.sleep(_POLL_S)


class _Held:
    def __init__(self, lock: TimingLock, *, exclusive: bool):
        self.lock, self.exclusive = lock, exclusive
        self._fds: list[int] = []

    async def __aenter__(self) -> "_Held":
        lock = self.lock
        started, told = time.monotonic(), [False]
        turnstile = lock._open(lock._turnstile)
        self._fds.append(turnstile)
        try:
            # everyone passes the turnstile; a timed phase keeps it until it holds the lock alone,
            # so that no untimed phase starts while it waits
            await lock._take(turnstile, fcntl.LOCK_EX, "a timed phase waits" if not self.exclusive
                             else "another timed phase", started, told)
            if not self.exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
            main = lock._open(lock._main)
            self._fds.append(main)
            await lock._take(main, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH,
                             "other cells generate" if self.exclusive else "a timed phase runs", started, told)
            if self.exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        except BaseException:
            self._close()
            raise
        lock.waited = time.monotonic() - started
        if told[0]:
            lock._tell(f"timing lock on node {lock.node} taken after {lock.waited:.1f} s")
        return self

    async def __aexit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the descriptor releases its flock
        self._fds.clear()


# -- reading it back --------------------------------------------------------------------------------
class TimedOverlap(BaseModel):
    """A timed sample (or sweep phase) during which another cell generated on the same node."""

    cell_id: str
    phase: str
    task_id: str | None = None  # None for a sweep phase (its requests are not kept one by one)
    node: str
    others: list[str] = Field(description="the cells that generated on the node meanwhile")


class TimingIsolation(BaseModel):
    """How a run's timed figures were isolated from other generation on their nodes."""

    recorded: bool = Field(description="the run kept activity records (runs made before them did not)")
    timed_samples: int = Field(0, description="timed samples checked against the activity records")
    unplaced: int = Field(0, description="timed samples no recorded phase of their cell covers")
    overlaps: list[TimedOverlap] = Field(default_factory=list)
    parallel: bool = Field(False, description="some cells generated at the same time on one node")


def _spans(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def overlapping_timed(activity: list[Activity] | None, samples: Iterable[Sample]) -> TimingIsolation:
    """Each timed sample of ``samples`` checked against the other cells' generating phases on its node."""
    if activity is None:
        return TimingIsolation(recorded=False)
    phases = [a for a in activity if a.kind == "phase" and a.phase in GENERATING]
    result = TimingIsolation(recorded=True)
    for a in phases:
        if any(b.cell_id != a.cell_id and b.node_id == a.node_id and _spans(a.started_at, a.ended_at, b.started_at,
                                                                             b.ended_at) for b in phases):
            result.parallel = True
            break

    def others(cell_id: str, node_id: str, start: datetime, end: datetime) -> list[str]:
        return sorted({b.cell_id for b in phases if b.cell_id != cell_id and b.node_id == node_id
                       and _spans(start, end, b.started_at, b.ended_at)})

    for sample in samples:
        if sample.phase not in TIMED_SAMPLE_PHASES or sample.finished_at is None or sample.error:
            continue
        result.timed_samples += 1
        own = next((a for a in phases if a.cell_id == sample.cell_id and a.timed
                    and a.started_at <= sample.started_at and sample.finished_at <= a.ended_at), None)
        if own is None:
            result.unplaced += 1
            continue
        found = others(sample.cell_id, own.node_id, sample.started_at, sample.finished_at)
        if found:
            result.overlaps.append(TimedOverlap(cell_id=sample.cell_id, phase=sample.phase, task_id=sample.task_id,
                                                node=own.node, others=found))
    for a in phases:
        if a.phase == "sweep":
            found = others(a.cell_id, a.node_id, a.started_at, a.ended_at)
            if found:
                result.overlaps.append(TimedOverlap(cell_id=a.cell_id, phase="sweep", node=a.node, others=found))
    return result


def phase_record(cell_id: str, phase: str, node_id: str, node: str, gpu_ids: list[int], started_at: datetime,
                 *, timed: bool, lock_wait_s: float | None, outcome: str) -> Activity:
    """The activity line of one finished phase."""
    return Activity(kind="phase", cell_id=cell_id, phase=phase, node_id=node_id, node=node, gpu_ids=gpu_ids,
                    started_at=started_at, ended_at=utcnow(), outcome=outcome, timed=timed,
                    lock_wait_s=None if lock_wait_s is None else round(lock_wait_s, 3))
