"""Each statistic against a value derived independently (by hand, or a published figure)."""

from __future__ import annotations

import math

import pytest

from runner.measuring import stats


def test_percentile_interpolates_linearly_and_ignores_missing_values():
    # 1..20: p95 sits at index 0.95 * 19 = 18.05, between 19 and 20 -> 19.05
    values = list(range(1, 21))
    assert stats.percentile(values, 95) == pytest.approx(19.05)
    assert stats.percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert stats.percentile([None, 2.0, None], 50) == 2.0
    assert stats.percentile([], 50) is None


def test_normal_half_width_reproduces_upstreams_published_intervals():
    # Upstream's LLaMA 3 70B: Python infill 54.4 +- 5.0 over 382 tasks (208 passes = 54.45%),
    # Java infill 56.1 +- 5.8 over 283 tasks (159 passes = 56.18%).
    assert round(100 * stats.normal_half_width(208, 382), 1) == 5.0
    assert round(100 * stats.normal_half_width(159, 283), 1) == 5.8


def test_normal_interval_is_clipped_and_collapses_at_the_edges():
    # 10/10: p(1-p) = 0, so the Wald interval is the single point 1
    assert stats.normal_interval(10, 10) == stats.Interval(1.0, 1.0)
    # 1/10: 0.1 +- 1.96 * sqrt(0.09/10) = 0.1 +- 0.18594 -> clipped below at 0
    interval = stats.normal_interval(1, 10)
    assert interval.low == 0.0
    assert interval.high == pytest.approx(0.1 + 1.96 * math.sqrt(0.009))


def test_wilson_interval_for_8_of_10():
    # By hand, z = 1.96, n = 10, p = 0.8: denominator 1 + 3.8416/10 = 1.38416;
    # centre (0.8 + 0.19208) / 1.38416 = 0.716738; half 1.96/1.38416 * sqrt(0.016 + 0.009604) = 0.226580
    interval = stats.wilson_interval(8, 10)
    assert interval.low == pytest.approx(0.716738 - 0.226580, abs=1e-5)
    assert interval.high == pytest.approx(0.716738 + 0.226580, abs=1e-5)
    # the textbook rounding: (0.490, 0.943)
    assert (round(interval.low, 3), round(interval.high, 3)) == (0.490, 0.943)


def test_wilson_interval_stays_informative_at_zero_successes():
    # 0/10: centre = 0.19208 / 1.38416 = 0.138770, half = 1.41602 * sqrt(3.8416/400) = 0.138770,
    # so the interval is [0, 0.277539]
    interval = stats.wilson_interval(0, 10)
    assert interval.low == 0.0
    assert interval.high == pytest.approx(0.2775, abs=1e-4)


def test_proportion_bundles_rate_and_both_intervals():
    p = stats.proportion(8, 10)
    assert p.rate == 0.8
    assert p.half_width == pytest.approx(1.96 * math.sqrt(0.016))
    assert p.wilson.contains(0.8) and p.normal.contains(0.8)
    with pytest.raises(ValueError):
        stats.proportion(11, 10)


def test_mcnemar_exact_b1_c9():
    # p = 2 * P(X <= 1 | n = 10, p = 1/2) = 2 * (1 + 10) / 1024
    assert stats.mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert stats.mcnemar_exact(9, 1) == pytest.approx(2 * 11 / 1024)


def test_mcnemar_exact_without_discordant_pairs_or_balanced_ones_is_one():
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(5, 5) == 1.0
    # b=0, c=3: 2 * (1/8) = 0.25
    assert stats.mcnemar_exact(0, 3) == pytest.approx(0.25)


def test_paired_bootstrap_ratio_matches_the_enumerated_distribution_of_two_pairs():
    # Two pairs (x, y) = (1, 2) and (3, 3). Resampling 2 of 2 with replacement gives, for the
    # ratio of means: both first -> 2/1 = 2 (prob 1/4), one of each -> 2.5/2 = 1.25 (1/2),
    # both second -> 3/3 = 1 (1/4). A quarter of the mass sits at each end, so the 2.5% and
    # 97.5% percentiles are exactly 1 and 2; the point estimate is 2.5 / 2 = 1.25.
    estimate = stats.paired_bootstrap_ratio([1.0, 3.0], [2.0, 3.0], statistic="mean", resamples=4000, seed=7)
    assert estimate.ratio == pytest.approx(1.25)
    assert estimate.interval == stats.Interval(1.0, 2.0)
    assert estimate.pairs == 2


def test_paired_bootstrap_ratio_of_a_constant_multiple_is_exact_and_seeded():
    baseline = [0.8, 1.1, 0.9, 2.5, 1.7, 1.2, 0.95]
    faster = [v / 2 for v in baseline]
    estimate = stats.paired_bootstrap_ratio(baseline, faster, seed=3)
    # pairing keeps every resample at exactly one half; an unpaired bootstrap would not
    assert estimate.ratio == pytest.approx(0.5)
    assert estimate.interval.low == pytest.approx(0.5) and estimate.interval.high == pytest.approx(0.5)
    noisy = [v * f for v, f in zip(baseline, (0.4, 0.7, 0.5, 0.6, 0.55, 0.45, 0.65))]
    first = stats.paired_bootstrap_ratio(baseline, noisy, seed=11)
    again = stats.paired_bootstrap_ratio(baseline, noisy, seed=11)
    assert first == again
    assert first.interval.low < first.ratio < first.interval.high < 1.0


def test_paired_bootstrap_refuses_unpaired_input():
    with pytest.raises(ValueError):
        stats.paired_bootstrap_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        stats.paired_bootstrap_ratio([], [])


def test_bootstrap_interval_is_upstreams_bootstrap_under_one_seed(simcopilot):
    from runner.evaluation import upstream

    up = upstream.load()
    for k, n in [(208, 382), (96, 212), (0, 5), (7, 7), (153, 286)]:
        assert stats.bootstrap_interval(k, n, seed=3) == upstream.bootstrap(up, k, n, seed=3)


def test_bootstrap_half_width_is_close_to_the_normal_one_and_seeded():
    mean, half = stats.bootstrap_interval(208, 382)
    assert (mean, half) == stats.bootstrap_interval(208, 382)  # seeded: the report is reproducible
    assert abs(mean - 208 / 382) < 0.003 and abs(half - stats.normal_half_width(208, 382)) < 0.003
    assert stats.bootstrap_interval(0, 0) == (0.0, 0.0)
    p = stats.proportion(208, 382)
    assert (p.bootstrap_mean, p.bootstrap_half) == (mean, half)
