"""The statistics the report rests on: percentiles, binomial intervals, McNemar, paired bootstrap.

Every function takes plain numbers and returns plain numbers or a small frozen record, so the
report and the tests can check each figure on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
from scipy import stats as _scipy_stats

#: the z of a two-sided 95% interval, as upstream writes it (1.96, not 1.959964...)
Z95 = 1.96
#: upstream's number of bootstrap resamples
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]`` around an estimate."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the interval, ends included."""
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Proportion:
    """``k`` successes out of ``n`` with both 95% intervals."""

    k: int
    n: int
    rate: float
    half_width: float  # the normal-approximation (Wald) ±
    normal: Interval  # rate ± half_width, clipped to [0, 1]
    wilson: Interval
    bootstrap_mean: float = 0.0  # upstream's figure: the mean of the bootstrap pass rates ...
    bootstrap_half: float = 0.0  # ... ± 1.96 SD of them (``bootstrap_interval``)


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio of two statistics with its bootstrap percentile interval."""

    ratio: float
    interval: Interval
    pairs: int
    resamples: int


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation) of ``values``; None when empty."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return None
    return float(np.percentile(data, q))


def normal_half_width(k: int, n: int, z: float = Z95) -> float:
    """The normal-approximation ± for a pass rate: ``z * sqrt(p (1 - p) / n)``; 0 for ``n == 0``."""
    _check_counts(k, n)
    if n == 0:
        return 0.0
    p = k / n
    return z * math.sqrt(p * (1 - p) / n)


def normal_interval(k: int, n: int, z: float = Z95) -> Interval:
    """The normal-approximation (Wald) interval for ``k/n``, clipped to [0, 1]."""
    if n == 0:
        return Interval(0.0, 1.0)
    p = k / n
    h = normal_half_width(k, n, z)
    return Interval(max(0.0, p - h), min(1.0, p + h))


def wilson_interval(k: int, n: int, z: float = Z95) -> Interval:
    """The Wilson score interval for ``k/n``: sane at 0/n and n/n, where the normal one collapses."""
    _check_counts(k, n)
    if n == 0:
        return Interval(0.0, 1.0)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


@lru_cache(maxsize=4096)  # a report asks for the same (k, n) many times
def bootstrap_interval(k: int, n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Upstream's ± for a pass rate: ``(mean, 1.96 SD)`` of ``resamples`` bootstrap pass rates.

    The same draw as SimCoPilot's ``bootstrap_resampling``
    (helper_functions/code_gen_result_analysis.py: ``np.random.choice([0, 1], (resamples, n),
    p=[1-p, p])``), from a generator seeded with ``seed`` where upstream's is unseeded; a test
    checks the two agree digit for digit under one seed. ``(0, 0)`` for ``n == 0``, as upstream.
    """
    _check_counts(k, n)
    if n == 0:
        return 0.0, 0.0
    p = k / n
    draws = np.random.RandomState(seed).choice([0, 1], size=(resamples, n), p=[1 - p, p])
    rates = draws.sum(axis=1) / n
    return float(rates.mean()), float(Z95 * rates.std())


def proportion(k: int, n: int, z: float = Z95, bootstrap: bool = True) -> Proportion:
    """``k/n`` with the normal and Wilson intervals, and upstream's bootstrap ± (unless ``bootstrap=False``)."""
    _check_counts(k, n)
    mean, half = bootstrap_interval(k, n) if bootstrap else (0.0, 0.0)
    return Proportion(k=k, n=n, rate=k / n if n else 0.0, half_width=normal_half_width(k, n, z),
                      normal=normal_interval(k, n, z), wilson=wilson_interval(k, n, z),
                      bootstrap_mean=mean, bootstrap_half=half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of ``b`` against ``b + c`` discordant pairs at ½.

    ``b`` counts pairs where only the first condition passed, ``c`` where only the second did.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(_scipy_stats.binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue)


def paired_bootstrap_ratio(
    baseline: Sequence[float],
    treatment: Sequence[float],
    statistic: Literal["median", "mean"] = "median",
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> RatioEstimate:
    """``stat(treatment) / stat(baseline)`` with a seeded paired bootstrap percentile interval.

    Pairs (one task measured under both conditions) are resampled together, so the interval
    reflects the per-task pairing rather than two independent samples.
    """
    x = np.asarray(baseline, dtype=float)
    y = np.asarray(treatment, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples must have equal lengths, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("paired bootstrap needs at least one pair")
    reduce = np.median if statistic == "median" else np.mean
    rng = np.random.default_rng(seed)
    index = rng.integers(0, x.size, size=(resamples, x.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = reduce(y[index], axis=1) / reduce(x[index], axis=1)
        point = float(reduce(y) / reduce(x))
    ratios = ratios[np.isfinite(ratios)]
    alpha = (1 - confidence) / 2
    if ratios.size == 0:
        low = high = float("nan")
    else:
        low, high = (float(v) for v in np.percentile(ratios, [100 * alpha, 100 * (1 - alpha)]))
    return RatioEstimate(ratio=point, interval=Interval(low, high), pairs=int(x.size), resamples=resamples)


def _check_counts(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
