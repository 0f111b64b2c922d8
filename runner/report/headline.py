"""The headline table: one row per cell, its pass rates per language × mode and its latency."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from scipy.stats import binom

from runner.measuring import stats
from runner.evaluation.verdicts import JudgingCounts, judging_counts
from runner.measuring.passrate import pass_count
from runner.records import ExpectedOutputs, Outcome, Sample
from runner.report.data import LANGUAGE_MODES, CellData, split_task_id
from runner.report.rates import PassRate


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free interval for the median: the order statistics a binomial(n, ½) puts around
    it. Below six values no pair of them reaches 95%: then the range (min, max), the widest there is."""
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    # the j-th smallest to the j-th largest, j the smallest count with P(B <= j - 1) < (1 - confidence) / 2
    below = int(binom.ppf((1 - confidence) / 2, n, 0.5))
    if below < 1:
        return ordered[0], ordered[-1]
    return ordered[below - 1], ordered[n - below]


@dataclass(frozen=True)
class LatencySummary:
    """One cell's latency figures, from the ``source`` phase (seconds)."""

    #: "latency/warm" | "latency/cold" (one request at a time, the cache state named), "latency"
    #: (a run without recorded states) or "accuracy" (queued at the run's concurrency)
    source: str
    samples: int
    ttft_p50: float | None
    ttft_p95: float | None
    tpot_p50: float | None
    itl_p50: float | None
    e2e_p50: float | None
    e2e_p95: float | None
    output_tokens_per_s: float | None  # output tokens / e2e seconds, summed over the samples
    cached_tokens_p50: float | None = None  # prompt tokens the server reused, by its own count
    ttft_cold_p50: float | None = None  # TTFT with no reusable prefix (``latency/cold``), beside any source
    cold_samples: int = 0
    e2e_p50_low: float | None = None  # the median's distribution-free 95% interval (``median_interval``)
    e2e_p50_high: float | None = None

    @classmethod
    def of(cls, cell: CellData, source: str | None = None) -> "LatencySummary":
        """The figures of ``cell`` from ``source`` (default: its own, ``CellData.latency_source``)."""
        source = source or cell.latency_source
        samples = cell.timed(source)
        cold = [s.ttft_s for s in cell.timed("latency/cold") if s.ttft_s is not None]
        cached = [s.cached_tokens for s in samples if s.cached_tokens is not None]
        ttft = [s.ttft_s for s in samples if s.ttft_s is not None]
        tpot = [s.tpot_s for s in samples if s.tpot_s is not None]
        itl = [gap for s in samples for gap in s.itl_s]
        e2e = [s.e2e_s for s in samples if s.e2e_s is not None]
        tokens = sum(s.completion_tokens or 0 for s in samples)
        seconds = sum(s.e2e_s or 0.0 for s in samples if s.completion_tokens)
        interval = median_interval(e2e)
        return cls(source=source, samples=len(samples),
                   ttft_p50=stats.percentile(ttft, 50), ttft_p95=stats.percentile(ttft, 95),
                   tpot_p50=stats.percentile(tpot, 50), itl_p50=stats.percentile(itl, 50),
                   e2e_p50=stats.percentile(e2e, 50), e2e_p95=stats.percentile(e2e, 95),
                   output_tokens_per_s=tokens / seconds if seconds > 0 else None,
                   cached_tokens_p50=stats.percentile(cached, 50) if cached else None,
                   ttft_cold_p50=stats.percentile(cold, 50) if cold else None, cold_samples=len(cold),
                   e2e_p50_low=interval[0] if interval else None, e2e_p50_high=interval[1] if interval else None)


@dataclass
class HeadlineRow:
    """One cell: pass rates per language × mode (best-of-cascade and cleaned-only) and its speed."""

    cell: CellData
    best: dict[tuple[str, str], PassRate]  # over the scoreable tasks (the headline)
    best_all: dict[tuple[str, str], PassRate]  # over all tasks, unscoreable ones counted as failures
    cleaned: dict[tuple[str, str], PassRate]
    overall: PassRate
    overall_cleaned: PassRate
    latency: LatencySummary
    sweep: dict[int, tuple[float, float]]  # concurrency -> (requests/s, output tokens/s)
    errors: int  # accuracy-phase request errors: counted in ``overall`` as not passing, shown apart
    energy_per_task_j: float | None
    re_recorded: dict[tuple[str, str], int] = field(default_factory=dict)  # verdicts against re-recorded outputs

    @property
    def status(self) -> str:
        return self.cell.result.status

    @property
    def judging(self) -> JudgingCounts:
        """The cell's answers judged afresh and those with a reused verdict."""
        return judging_counts(self.cell.samples)

    @property
    def unbatched(self) -> str | None:
        """The label of a cell whose server served one request at a time, so that its sweep measured
        no batching (e.g. "unbatched (no flash-attn)"); None for a server that batched."""
        result = self.cell.result
        return (result.batching or "unbatched") if result.batched is False else None


def headline(cells: list[CellData]) -> list[HeadlineRow]:
    """The headline table: one row per cell."""
    rows = []
    for cell in cells:
        by_key: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for s in cell.accuracy:
            by_key[split_task_id(s.task_id)].append(s)
        result = cell.result
        judged = len(cell.accuracy)
        rows.append(HeadlineRow(
            cell=cell,
            best={k: PassRate.of([s.outcome for s in v]) for k, v in by_key.items()},
            best_all={k: PassRate.of_all([s.outcome for s in v]) for k, v in by_key.items()},
            cleaned={k: PassRate.of([_cleaned(s) for s in v]) for k, v in by_key.items()},
            overall=PassRate.of([s.outcome for s in cell.accuracy]),
            overall_cleaned=PassRate.of([_cleaned(s) for s in cell.accuracy]),
            latency=LatencySummary.of(cell),
            sweep={p.concurrency: (p.requests_per_s, p.output_tokens_per_s) for p in result.sweep
                   if p.concurrency is not None},
            errors=pass_count(cell.samples).errors,
            energy_per_task_j=(result.energy_joules / judged) if result.energy_joules and judged else None,
            re_recorded={k: sum(s.expected_outputs is ExpectedOutputs.re_recorded for s in v) for k, v in by_key.items()},
        ))
    return rows


def _cleaned(sample: Sample) -> Outcome | None:
    # an error sample has no cleaned verdict but still counts as a task that did not pass
    return Outcome.error if sample.outcome == Outcome.error else sample.cleaned_outcome


def language_modes(rows: list[HeadlineRow]) -> list[tuple[str, str]]:
    """The language × mode pairs that occur, in upstream's order (unknown ones after)."""
    seen = {k for r in rows for k in r.best}
    ordered = [k for k in LANGUAGE_MODES if k in seen]
    return ordered + sorted(seen - set(ordered)) or list(LANGUAGE_MODES)


def sweep_levels(rows: list[HeadlineRow]) -> list[int]:
    return sorted({c for r in rows for c in r.sweep})
