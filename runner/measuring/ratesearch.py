"""The highest rate within the SLO, searched for (``settings.find_max_rate``).

The sweep's rates give a bracket: the highest rate whose attainment reached the SLO's target (0 when
none did) and the lowest rate above it that did not. Each probe is a rate halfway between the two,
measured and judged like any sweep point; its attainment moves one end of the bracket. There is no
bracket, and no probe, when every rate was within the SLO.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.measuring.goodput import attains
from runner.store import SweepPoint

#: significant digits of a probed rate: its load label (``r0.75``) must name it exactly
SIGNIFICANT_DIGITS = 3


def within(point: SweepPoint, target: float) -> bool:
    """Whether the point's recorded attainment reached ``target``, as the report's ``within_slo`` decides."""
    return attains(point.attainment, target)


def bracket(points: Sequence[SweepPoint], target: float) -> tuple[float, float] | None:
    """The highest rate within the SLO (0.0: none) and the lowest rate above it that is not; None when
    no rate above the first is outside the SLO (nothing left to search)."""
    rated = [p for p in points if p.rate is not None]
    low = max((p.rate for p in rated if within(p, target)), default=0.0)
    above = [p.rate for p in rated if p.rate > low and not within(p, target)]
    return (low, min(above)) if above else None


def next_rate_probe(points: Sequence[SweepPoint], target: float, probes: int) -> float | None:
    """The next rate to measure, given the cell's sweep ``points`` so far; None once ``probes`` were
    measured, when there is no bracket, or when its ends are too close for a rate between them."""
    if sum(p.probe for p in points) >= probes:
        return None
    ends = bracket(points, target)
    if ends is None:
        return None
    low, high = ends
    rate = float(f"{(low + high) / 2:.{SIGNIFICANT_DIGITS}g}")
    return rate if low < rate < high else None
