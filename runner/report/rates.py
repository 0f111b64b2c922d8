"""A pass rate with its intervals: the one record every table of the report counts in."""

from __future__ import annotations

from dataclasses import dataclass

from runner.measuring import stats
from runner.records import Outcome


@dataclass(frozen=True)
class PassRate:
    """Passes out of judged tasks with upstream's bootstrap ±, the normal ± and the Wilson interval (fractions)."""

    passed: int
    n: int
    rate: float | None
    half_width: float | None  # normal approximation (Wald)
    normal_low: float | None
    normal_high: float | None
    wilson_low: float | None
    wilson_high: float | None
    boot_mean: float | None = None  # upstream's ±: seeded bootstrap mean ...
    boot_half: float | None = None  # ... ± 1.96 SD of 10,000 resampled pass rates
    unscoreable: int = 0  # tasks no answer can pass here: left out of ``n`` (or, ``of_all``, in it as failures)

    @classmethod
    def of(cls, outcomes: list[Outcome | None]) -> "PassRate":
        """Over the scoreable tasks (the headline): an ``unscoreable`` task is left out, and counted."""
        judged = [o for o in outcomes if o is not None]
        unscoreable = sum(o == Outcome.unscoreable for o in judged)
        return cls._of([o for o in judged if o != Outcome.unscoreable], unscoreable)

    @classmethod
    def of_all(cls, outcomes: list[Outcome | None]) -> "PassRate":
        """Over all tasks, an ``unscoreable`` one counted as a failure (the published table's denominator)."""
        judged = [o for o in outcomes if o is not None]
        return cls._of(judged, sum(o == Outcome.unscoreable for o in judged))

    @classmethod
    def _of(cls, judged: list[Outcome], unscoreable: int) -> "PassRate":
        k = sum(o == Outcome.passed for o in judged)
        n = len(judged)
        if n == 0:
            return cls(0, 0, None, None, None, None, None, None, unscoreable=unscoreable)
        p = stats.proportion(k, n)
        return cls(k, n, p.rate, p.half_width, p.normal.low, p.normal.high, p.wilson.low, p.wilson.high,
                   p.bootstrap_mean, p.bootstrap_half, unscoreable)
