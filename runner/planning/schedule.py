"""The plan's simulated schedule: cells at once on a node's GPUs, timed phases alone under its timing lock.

``runner.planning.plan`` turns each cell's estimate (``runner.planning.estimates``) into a ``ScheduleItem`` and asks
``simulate`` for the run's end as the executors would reach it: the in-process executor's placement
on one node, or Ray's over a cluster's nodes, each node with ``runner.measuring.activity``'s timing lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


class ScheduleNode(BaseModel):
    """A node cells are placed on (this host in process, a cluster's node under Ray)."""

    name: str
    gpus: int  # 0: its cells run on its CPUs
    cells_at_once: int | None = None  # ``settings.parallel_cells`` or its default (None: as GPUs allow)
    cpu_cells: int | None = None  # cells without GPUs it holds at once (None: no limit but the above)


class ScheduleItem(BaseModel):
    """One cell as the schedule sees it: the GPUs it holds, its generation's parts, its judging."""

    id: str
    gpus: int
    load_h: float
    untimed_h: float
    timed_h: float
    eval_h: float

    @property
    def sequential_h(self) -> float:
        """Alone: its answers judged while it generates, the longer of the two."""
        return max(self.load_h + self.untimed_h + self.timed_h, self.eval_h)


class Span(BaseModel):
    start_h: float
    end_h: float


class ScheduledCell(BaseModel):
    """Where and when a cell runs in the simulated schedule, hours from the run's start."""

    id: str
    node: str
    gpu_ids: list[int]
    start_h: float  # its GPUs taken; it loads
    untimed: Span | None  # its accuracy phase, sharing the node
    timed: Span | None  # its latency and sweep, the node's timing lock held alone
    end_h: float  # its generation and its answers' judging both over: its GPUs free


class Schedule(BaseModel):
    """The simulated run: each cell placed, the run's end, and what one cell at a time would take."""

    nodes: list[ScheduleNode]
    cells: list[ScheduledCell]
    makespan_h: float
    sequential_h: float
    judging_h: float  # every answer's judging on the evaluation pool, end to end
    at_once: int  # the most cells running together

    @property
    def hours(self) -> float:
        """The run's end: the schedule's, unless the evaluation pool, shared by every cell, ends later."""
        return max(self.makespan_h, self.judging_h)


@dataclass
class _Running:
    item: ScheduleItem
    node: int
    gpu_ids: list[int]
    start: float
    stage: str = "load"  # load, wait-shared, untimed, wait-timed, timed, tail
    ends: float = 0.0  # the running stage's end
    untimed: Span | None = None
    timed: Span | None = None
    generated: float = 0.0


_EPS = 1e-9


def simulate(items: list[ScheduleItem], nodes: list[ScheduleNode]) -> Schedule:
    """Place ``items`` in order on ``nodes`` as the executors do: a cell starts when a node has its GPUs
    free (and a cell slot), a cell that does not fit yet letting a smaller one behind it start, on the
    first node that fits; a cell needing more GPUs than any node has takes the largest whole. Each node
    has ``runner.measuring.activity``'s timing lock: an untimed phase holds it shared, a timed one alone, granted
    in the order asked, so that a waiting timed phase holds back untimed phases asked after it. A cell
    loads without it, and keeps its GPUs until the longer of its generation and its judging is over
    (the plan's model of judging beside generation, as for one cell at a time)."""
    widest = max((n.gpus for n in nodes), default=0)
    free = [list(range(n.gpus)) for n in nodes]
    holders: list[list[_Running]] = [[] for _ in nodes]  # of the lock
    asked: list[list[tuple[_Running, bool]]] = [[] for _ in nodes]  # (cell, exclusive), in order
    waiting = list(items)
    running: list[_Running] = []
    placed: dict[str, ScheduledCell] = {}
    now, at_once = 0.0, 0

    def need(item: ScheduleItem, node: ScheduleNode) -> int | None:
        if not node.gpus:
            return 0 if (item.gpus == 0 or widest == 0) else None
        if item.gpus > widest:
            return node.gpus if node.gpus == widest else None
        return item.gpus if item.gpus else 0

    def fits(item: ScheduleItem, index: int) -> bool:
        node, gpus = nodes[index], need(item, nodes[index])
        if gpus is None:
            return False
        here = [r for r in running if r.node == index]
        if node.cells_at_once is not None and len(here) >= node.cells_at_once:
            return False
        if gpus == 0 and node.cpu_cells is not None and sum(not r.gpu_ids for r in here) >= node.cpu_cells:
            return False
        return len(free[index]) >= gpus

    def advance(run: _Running) -> None:
        """Its next stage, from ``now``."""
        order = ("load", "wait-shared", "untimed", "wait-timed", "timed", "tail")
        stage = order[order.index(run.stage) + 1]
        if stage == "wait-shared" and run.item.untimed_h <= 0:
            stage = "wait-timed"
        if stage == "wait-timed" and run.item.timed_h <= 0:
            stage = "tail"
        run.stage = stage
        if stage in ("wait-shared", "wait-timed"):
            asked[run.node].append((run, stage == "wait-timed"))
        elif stage == "tail":
            run.generated = now
            run.ends = max(now, run.start + run.item.eval_h)

    while waiting or running:
        for item in list(waiting):
            index = next((i for i in range(len(nodes)) if fits(item, i)), None)
            if index is None:
                continue
            gpus = need(item, nodes[index]) or 0
            run = _Running(item=item, node=index, gpu_ids=free[index][:gpus], start=now, ends=now + item.load_h)
            del free[index][:gpus]
            waiting.remove(item)
            running.append(run)
        at_once = max(at_once, len(running))
        if not running:
            raise ValueError("a cell fits no node of the schedule")  # need() always finds one: a bug
        for index in range(len(nodes)):
            while asked[index]:
                run, exclusive = asked[index][0]
                held = holders[index]
                if (exclusive and held) or any(h.stage == "timed" for h in held):
                    break
                asked[index].pop(0)
                held.append(run)
                run.stage = "timed" if exclusive else "untimed"
                length = run.item.timed_h if exclusive else run.item.untimed_h
                run.ends = now + length
                span = Span(start_h=now, end_h=now + length)
                run.timed, run.untimed = (span, run.untimed) if exclusive else (run.timed, span)
        now = min(r.ends for r in running if r.stage in ("load", "untimed", "timed", "tail"))
        for run in list(running):
            if run.stage not in ("load", "untimed", "timed", "tail") or run.ends > now + _EPS:
                continue
            if run.stage in ("untimed", "timed"):
                holders[run.node].remove(run)
            if run.stage != "tail":
                advance(run)
                if run.stage != "tail" or run.ends > now + _EPS:
                    continue
            running.remove(run)
            free[run.node] = sorted(free[run.node] + run.gpu_ids)
            placed[run.item.id] = ScheduledCell(id=run.item.id, node=nodes[run.node].name, gpu_ids=run.gpu_ids,
                                                start_h=run.start, untimed=run.untimed, timed=run.timed,
                                                end_h=run.ends)
    cells = [placed[item.id] for item in items]
    return Schedule(nodes=nodes, cells=cells, makespan_h=max((c.end_h for c in cells), default=0.0),
                    sequential_h=sum(item.sequential_h for item in items),
                    judging_h=sum(item.eval_h for item in items), at_once=at_once)
