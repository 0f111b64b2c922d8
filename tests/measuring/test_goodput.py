"""Goodput arithmetic on constructed samples: which requests conform to the SLO, attainment at its boundary,
pass-goodput counting only requests that pass and conform, and the highest load within the SLO."""

from __future__ import annotations

import math

import pytest

from runner.matrix.spec import Slo
from runner.measuring.goodput import Goodput, conforms, goodput, highest_load_within
from runner.records import Outcome, Sample

SLO = Slo()  # TTFT <= 30 s, ITL p99 <= 100 ms, no TPOT or e2e objective, 90% attainment


def sample(outcome: Outcome | None = Outcome.passed, ttft: float | None = 1.0, itl: tuple[float, ...] = (0.02,) * 10,
           e2e: float | None = 2.0, tpot: float | None = 0.02, error: str | None = None, n: int = 0) -> Sample:
    return Sample(task_id=f"t{n}", cell_id="m/llamacpp/q4/baseline", phase="sweep", prompt_style="instruct",
                  prompt_sha256="0" * 64, ttft_s=ttft, itl_s=list(itl), e2e_s=e2e, tpot_s=tpot,
                  outcome=outcome, error=error)


def test_a_fast_answer_conforms_whatever_its_verdict():
    assert conforms(sample(), SLO)
    assert conforms(sample(Outcome.fail), SLO)
    assert conforms(sample(None), SLO)  # not judged yet: speed is the SLO's, not the verdict's


def test_errors_never_conform_however_fast():
    assert not conforms(sample(Outcome.error, error="HTTP 500"), SLO)
    assert not conforms(sample(Outcome.error), SLO)
    assert not conforms(sample(None, error="server gone"), SLO)


def test_a_request_failing_only_its_itl_percentile_does_not_conform():
    # 98 gaps of 20 ms and two of 400 ms: the 99th percentile of its own gaps is 400 ms; TTFT, e2e fine
    slow_tail = (0.02,) * 98 + (0.4, 0.4)
    assert not conforms(sample(itl=slow_tail), SLO)
    # two slow gaps in a thousand stay under the 99th percentile
    assert conforms(sample(itl=(0.02,) * 998 + (0.4, 0.4)), SLO)
    # the same request under a median objective conforms
    assert conforms(sample(itl=slow_tail), Slo(itl_percentile=50))
    # and with the ITL objective dropped
    assert conforms(sample(itl=slow_tail), Slo(itl_ms=math.inf))


def test_each_objective_is_held_to_its_bound_and_inf_drops_it():
    assert conforms(sample(ttft=30.0), SLO) and not conforms(sample(ttft=30.01), SLO)
    assert not conforms(sample(ttft=None), SLO)  # never saw a first token: not shown to meet 30 s
    assert conforms(sample(ttft=None), Slo(ttft_s=math.inf))
    assert conforms(sample(itl=()), SLO)  # a one-token answer has no gap to break the ITL bound
    assert conforms(sample(e2e=500.0, tpot=5.0), SLO)  # TPOT and e2e default to inf
    assert not conforms(sample(tpot=0.051), Slo(tpot_ms=50)) and conforms(sample(tpot=0.05), Slo(tpot_ms=50))
    assert not conforms(sample(e2e=10.5), Slo(e2e_s=10)) and conforms(sample(e2e=10.0), Slo(e2e_s=10))


def test_goodput_counts_errors_as_sent_but_never_conforming():
    samples = [sample(n=0), sample(Outcome.fail, n=1), sample(Outcome.error, error="timeout", ttft=None, n=2),
               sample(ttft=45.0, n=3)]
    point = goodput(samples, 8.0, SLO)
    assert (point.requests, point.errors, point.conforming) == (4, 1, 2)
    assert point.attainment == 0.5 and point.goodput_rps == 0.25
    assert point.judged == 3  # the error has no verdict
    assert not point.within_slo


def test_pass_goodput_counts_only_requests_that_pass_and_conform():
    samples = [sample(Outcome.passed, n=0), sample(Outcome.passed, n=1),
               sample(Outcome.passed, ttft=31.0, n=2),  # passes, too slow
               sample(Outcome.fail, n=3),  # fast, fails
               sample(Outcome.compile_error, n=4), sample(None, n=5)]  # fast, not judged
    point = goodput(samples, 2.0, SLO)
    assert point.conforming == 5 and point.goodput_rps == 2.5
    assert point.passed_conforming == 2 and point.pass_goodput_rps == 1.0
    assert point.judged == 5


def test_attainment_exactly_at_the_target_is_within_the_slo_and_one_request_less_is_not():
    for target, n in ((0.9, 10), (0.7, 10), (0.35, 20), (0.95, 20)):
        slo = Slo(attainment=target)
        good = round(target * n)
        at = [sample(n=i) for i in range(good)] + [sample(ttft=60.0, n=good + i) for i in range(n - good)]
        assert goodput(at, 10.0, slo).within_slo, (target, n)
        below = at[1:] + [sample(ttft=60.0, n=n)]
        assert not goodput(below, 10.0, slo).within_slo, (target, n)


def test_the_points_percentiles_span_all_its_requests_at_the_slos_percentiles():
    samples = [sample(ttft=float(t), itl=(0.01 * t,), n=t) for t in range(1, 101)]
    point = goodput(samples, 100.0, Slo(ttft_percentile=50, itl_percentile=90, ttft_s=math.inf))
    assert point.ttft_p_s == pytest.approx(50.5)
    assert point.itl_p_ms == pytest.approx(901.0)
    empty = goodput([sample(Outcome.error, error="refused", ttft=None, itl=(), n=0)], 1.0, SLO)
    assert empty.ttft_p_s is None and empty.itl_p_ms is None and empty.conforming == 0


def test_a_point_without_requests_or_duration_has_no_rates_and_is_not_within():
    point = goodput([], 0.0, SLO)
    assert point.attainment is None and point.goodput_rps is None and point.pass_goodput_rps is None
    assert not point.within_slo
    with pytest.raises(ValueError, match="duration"):
        goodput([sample()], -1.0, SLO)


def test_the_record_describes_every_field_for_json_and_csv():
    assert all(field.description for field in Goodput.model_fields.values())
    point = goodput([sample()], 1.0, SLO)
    assert Goodput.model_validate_json(point.model_dump_json()) == point


def _point(within: bool) -> Goodput:
    return goodput([sample() if within else sample(ttft=99.0)], 1.0, SLO)


def test_the_highest_load_within_is_the_highest_measured_load_meeting_the_target():
    assert highest_load_within([(1, _point(True)), (4, _point(True)), (16, _point(False))]) == 4
    # measured loads only, not the highest before the first miss: a noisy point below does not hide it
    assert highest_load_within([(0.5, _point(True)), (1.0, _point(False)), (2.0, _point(True))]) == 2.0
    assert highest_load_within([(1, _point(False))]) is None
    assert highest_load_within([]) is None
