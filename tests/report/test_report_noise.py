"""The noise floor in the report: beside each comparison, never an effect inside it, never a pass rate."""

from __future__ import annotations

import random

from runner.measuring.noise import REPEAT, REPEAT_SERIAL
from runner.records import Outcome
from runner.report import render
from runner.report.data import load_runs, load_tasks
from runner.report.tables import build
from tests.report.conftest import BASELINE, H100, SPEC, make_sample, write_run
from tests.report.test_report import latest_accuracy


def paired_run(tmp_path, *, repeat_changed: int | None, repeated: int = 10):
    """A baseline and a technique that breaks 24 of the baseline's passes (its text changed there);
    the baseline asked ``repeated`` tasks again, ``repeat_changed`` of them with another text, which
    fails (None: never asked again)."""
    run = write_run(tmp_path / "runs", "noisy", H100, [BASELINE, SPEC], speed=1.0, seed=5)
    tasks = sorted(latest_accuracy(run.root, BASELINE))
    rng = random.Random(9)
    for index, task_id in enumerate(tasks):
        same = Outcome.passed if index % 3 else Outcome.fail
        base = make_sample(BASELINE, task_id, "accuracy", rng, outcome=same)
        run.append_sample(BASELINE, base.model_copy(update={"raw_text": f"answer {task_id}"}))
        broken = index < 36 and same == Outcome.passed
        spec = make_sample(SPEC, task_id, "accuracy", rng, outcome=Outcome.fail if broken else same)
        run.append_sample(SPEC, spec.model_copy(update={"raw_text": f"{'other' if broken else 'answer'} {task_id}"}))
    if repeat_changed is not None:
        first = latest_accuracy(run.root, BASELINE)
        for index, task_id in enumerate(tasks[:repeated]):
            for phase in (REPEAT, REPEAT_SERIAL):
                # a changed answer fails, and every repeated one is fast: were they counted, the pass
                # rate and the latency would move
                changed = index < repeat_changed
                again = make_sample(BASELINE, task_id, "accuracy", rng, speed=50.0,
                                    outcome=Outcome.fail if changed else first[task_id])
                text = f"again {task_id}" if changed else f"answer {task_id}"
                run.append_sample(BASELINE, again.model_copy(update={"phase": phase, "raw_text": text}))
    return run


def test_a_technique_whose_changes_repetition_alone_matches_is_within_the_noise_floor(tmp_path):
    quiet = build(load_runs([paired_run(tmp_path / "a", repeat_changed=None).root]), load_tasks([]))
    run = paired_run(tmp_path / "b", repeat_changed=6)
    tables = build(load_runs([run.root]), load_tasks(load_runs([run.root])))
    (comparison,) = tables.techniques
    assert (comparison.only_baseline, comparison.only_cell) == (24, 0) and comparison.p_value < 1e-6
    noise = comparison.noise
    assert (noise.changed, noise.pairs, noise.floor.answers_changed, noise.floor.tasks) == (24, comparison.pairs, 6, 10)
    assert noise.within and noise.floor.concurrency == 8  # the manifest's settings.concurrency
    # McNemar alone would say "lost": 24 of ~120 answers changed is less often than 6 of 10 by repetition
    assert comparison.accuracy.startswith("no change beyond the noise floor (-")
    assert "lost" not in comparison.verdict
    assert noise.words.startswith(f"answers changed: 24 of {comparison.pairs} · by repetition alone: 6 of 10 "
                                  "(concurrency 8) · within the noise floor")
    # the repeated answers count in no pass rate and no latency figure
    by_label = {r.cell.label: r for r in tables.headline}
    before = {r.cell.label: r for r in quiet.headline}
    assert by_label[BASELINE.id].overall == before[BASELINE.id].overall
    assert by_label[BASELINE.id].latency == before[BASELINE.id].latency
    (row,) = [(c.label, f) for c, f in tables.noise]
    assert row[0] == BASELINE.id and (row[1].serial.tasks, row[1].serial.answers_changed) == (10, 6)

    paths = render([run.root], tmp_path / "report")
    page = paths.html.read_text()
    assert "by repetition alone: 6 of 10" in page and "within the noise floor" in page and 'id="noise-table"' in page
    markdown = paths.markdown.read_text()
    assert "by repetition alone: 6 of 10" in markdown and "Fisher exact" in markdown
    assert "6 of 10 answers, 4 of 10 verdicts at concurrency 1" in markdown  # 4 of the 6 had passed
    results = tables.results
    assert {r["repeat_answers_changed"] for r in results if r["cell_id"] == BASELINE.id} == {6}
    assert {r["repeat_tasks"] for r in results if r["cell_id"] == SPEC.id} == {None}


def test_a_change_above_the_floor_keeps_its_effect(tmp_path):
    # 24 of ~120 answers changed against none of 30 by repetition alone (Fisher p < 0.01)
    run = paired_run(tmp_path, repeat_changed=0, repeated=30)
    (comparison,) = build(load_runs([run.root]), load_tasks([])).techniques
    assert comparison.noise.within is False and comparison.accuracy.startswith("lost ")
    assert "above the noise floor" in comparison.noise.words and "by repetition alone: 0 of 30" in comparison.noise.words
