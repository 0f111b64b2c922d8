"""The rate search (``settings.find_max_rate``): which rate it probes next, given the points so far."""

from __future__ import annotations

import pytest

from runner.measuring.ratesearch import bracket, next_rate_probe
from runner.store import SweepPoint

TARGET = 0.9


def point(rate: float | None, attainment: float | None, *, probe: bool = False, concurrency: int | None = None):
    return SweepPoint(rate=rate, concurrency=concurrency, requests=8, seconds=8.0, requests_per_s=1.0,
                      output_tokens_per_s=10.0, tasks=8, attainment=attainment, probe=probe)


def test_the_first_probe_is_halfway_between_the_highest_rate_within_and_the_lowest_above_outside():
    points = [point(0.5, 1.0), point(1.0, 0.95), point(2.0, 0.4), point(4.0, 0.1), point(None, 0.2, concurrency=8)]
    assert bracket(points, TARGET) == (1.0, 2.0)
    assert next_rate_probe(points, TARGET, probes=3) == 1.5


def test_each_probe_moves_one_end_and_the_search_stops_after_its_probes():
    points = [point(1.0, 0.95), point(2.0, 0.4)]
    points.append(point(next_rate_probe(points, TARGET, 3), 0.92, probe=True))  # 1.5: within
    assert next_rate_probe(points, TARGET, 3) == 1.75
    points.append(point(1.75, 0.5, probe=True))  # outside
    assert next_rate_probe(points, TARGET, 3) == 1.62  # 1.625 to three significant digits
    points.append(point(1.62, 0.9, probe=True))  # exactly the target: within
    assert next_rate_probe(points, TARGET, 3) is None  # three probes measured


def test_no_rate_within_the_slo_searches_below_the_lowest():
    points = [point(0.5, 0.3), point(1.0, 0.0)]
    assert bracket(points, TARGET) == (0.0, 0.5)
    assert next_rate_probe(points, TARGET, 2) == 0.25


def test_every_rate_within_the_slo_leaves_nothing_to_search():
    points = [point(0.5, 1.0), point(1.0, 0.9)]
    assert bracket(points, TARGET) is None and next_rate_probe(points, TARGET, 5) is None


@pytest.mark.parametrize("attainment", [None, 0.89])
def test_an_unmeasured_or_short_attainment_is_outside(attainment):
    assert bracket([point(1.0, 1.0), point(2.0, attainment)], TARGET) == (1.0, 2.0)


def test_a_bracket_narrower_than_three_significant_digits_ends_the_search():
    points = [point(1.0, 1.0), point(1.001, 0.2)]
    assert next_rate_probe(points, TARGET, 5) is None
