"""The node's timing lock (real flock files, threads and processes) and the overlap check read from activity records."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from runner.measuring.activity import Activity, ActivityLog, TimingLock, overlapping_timed, read_activity
from runner.records import Sample, utcnow


async def _hold(lock: TimingLock, exclusive: bool, seconds: float, log: list, name: str) -> None:
    async with (lock.exclusive() if exclusive else lock.shared()):
        log.append((name, "in", time.monotonic()))
        await asyncio.sleep(seconds)
        log.append((name, "out", time.monotonic()))


def _span(log: list, name: str) -> tuple[float, float]:
    start = next(t for n, what, t in log if n == name and what == "in")
    end = next(t for n, what, t in log if n == name and what == "out")
    return start, end


def test_untimed_phases_share_the_lock_and_a_timed_one_waits_for_all_of_them(tmp_path):
    log: list = []

    async def main():
        # each holder opens its own descriptors, as two cells on two threads do
        a, b, timed = (TimingLock("node-1", folder=tmp_path) for _ in range(3))
        first = asyncio.create_task(_hold(a, False, 0.4, log, "a"))
        second = asyncio.create_task(_hold(b, False, 0.6, log, "b"))
        await asyncio.sleep(0.1)
        await _hold(timed, True, 0.1, log, "timed")
        await asyncio.gather(first, second)
        return timed.waited

    waited = asyncio.run(main())
    a, b, t = _span(log, "a"), _span(log, "b"), _span(log, "timed")
    assert a[0] < b[1] and b[0] < a[1], "two untimed phases overlapped"
    assert t[0] >= max(a[1], b[1]), "the timed phase started while others generated"
    assert waited >= 0.4


def test_a_waiting_timed_phase_keeps_new_untimed_phases_out(tmp_path):
    log: list = []

    async def main():
        running, timed, late = (TimingLock("node-1", folder=tmp_path) for _ in range(3))
        first = asyncio.create_task(_hold(running, False, 0.5, log, "running"))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(_hold(timed, True, 0.3, log, "timed"))
        await asyncio.sleep(0.1)  # the timed phase now waits for "running"
        await _hold(late, False, 0.05, log, "late")
        await asyncio.gather(first, waiting)

    asyncio.run(main())
    assert _span(log, "late")[0] >= _span(log, "timed")[1], "an untimed phase slipped in before the waiting timed one"


def test_other_nodes_do_not_wait(tmp_path):
    log: list = []

    async def main():
        here, there = TimingLock("node-1", folder=tmp_path), TimingLock("node-2", folder=tmp_path)
        busy = asyncio.create_task(_hold(here, True, 0.5, log, "here"))
        await asyncio.sleep(0.05)
        await _hold(there, True, 0.05, log, "there")
        await busy

    asyncio.run(main())
    assert _span(log, "there")[1] < _span(log, "here")[1]


def test_the_lock_holds_across_processes(tmp_path):
    """A Ray worker on the same node is another process: it must wait too."""
    script = (f"import asyncio, time\nfrom pathlib import Path\nfrom runner.measuring.activity import TimingLock\n"
              f"async def main():\n    async with TimingLock('node-1', folder=Path({str(tmp_path)!r})).shared():\n"
              f"        print('held', flush=True)\n        time.sleep(1.0)\nasyncio.run(main())\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    started = time.monotonic()

    async def timed():
        lock = TimingLock("node-1", folder=tmp_path)
        async with lock.exclusive():
            return lock.waited

    waited = asyncio.run(timed())
    child.wait(timeout=10)
    assert waited >= 0.5 and time.monotonic() - started >= 0.5


def test_a_cancelled_wait_releases_what_it_took(tmp_path):
    async def main():
        holder, waiter, after = (TimingLock("n", folder=tmp_path) for _ in range(3))
        async with holder.shared():
            task = asyncio.create_task(_hold(waiter, True, 0.0, [], "w"))
            await asyncio.sleep(0.2)  # the waiter holds the turnstile now
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        async with after.shared():  # would wait forever on a turnstile left taken
            return True

    assert asyncio.run(asyncio.wait_for(main(), 5))


# -- the overlap check ----------------------------------------------------------------------------
T0 = utcnow()


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def phase(cell: str, name: str, start: float, end: float, *, node: str = "n1", timed: bool = False) -> Activity:
    return Activity(kind="phase", cell_id=cell, phase=name, node_id=node, node=node, started_at=at(start),
                    ended_at=at(end), timed=timed)


def latency_sample(cell: str, task: str, start: float, end: float) -> Sample:
    return Sample(task_id=task, cell_id=cell, phase="latency", cache_state="warm", prompt_style="prefix",
                  prompt_sha256="x", raw_text="y", e2e_s=end - start, started_at=at(start), finished_at=at(end))


def test_a_timed_sample_during_a_neighbours_accuracy_phase_is_flagged_and_one_after_it_is_not():
    activity = [phase("a", "accuracy", 0, 10), phase("b", "accuracy", 0, 4),
                phase("b", "latency", 4, 20, timed=True), phase("a", "latency", 21, 30, timed=True)]
    samples = [latency_sample("b", "t1", 5, 6),      # a still generates: not isolated
               latency_sample("b", "t2", 11, 12),    # a has finished its accuracy phase
               latency_sample("a", "t1", 22, 23)]
    found = overlapping_timed(activity, samples)
    assert found.recorded and found.parallel and found.timed_samples == 3 and found.unplaced == 0
    assert [(o.cell_id, o.task_id, o.others) for o in found.overlaps] == [("b", "t1", ["a"])]


def test_generation_on_another_node_is_no_overlap_and_a_run_without_records_says_so():
    activity = [phase("a", "accuracy", 0, 10, node="n1"), phase("b", "latency", 0, 10, node="n2", timed=True)]
    found = overlapping_timed(activity, [latency_sample("b", "t1", 1, 2)])
    assert found.overlaps == [] and not found.parallel
    assert overlapping_timed(None, []).recorded is False


def test_a_sweep_phase_overlapping_a_neighbour_is_flagged():
    activity = [phase("a", "sweep", 0, 10, timed=True), phase("b", "accuracy", 9, 12)]
    (overlap,) = overlapping_timed(activity, []).overlaps
    assert (overlap.cell_id, overlap.phase, overlap.others) == ("a", "sweep", ["b"])


def test_the_activity_log_appends_records_that_read_back(tmp_path: Path):
    log = ActivityLog(tmp_path)
    log.append(phase("a", "accuracy", 0, 1))
    log.append(phase("a", "latency", 1, 2, timed=True))
    records = read_activity(tmp_path)
    assert [(r.phase, r.timed) for r in records] == [("accuracy", False), ("latency", True)]
    assert (tmp_path / "activity.jsonl").stat().st_mode & 0o777 == 0o600
    assert read_activity(tmp_path / "nowhere") is None
