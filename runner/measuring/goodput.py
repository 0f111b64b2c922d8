"""Goodput: how many of a sweep point's requests met the service-level objective (``[slo]``), per second,
and how many of them also passed their tests (pass-goodput).

A request conforms when it has no error and meets each objective: its TTFT, the ``itl_percentile``
percentile of its own inter-token gaps (after the first token, which is the TTFT's), its TPOT and its
end-to-end time. An objective written ``inf`` always holds. A point is within the SLO when the share of
its requests that conform (attainment) reaches ``slo.attainment``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TypeVar

from pydantic import BaseModel, Field

from runner.matrix.spec import Slo
from runner.measuring.stats import percentile
from runner.records import Outcome, Sample


def _failed(sample: Sample) -> bool:
    return sample.outcome == Outcome.error or sample.error is not None


def _within(value: float | None, bound: float, *, unmeasured_holds: bool) -> bool:
    if math.isinf(bound):
        return True
    if value is None:
        return unmeasured_holds
    return value <= bound


def attains(attainment: float | None, target: float) -> bool:
    """Whether a point whose share of conforming requests is ``attainment`` is within the SLO (``target``:
    ``slo.attainment``); the one definition the report and the rate search both use."""
    return attainment is not None and attainment >= target


def conforms(sample: Sample, slo: Slo) -> bool:
    """Whether ``sample`` had no error and met every objective of ``slo``."""
    if _failed(sample):
        return False
    itl = percentile(sample.itl_s, slo.itl_percentile)
    # a TTFT or e2e the client never saw cannot be shown to meet a bound, so it does not; no gap after
    # the first token (a one-token answer) has no ITL or TPOT to break one
    return (_within(sample.ttft_s, slo.ttft_s, unmeasured_holds=False)
            and _within(None if itl is None else itl * 1000, slo.itl_ms, unmeasured_holds=True)
            and _within(None if sample.tpot_s is None else sample.tpot_s * 1000, slo.tpot_ms,
                        unmeasured_holds=True)
            and _within(sample.e2e_s, slo.e2e_s, unmeasured_holds=False))


class Goodput(BaseModel):
    """One sweep point's requests held to the SLO: attainment, goodput and pass-goodput."""

    requests: int = Field(description="Requests sent at the point.")
    errors: int = Field(description="Requests that failed (no answer); they never conform.")
    conforming: int = Field(description="Requests with no error that met every objective of the SLO.")
    attainment: float | None = Field(description="conforming / requests; None with no request.")
    seconds: float = Field(description="The point's duration in seconds, the goodputs' denominator.")
    goodput_rps: float | None = Field(description="Conforming requests per second; None for a point of no "
                                      "duration.")
    judged: int = Field(description="Requests whose answer has a verdict (errors have none).")
    passed_conforming: int = Field(description="Requests whose answer passed its tests and that conformed.")
    pass_goodput_rps: float | None = Field(description="Passing and conforming requests per second; None for a "
                                           "point of no duration.")
    ttft_p_s: float | None = Field(description="The point's TTFT at the SLO's `ttft_percentile`, across its "
                                   "requests, in seconds; None where none was measured.")
    itl_p_ms: float | None = Field(description="The point's inter-token gap at the SLO's `itl_percentile`, "
                                   "across the gaps of all its requests, in milliseconds; None where none.")
    within_slo: bool = Field(description="attainment >= the SLO's `attainment` target.")


def goodput(samples: Sequence[Sample], seconds: float, slo: Slo) -> Goodput:
    """The goodput of one sweep point: its ``samples`` (one per request sent) over ``seconds``."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"seconds {seconds!r}: a point's duration is a finite number of seconds, 0 or more")
    fitting = [s for s in samples if conforms(s, slo)]
    conforming = len(fitting)
    passed = sum(s.outcome == Outcome.passed for s in fitting)
    attainment = conforming / len(samples) if samples else None
    ttft = percentile([s.ttft_s for s in samples if s.ttft_s is not None], slo.ttft_percentile)
    itl = percentile([gap for s in samples for gap in s.itl_s], slo.itl_percentile)
    return Goodput(requests=len(samples), errors=sum(_failed(s) for s in samples), conforming=conforming,
                   attainment=attainment, seconds=seconds,
                   goodput_rps=conforming / seconds if seconds else None,
                   judged=sum(s.outcome not in (None, Outcome.error) for s in samples),
                   passed_conforming=passed, pass_goodput_rps=passed / seconds if seconds else None,
                   ttft_p_s=ttft, itl_p_ms=None if itl is None else itl * 1000,
                   within_slo=attains(attainment, slo.attainment))


Load = TypeVar("Load", int, float)


def highest_load_within(points: Iterable[tuple[Load, Goodput]]) -> Load | None:
    """The highest load (a concurrency or a rate) among ``points`` whose point is within the SLO; None if none."""
    within = [load for load, point in points if point.within_slo]
    return max(within) if within else None
