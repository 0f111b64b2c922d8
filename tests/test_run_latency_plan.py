"""Which prompts the latency phase serves around each timed one (runner.run), on the starter tasks."""

from __future__ import annotations

from runner.benchmarks import load_benchmark
from runner.matrix import RunSettings
from runner.run import latency_subset, predecessor, warmup_tasks

POOL = load_benchmark("starter").available()


def test_the_warm_primer_is_the_previous_task_of_the_same_program_and_mode():
    for task in POOL:
        before = predecessor(task, POOL)
        assert before is not None and before.id != task.id
        assert (before.program, before.mode, before.language) == (task.program, task.mode, task.language)
        earlier = [t.span[0] for t in POOL if (t.program, t.mode) == (task.program, task.mode) and t.span[0] < task.span[0]]
        if earlier:  # the nearest span above: the prompt a copilot served just before this one
            assert before.span[0] == max(earlier)
        else:  # the first gap of a program: the next one down still shares the program's head
            assert before.span[0] > task.span[0]


def test_warm_up_never_uses_a_timed_prompt():
    settings = RunSettings(latency_tasks=5, seed=0)
    timed = latency_subset(POOL, settings)
    chosen = warmup_tasks(POOL, timed, 3, settings.seed)
    assert len(chosen) == 3 and not {t.id for t in chosen} & {t.id for t in timed}
    assert warmup_tasks(POOL, timed, 3, settings.seed) == chosen  # seeded
    assert warmup_tasks(POOL[:2], POOL[:2], 1, 0)[0] in POOL[:2]  # nothing else exists: a timed one, said so
