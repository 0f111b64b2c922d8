"""Accuracy under load on constructed samples: a sweep point's pass rate, its answers and verdicts
changed against the accuracy phase, the noise floor's verdict on that change, and its goodput."""

from __future__ import annotations

from runner.matrix.spec import Slo
from runner.measuring.noise import NoiseFloor, Repetition
from runner.measuring.underload import highest_within, load_points
from runner.records import Cell, Outcome, Sample
from runner.store import CellResult, SweepPoint

CELL = Cell(model="m", runtime="llamacpp", quantization="q4_k_m", prompt_style="prefix")


def sample(task: int, phase: str, text: str, outcome: Outcome | None, load: str | None = None,
           ttft: float = 0.5) -> Sample:
    error = "HTTP 500" if outcome is Outcome.error else None
    return Sample(task_id=f"t{task}", cell_id=CELL.id, phase=phase, load=load, prompt_style="prefix",
                  prompt_sha256="0" * 64, raw_text=text, outcome=outcome, error=error, ttft_s=ttft,
                  e2e_s=ttft + 1, itl_s=[0.02] * 5)


def point(load: str, seconds: float = 10.0) -> SweepPoint:
    concurrency, rate = (int(load[1:]), None) if load[0] == "c" else (None, float(load[1:]))
    return SweepPoint(concurrency=concurrency, rate=rate, requests=10, seconds=seconds, requests_per_s=1.0,
                      output_tokens_per_s=20.0, tasks=10)


def accuracy() -> list[Sample]:
    # ten tasks; the first six pass
    return [sample(n, "accuracy", f"a{n}", Outcome.passed if n < 6 else Outcome.fail) for n in range(10)]


def floor(changed: int, of: int = 12) -> NoiseFloor:
    return NoiseFloor(cell_id=CELL.id, concurrent=Repetition(phase="repeat", concurrency=2, tasks=of,
                                                             answers_changed=changed, verdicts_changed=0, judged=of))


def test_a_point_that_repeats_the_accuracy_answers_changes_nothing_and_passes_as_often():
    same = [sample(n, "sweep", f"a{n}", Outcome.passed if n < 6 else Outcome.fail, load="c4") for n in range(10)]
    (p,) = load_points(CellResult(cell=CELL, sweep=[point("c4")]), accuracy() + same, floor(2), Slo())
    assert (p.load, p.concurrency, p.offered_rps) == ("c4", 4, None)
    assert (p.passed, p.judged, p.pass_rate) == (6, 10, 0.6) and p.pass_low < 0.6 < p.pass_high
    assert (p.answers_changed, p.paired, p.verdicts_changed, p.verdicts_paired) == (0, 10, 0, 10)
    assert p.floor == "within the noise floor" and p.floor_p == 1.0
    assert p.goodput.conforming == 10 and p.goodput.pass_goodput_rps == 0.6  # 6 passing, conforming in 10 s


def test_a_point_changing_most_answers_is_above_a_quiet_floor_and_counts_the_verdicts_that_moved():
    # eight answers differ; two of them now fail where they passed, one passes where it failed
    moved = {0: Outcome.fail, 1: Outcome.fail, 7: Outcome.passed}
    answers = [sample(n, "sweep", f"a{n}" if n in (8, 9) else f"b{n}",
                      moved.get(n, Outcome.passed if n < 6 else Outcome.fail), load="r2") for n in range(10)]
    (p,) = load_points(CellResult(cell=CELL, sweep=[point("r2")]), accuracy() + answers, floor(0), Slo())
    assert (p.offered_rps, p.answers_changed, p.verdicts_changed) == (2.0, 8, 3)
    assert p.floor == "above the noise floor" and p.floor_p < 0.05
    assert "answers changed: 8 of 10 · verdicts changed: 3 of 10 · above the noise floor" in p.changed_words


def test_errors_and_slow_requests_lower_attainment_and_no_floor_is_said_so():
    answers = [sample(n, "sweep", f"a{n}", Outcome.passed if n < 6 else Outcome.fail, load="c16",
                      ttft=40.0 if n == 1 else 0.5) for n in range(9)]
    answers.append(sample(9, "sweep", "", Outcome.error, load="c16"))
    (p,) = load_points(CellResult(cell=CELL, sweep=[point("c16")]), accuracy() + answers, None, Slo())
    assert (p.requests, p.judged, p.paired) == (10, 10, 9)  # the error counts as not passing, pairs with nothing
    assert p.passed == 6 and p.pass_rate == 0.6
    assert p.goodput.errors == 1 and p.goodput.conforming == 8 and p.goodput.attainment == 0.8
    assert not p.goodput.within_slo  # 80% < the 90% target
    assert p.floor == "noise floor not measured" and p.floor_p is None


def test_the_highest_load_within_the_slo_is_given_per_kind_of_load():
    fast = [sample(n, "sweep", f"a{n}", Outcome.passed, load=load) for load in ("c1", "c4", "r1") for n in range(10)]
    slow = [sample(n, "sweep", f"a{n}", Outcome.passed, load=load, ttft=60.0) for load in ("c16", "r8") for n in range(10)]
    result = CellResult(cell=CELL, sweep=[point(x) for x in ("c1", "c4", "c16", "r1", "r8")])
    points = load_points(result, accuracy() + fast + slow, None, Slo())
    closed, opened = highest_within(points)
    assert (closed.load, opened.load) == ("c4", "r1")
    assert highest_within([p for p in points if p.load in ("c16", "r8")]) == (None, None)
