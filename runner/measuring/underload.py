"""Accuracy under load: each sweep point's answers judged, paired with the accuracy phase, held to the SLO.

A sweep point (``runner.store.SweepPoint``) asks the sweep's task sample at one load, a concurrency or
a Poisson rate. Its answers are judged like the accuracy phase's. ``load_points`` gives, per point:

- the pass rate of its answers, with its Wilson interval;
- the answers and verdicts changed against the same tasks' accuracy answers (``runner.measuring.noise``'s
  ``repetition``), and whether that change is above the noise floor (its one-sided Fisher test);
- the SLO's attainment, goodput and pass-goodput (``runner.measuring.goodput``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from runner.matrix.spec import Slo
from runner.measuring.goodput import Goodput, goodput
from runner.measuring.noise import AgainstFloor, NoiseFloor, against_floor, repetition
from runner.measuring.stats import wilson_interval
from runner.records import Outcome, Sample
from runner.store import CellResult, SweepPoint


class LoadPoint(BaseModel):
    """One sweep point of one cell: its speed, its answers' pass rate and changes, its goodput."""

    cell_id: str = Field(description="The cell.")
    load: str = Field(description="The point: `c<N>`, N requests in flight, or `r<R>`, Poisson arrivals at R "
                      "requests per second.")
    concurrency: int | None = Field(description="Closed loop: requests in flight; None at a rate point.")
    offered_rps: float | None = Field(description="Open loop: the offered rate, requests per second; None at a "
                                      "concurrency point.")
    achieved_rps: float = Field(description="Answered requests per second over the point's duration.")
    output_tokens_per_s: float = Field(description="Output tokens per second over the point's duration.")
    seconds: float = Field(description="The point's duration: first send to last answer.")
    requests: int = Field(description="Requests sent (the sweep's task sample).")
    judged: int = Field(description="Answers with a verdict, and request errors (counted as not passing); "
                        "unscoreable tasks left out.")
    passed: int = Field(description="Answers that passed their tests.")
    pass_rate: float | None = Field(description="passed / judged; None before any verdict.")
    pass_low: float | None = Field(description="The pass rate's Wilson 95% interval, lower end.")
    pass_high: float | None = Field(description="The pass rate's Wilson 95% interval, upper end.")
    paired: int = Field(description="Tasks answered both here and in the accuracy phase.")
    answers_changed: int = Field(description="Of those, answers whose text differs from the accuracy answer.")
    verdicts_changed: int = Field(description="Of the tasks judged in both, verdicts (pass or not) that differ.")
    verdicts_paired: int = Field(description="Tasks judged both here and in the accuracy phase.")
    floor_p: float | None = Field(description="One-sided Fisher p: are answers changed more often than by "
                                  "repetition alone (the noise floor)? None where no floor was measured.")
    floor: str = Field(description="`within the noise floor`, `above the noise floor` (p < 0.05), or "
                       "`noise floor not measured`.")
    goodput: Goodput = Field(description="The point's requests held to the SLO.")
    probe: bool = Field(False, description="A rate the search for the highest rate within the SLO added "
                        "(`settings.find_max_rate`), not one of `sweep_rates`.")

    @property
    def changed_words(self) -> str:
        """e.g. ``answers changed: 2 of 12 · verdicts changed: 1 of 12 · within the noise floor (p=0.48)``."""
        p = f" (Fisher p={self.floor_p:.2g})" if self.floor_p is not None else ""
        return (f"answers changed: {self.answers_changed} of {self.paired} · verdicts changed: "
                f"{self.verdicts_changed} of {self.verdicts_paired} · {self.floor}{p}")


def _floor_words(against: AgainstFloor) -> str:
    if against.within is None:
        return "noise floor not measured"
    return "within the noise floor" if against.within else "above the noise floor"


def load_point(point: SweepPoint, cell_id: str, samples: Sequence[Sample], accuracy: dict[str, Sample],
               floor: NoiseFloor | None, slo: Slo) -> LoadPoint:
    """One point's figures from its samples (one per request sent), set against ``accuracy`` (the
    cell's accuracy answers by task) and ``floor`` (the noise floor its changes are judged against)."""
    answered = {s.task_id: s for s in samples if s.outcome is not Outcome.error and s.error is None}
    paired = repetition(accuracy, answered, "sweep", point.concurrency or 0)
    against = against_floor(paired.answers_changed, paired.tasks, floor)
    # the one pass-rate definition (runner.measuring.passrate): a request error counts as not passing,
    # an unscoreable task and an answer not judged yet are left out
    verdicts = [s for s in samples if s.outcome is not None and s.outcome is not Outcome.unscoreable
                or (s.outcome is None and s.error is not None)]
    passed = sum(s.outcome is Outcome.passed for s in verdicts)
    interval = wilson_interval(passed, len(verdicts)) if verdicts else None
    return LoadPoint(cell_id=cell_id, load=point.label, concurrency=point.concurrency, offered_rps=point.rate,
                     achieved_rps=point.requests_per_s, output_tokens_per_s=point.output_tokens_per_s,
                     seconds=point.seconds, requests=len(samples), judged=len(verdicts), passed=passed,
                     pass_rate=passed / len(verdicts) if verdicts else None,
                     pass_low=interval.low if interval else None, pass_high=interval.high if interval else None,
                     paired=paired.tasks, answers_changed=paired.answers_changed,
                     verdicts_changed=paired.verdicts_changed, verdicts_paired=paired.judged,
                     floor_p=against.p_value, floor=_floor_words(against),
                     goodput=goodput(samples, point.seconds, slo), probe=point.probe)


def load_points(result: CellResult, samples: Sequence[Sample], floor: NoiseFloor | None, slo: Slo) -> list[LoadPoint]:
    """Every sweep point of a cell, in the order measured; ``samples``: its latest (``RunStore.latest_samples``)."""
    accuracy = {s.task_id: s for s in samples if s.phase == "accuracy" and s.outcome is not Outcome.error
                and s.error is None}
    by_load: dict[str, list[Sample]] = {}
    for sample in samples:
        if sample.phase == "sweep" and sample.load:
            by_load.setdefault(sample.load, []).append(sample)
    return [load_point(p, result.cell.id, by_load.get(p.label, []), accuracy, floor, slo)
            for p in result.sweep if p.tasks]  # points of runs before judged sweeps have no answers


def highest_within(points: Sequence[LoadPoint]) -> tuple[LoadPoint | None, LoadPoint | None]:
    """The points of the highest concurrency and of the highest offered rate whose attainment reached
    the SLO's target (a closed and an open loop load are not on one scale); None where none did."""
    within = [p for p in points if p.goodput.within_slo]
    closed = [p for p in within if p.concurrency is not None]
    opened = [p for p in within if p.offered_rps is not None]
    return (max(closed, key=lambda p: p.concurrency) if closed else None,
            max(opened, key=lambda p: p.offered_rps) if opened else None)
