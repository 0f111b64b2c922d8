"""Which prompts the latency phase serves around each timed one (runner.running.run), on the starter tasks."""

from __future__ import annotations

from runner.benchmarks import load_benchmark
from runner.matrix import RunSettings
from runner.planning.selection import latency_subset, predecessor, warmup_tasks

POOL = load_benchmark("starter").available()


def test_the_warm_primer_is_the_previous_gap_of_the_same_program_and_mode():
    for task in POOL:
        before = predecessor(task, POOL)
        earlier = [t.span[0] for t in POOL if (t.program, t.mode) == (task.program, task.mode) and t.span[0] < task.span[0]]
        if not earlier:  # a program's first gap: nothing was served above it
            assert before is None
            continue
        assert (before.program, before.mode, before.language) == (task.program, task.mode, task.language)
        assert before.span[0] == max(earlier)  # the prompt a copilot served just before this one
        # a prefix-only prompt of the gap above is a strict prefix of this one: shared, never all of it
        assert task.before.startswith(before.before) and len(before.before) < len(task.before)


def test_a_small_limit_still_times_tasks_that_have_a_warm_state():
    from runner.matrix import TaskFilter
    from runner.planning.selection import select_tasks

    bench = load_benchmark("starter")
    firsts = select_tasks(bench, TaskFilter(limit=12))  # round robin: each program's first gaps
    assert all(predecessor(t, POOL) is None for t in firsts)
    timed = latency_subset(firsts, RunSettings(latency_tasks=5, seed=0), select_tasks(bench, TaskFilter()))
    assert len(timed) == 5 and all(predecessor(t, POOL) is not None for t in timed)


def test_warm_up_never_uses_a_timed_prompt():
    settings = RunSettings(latency_tasks=5, seed=0)
    timed = latency_subset(POOL, settings)
    chosen = warmup_tasks(POOL, timed, 3, settings.seed)
    assert len(chosen) == 3 and not {t.id for t in chosen} & {t.id for t in timed}
    assert warmup_tasks(POOL, timed, 3, settings.seed) == chosen  # seeded
    assert warmup_tasks(POOL[:2], POOL[:2], 1, 0)[0] in POOL[:2]  # nothing else exists: a timed one, said so
