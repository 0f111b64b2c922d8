"""Poisson arrivals of an open-loop sweep point: seeded, at the asked rate, exponential gaps."""

from __future__ import annotations

import numpy as np
import pytest

from runner.measuring.arrivals import poisson_arrivals


def test_the_same_seed_gives_the_same_offsets_and_another_seed_others():
    first = poisson_arrivals(2.0, 100, seed=7)
    assert first == poisson_arrivals(2.0, 100, seed=7)
    assert first != poisson_arrivals(2.0, 100, seed=8)


def test_the_mean_rate_over_two_thousand_arrivals_is_within_five_percent():
    for rate, seed in ((0.5, 0), (4.0, 1), (30.0, 2)):
        offsets = poisson_arrivals(rate, 2000, seed)
        assert len(offsets) == 2000
        assert abs(2000 / offsets[-1] - rate) <= 0.05 * rate


def test_offsets_increase_from_the_start_and_the_gaps_are_exponential():
    offsets = np.asarray(poisson_arrivals(3.0, 2000, seed=11))
    gaps = np.diff(np.concatenate([[0.0], offsets]))
    assert (gaps > 0).all()
    # an exponential's standard deviation equals its mean; evenly spaced sends would give 0
    assert abs(gaps.std() / gaps.mean() - 1) < 0.1
    # and its median is ln 2 of the mean
    assert abs(np.median(gaps) / gaps.mean() - np.log(2)) < 0.07


def test_no_request_is_no_offset_and_a_rate_that_is_none_is_refused():
    assert poisson_arrivals(1.0, 0, seed=0) == []
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="requests per second above 0"):
            poisson_arrivals(rate, 3, seed=0)
