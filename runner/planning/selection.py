"""Choosing tasks: which tasks a run asks (``[tasks]``), which a cell asks, and which the latency
phase times and warms up with. Pure functions of the benchmark and the matrix, used by the run,
its cells on any node and the plan alike."""

from __future__ import annotations

import itertools
import random

from runner.benchmarks.benchmark import Benchmark
from runner.errors import UserError
from runner.matrix import Matrix, RunSettings, TaskFilter
from runner.measuring.ratesearch import next_rate_probe
from runner.records import Cell, Task
from runner.store import SweepPoint, load_label


def select_tasks(benchmark: Benchmark, task_filter: TaskFilter) -> list[Task]:
    """The available tasks the filter selects; with a limit, taken in turn from each program."""
    languages = set(task_filter.languages)
    modes = set(task_filter.modes)
    programs = set(task_filter.programs)
    unknown = programs - set(benchmark.programs)
    if unknown:
        raise UserError(f"tasks.programs = {sorted(unknown)}: no such program in benchmark {benchmark.name}; "
                        f"programs: {', '.join(sorted(benchmark.programs))}")
    chosen = [t for t in benchmark.available()
              if (not languages or t.language in languages) and (not modes or t.mode in modes)
              and (not programs or t.program in programs)]
    if task_filter.limit is None or len(chosen) <= task_filter.limit:
        return chosen
    return round_robin(chosen, task_filter.limit)


def round_robin(chosen: list[Task], limit: int) -> list[Task]:
    """``limit`` of ``chosen`` (in benchmark order), taken in turn from each program and mode, the
    languages alternating, so that a small limit still covers every language, program and mode.
    The first k of a pick are the pick of k: a smaller limit selects a subset of a larger one."""
    groups: dict[tuple[str, str, str], list[Task]] = {}
    for task in chosen:
        groups.setdefault((task.language.value, task.program, task.mode.value), []).append(task)
    by_language: dict[str, list[list[Task]]] = {}
    for (language, _, _), group in groups.items():
        by_language.setdefault(language, []).append(group)
    interleaved = [g for row in itertools.zip_longest(*by_language.values()) for g in row if g is not None]
    queues = [list(reversed(group)) for group in interleaved]
    picked: list[Task] = []
    while len(picked) < min(limit, len(chosen)):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop())
    return picked


def cell_latency_tasks(matrix: Matrix, latency_tasks: list[Task], cell: Cell) -> list[Task]:
    """The run's latency tasks that ``cell`` times: all, or the first as many as its group says."""
    limits = matrix.limits.get(cell.id)
    return latency_tasks if limits is None or limits.latency_tasks is None else latency_tasks[:limits.latency_tasks]


def cell_tasks(matrix: Matrix, benchmark: Benchmark, tasks: list[Task], cell: Cell) -> list[Task]:
    """The run's ``tasks`` that ``cell`` answers: all of them, or the round-robin pick of its group's
    ``limit`` from them (a subset of every other cell's tasks, so that comparisons pair up)."""
    limits = matrix.limits.get(cell.id)
    limit = limits.tasks if limits else None
    if limit is None or len(tasks) <= limit:
        return tasks
    order = {t.id: n for n, t in enumerate(benchmark.available())}
    return round_robin(sorted(tasks, key=lambda t: order[t.id]), limit)


def cell_repeats(matrix: Matrix, cell: Cell) -> bool:
    """Whether ``cell`` measures its noise floor (``settings.repeat_tasks``, ``settings.repeat_cells``)."""
    from runner.planning.baselines import baseline_ids

    settings = matrix.settings
    if not settings.repeat_tasks:
        return False
    return settings.repeat_cells == "all" or cell.id in baseline_ids(matrix.cells)


def repeat_tasks(matrix: Matrix, benchmark: Benchmark, tasks: list[Task], cell: Cell) -> list[Task]:
    """The ``settings.repeat_tasks`` of ``cell``'s tasks it asks again (none where it does not repeat):
    a seeded draw, taken in turn from each program and mode so that a few still spread."""
    if not cell_repeats(matrix, cell):
        return []
    mine = cell_tasks(matrix, benchmark, tasks, cell)
    # round_robin keeps its input's order within a program: shuffled first, each program's pick is seeded
    shuffled = random.Random(matrix.settings.seed + 2).sample(mine, len(mine))
    return round_robin(shuffled, matrix.settings.repeat_tasks)


def cell_sweep_requests(matrix: Matrix, cell: Cell) -> int:
    """Requests per sweep point for ``cell``: its group's ``sweep_requests``, else the run's (0: no sweep)."""
    limits = matrix.limits.get(cell.id)
    if limits is not None and limits.sweep_requests is not None:
        return limits.sweep_requests
    return matrix.settings.sweep_requests


def sweep_tasks(matrix: Matrix, benchmark: Benchmark, tasks: list[Task], cell: Cell) -> list[Task]:
    """The ``cell_sweep_requests`` of ``cell``'s tasks asked at every sweep point: a seeded draw
    taken in turn from each program and mode, so that every point pairs with the accuracy phase."""
    count = cell_sweep_requests(matrix, cell)
    if not count:
        return []
    mine = cell_tasks(matrix, benchmark, tasks, cell)
    shuffled = random.Random(matrix.settings.seed + 3).sample(mine, len(mine))
    return round_robin(shuffled, count)


def sweep_loads(matrix: Matrix, cell: Cell) -> list[str]:
    """``cell``'s sweep points as ``runner.store.load_label`` names them: the concurrencies, then the rates."""
    if not cell_sweep_requests(matrix, cell):
        return []
    settings = matrix.settings
    return [load_label(concurrency=c) for c in settings.sweep] + [load_label(rate=r) for r in settings.sweep_rates]


#: the sweep's to-do entry for the rate search (settings.find_max_rate), beside the points' labels
RATE_SEARCH = "search"


def sweep_todo(matrix: Matrix, cell: Cell, measured: list[SweepPoint]) -> list[str]:
    """What the sweep of ``cell`` still has to do, given its ``measured`` points: the labels of the
    missing points, then ``RATE_SEARCH`` while the rate search may probe again."""
    done = {p.label for p in measured}
    todo = [load for load in sweep_loads(matrix, cell) if load not in done]
    probes = matrix.settings.find_max_rate
    # the search's next probe depends on the rates' attainments: pending until they are measured
    if probes and cell_sweep_requests(matrix, cell) and (
            todo or next_rate_probe(measured, matrix.slo.attainment, probes) is not None):
        todo.append(RATE_SEARCH)
    return todo


def latency_subset(tasks: list[Task], settings: RunSettings, pool: list[Task] | None = None) -> list[Task]:
    """The seeded subset timed one request at a time: tasks with an earlier gap in the same program
    and mode (the ``warm`` state serves that one first), from the selected ``tasks``, then from the
    rest of ``pool`` (every task the filter allows) when the selection has too few (a small limit
    takes each program's first gaps, which have nothing above them)."""
    pool = pool if pool is not None else tasks
    rng = random.Random(settings.seed)
    chosen = [t for t in tasks if predecessor(t, pool) is not None]
    picked = rng.sample(chosen, min(settings.latency_tasks, len(chosen)))
    if len(picked) < settings.latency_tasks:
        ids = {t.id for t in tasks}
        extra = [t for t in pool if t.id not in ids and predecessor(t, pool) is not None]
        picked += rng.sample(extra, min(settings.latency_tasks - len(picked), len(extra)))
    return picked


def state_key(state: str) -> str:
    """The ``Sample.phase_key`` a cache state's sample is stored under."""
    return "replay/replay" if state == "replay" else f"latency/{state}"


def predecessor(task: Task, pool: list[Task]) -> Task | None:
    """The task served just before ``task`` in a copilot session going down the file: the same
    program and mode, the nearest span above it; None for a program's first gap. Its prompt shares
    ``task``'s prefix up to its own gap, never all of it (a gap below would hold ``task``'s whole
    prompt for a prefix-only style: a replay in disguise)."""
    above = [t for t in pool if t.program == task.program and t.language == task.language
             and t.mode == task.mode and t.span[0] < task.span[0]]
    return max(above, key=lambda t: t.span[0]) if above else None


def warmup_tasks(tasks: list[Task], timed: list[Task], count: int, seed: int) -> list[Task]:
    """``count`` tasks whose prompts are never timed (the timed ones only when nothing else exists)."""
    timed_ids = {t.id for t in timed}
    others = [t for t in tasks if t.id not in timed_ids] or list(tasks)
    if not others:
        return []
    rng = random.Random(seed + 1)
    return [rng.choice(others) for _ in range(count)]
