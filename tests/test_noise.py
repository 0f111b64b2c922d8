"""The noise floor's counts on constructed samples, and which cells of a matrix measure one."""

from __future__ import annotations

from runner.measuring.noise import REPEAT, REPEAT_SERIAL, against_floor, noise_floor
from runner.records import Outcome, Sample


def sample(task: str, phase: str, text: str, outcome: Outcome | None = Outcome.passed, error: str | None = None) -> Sample:
    return Sample(task_id=task, cell_id="m/llamacpp/q4/baseline", phase=phase, prompt_style="prefix",
                  prompt_sha256="0" * 64, raw_text=text, outcome=outcome, error=error)


def test_counts_the_answers_and_verdicts_that_changed_per_repetition():
    samples = [
        sample("a", "accuracy", "x = 1"), sample("b", "accuracy", "y = 2", Outcome.fail),
        sample("c", "accuracy", "z = 3"), sample("d", "accuracy", "w = 4"),
        # at the accuracy concurrency: b's text differs but it still fails; c's differs and now fails
        sample("a", REPEAT, "x = 1"), sample("b", REPEAT, "y = 2 ", Outcome.fail), sample("c", REPEAT, "z = 4", Outcome.fail),
        # one at a time: only a, and its text differs while its verdict holds; d failed as a request
        sample("a", REPEAT_SERIAL, "x=1"), sample("d", REPEAT_SERIAL, "", Outcome.error, "ReadTimeout"),
        sample("e", "latency", "something else"),  # another phase is never counted
    ]
    floor = noise_floor("m/llamacpp/q4/baseline", samples, concurrency=4)
    assert floor.concurrent.model_dump() == {"phase": REPEAT, "concurrency": 4, "tasks": 3, "answers_changed": 2,
                                             "verdicts_changed": 1, "judged": 3}
    assert floor.serial.model_dump() == {"phase": REPEAT_SERIAL, "concurrency": 1, "tasks": 1, "answers_changed": 1,
                                         "verdicts_changed": 0, "judged": 1}
    assert floor.concurrent.words == "2 of 3 answers, 1 of 3 verdicts at concurrency 4"


def test_an_answer_not_yet_judged_counts_for_text_but_not_for_verdicts():
    samples = [sample("a", "accuracy", "x = 1"), sample("a", REPEAT, "x = 2", outcome=None)]
    rep = noise_floor("c", samples, concurrency=2).concurrent
    assert (rep.tasks, rep.answers_changed, rep.judged, rep.verdicts_changed) == (1, 1, 0, 0)


def test_an_unscoreable_repetition_is_no_changed_verdict():
    """The sandbox failing on a repeated answer (environment: named, unscoreable) is not the model's noise."""
    samples = [sample("a", "accuracy", "x = 1"), sample("a", REPEAT, "x = 1", Outcome.unscoreable),
               sample("b", "accuracy", "y = 1", Outcome.unscoreable), sample("b", REPEAT, "y = 1", Outcome.fail)]
    rep = noise_floor("c", samples, concurrency=2).concurrent
    assert (rep.tasks, rep.answers_changed, rep.judged, rep.verdicts_changed) == (2, 0, 0, 0)


def test_a_cell_that_repeated_nothing_has_no_floor():
    assert noise_floor("c", [sample("a", "accuracy", "x")], concurrency=2) is None


def test_a_change_is_above_the_floor_only_when_fisher_says_so():
    from scipy.stats import fisher_exact

    floor = noise_floor("c", [*(sample(t, "accuracy", t) for t in "abcdefghij"),
                              *(sample(t, REPEAT, t) for t in "abcdefghij")], concurrency=2)
    assert floor.concurrent.answers_changed == 0
    above = against_floor(30, 100, floor)
    assert above.p_value == fisher_exact([[30, 70], [0, 10]], alternative="greater").pvalue < 0.05
    assert above.within is False and "above the noise floor" in above.words
    # 24 of 100 against 0 of 10: not distinguishable from what repetition alone gives
    within = against_floor(24, 100, floor)
    assert within.within is True
    assert within.words.startswith("answers changed: 24 of 100 · by repetition alone: 0 of 10 (concurrency 2) "
                                   "· within the noise floor")
    unmeasured = against_floor(24, 100, None)
    assert unmeasured.within is None and unmeasured.words == "answers changed: 24 of 100 · noise floor not measured"


def test_the_demo_repeats_on_its_baselines_only():
    from runner.benchmarks import load_benchmark
    from runner.matrix import load_matrix
    from runner.paths import matrices_dir
    from runner.planning.baselines import baseline_ids
    from runner.planning.selection import repeat_tasks, select_tasks

    matrix = load_matrix(matrices_dir() / "demo.toml")
    benchmark = load_benchmark(matrix.benchmark)
    tasks = select_tasks(benchmark, matrix.tasks)
    repeating = {c.id: repeat_tasks(matrix, benchmark, tasks, c) for c in matrix.cells}
    repeating = {k: v for k, v in repeating.items() if v}
    # the techniques' baseline (the Q4_K_M rung) and the ladder's (F16): the cells others are compared with
    assert set(repeating) == baseline_ids(matrix.cells) == {"qwen2.5-coder-0.5b/llamacpp/q4_k_m/baseline",
                                                            "qwen2.5-coder-0.5b/llamacpp/f16/baseline"}
    picks = list(repeating.values())
    assert all(len(p) == matrix.settings.repeat_tasks for p in picks) and picks[0] == picks[1]
    ids = {t.id for t in tasks}
    assert all(t.id in ids for t in picks[0])
    # spread: one of each program and mode of each language (the starter set has 12 of them)
    assert len({(t.language, t.program, t.mode) for t in picks[0]}) == len(picks[0])
