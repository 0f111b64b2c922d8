"""The ``comparisons`` table (comparisons.csv, comparisons.json): every verdict of the report with the
statistic, p-value, interval and wording behind it, one row per cell against its baseline.

Its columns are ``ComparisonRecord``'s fields, versioned by ``SCHEMA_VERSION``: a change of a field's
name, type or meaning raises the version. ``python -m runner.report.comparison_table`` prints the
schema (field, type, meaning) as Markdown: docs/reference/comparisons.md is that output, and a test
keeps the two equal.
"""

from __future__ import annotations

import math
import sys
from typing import Literal

from pydantic import BaseModel, Field

from runner.measuring import stats
from runner.report.comparisons import Comparison, QuantizationRow

#: raised whenever a field's name, type or meaning changes
SCHEMA_VERSION = "1"


class ComparisonRecord(BaseModel):
    """One cell against its baseline: the speed verdict and the answers' verdict, each with its test."""

    schema_version: str = Field(SCHEMA_VERSION, description="the version of this table's schema")
    kind: Literal["technique", "quantization"] = Field(
        description="technique: the cell against the same cell without its techniques; quantization: against "
                    "the model's full-precision cell (MLPerf's rule)")
    run: str = Field(description="the run the two cells belong to")
    cell: str = Field(description="the compared cell's label in the report")
    cell_id: str = Field(description="the compared cell's id (model/runtime/quantization/label)")
    baseline: str = Field(description="the baseline cell's label in the report")
    baseline_id: str = Field(description="the baseline cell's id")
    quantization: str = Field(description="the compared cell's quantization")
    baseline_quantization: str = Field(description="the baseline's quantization (e.g. f16, bf16)")
    techniques: str = Field(description="the compared cell's technique switches, key=value;…")
    pairs: int = Field(description="tasks both cells have a verdict on (a request error counts as not passing)")
    baseline_passed: int = Field(description="of the pairs, tasks the baseline passed")
    cell_passed: int = Field(description="of the pairs, tasks the compared cell passed")
    baseline_pass_rate: float | None = Field(description="baseline_passed / pairs (a fraction)")
    cell_pass_rate: float | None = Field(description="cell_passed / pairs (a fraction)")
    diff_points: float | None = Field(description="(cell - baseline) pass rate, percentage points")
    mcnemar_b: int = Field(description="McNemar b: tasks passed under the baseline only")
    mcnemar_c: int = Field(description="McNemar c: tasks passed under the compared cell only")
    mcnemar_p: float | None = Field(description="two-sided exact McNemar p-value of b against c")
    retained: float | None = Field(description="cell pass rate / baseline pass rate over the pairs (None: the "
                                               "baseline passed none)")
    retained_low: float | None = Field(description="retained's 95% interval, low end: the baseline's passes fixed, b and c bounded by Clopper-Pearson at 98.75% each")
    retained_high: float | None = Field(description="retained's 95% interval, high end")
    accuracy_verdict: str = Field(
        description="kept (retained_low >= 0.99) | lost / gained (McNemar p < 0.05 and above the noise floor, or "
                    "no floor measured) | within the noise floor (Fisher p >= 0.05) | not distinguishable | "
                    "not measured")
    accuracy_words: str = Field(description="the answers' verdict as the report words it")
    mlperf_99: Literal["met", "missed", "undecided"] | None = Field(
        description="quantization only: met (retained_low >= 0.99) | missed (a loss, retained_high < 0.99) | "
                    "undecided (the interval spans 99%, or the loss is no effect)")
    mlperf_999: Literal["met", "missed", "undecided"] | None = Field(description="the same at 99.9%")
    answers_changed: int = Field(description="paired tasks both answered whose answer text differs")
    answers_paired: int = Field(description="paired tasks both answered (no request error)")
    noise_floor_changed: int | None = Field(description="the baseline's repeated tasks whose answer changed by "
                                                        "repetition alone (None: no floor measured)")
    noise_floor_tasks: int | None = Field(description="the baseline's repeated tasks (settings.repeat_tasks)")
    noise_floor_concurrency: int | None = Field(description="requests in flight when they were repeated")
    fisher_p: float | None = Field(description="one-sided Fisher exact p: answers changed more often between "
                                               "the cells than by repetition alone")
    noise_floor_verdict: Literal["within", "above", "not measured"] = Field(
        description="within: fisher_p >= 0.05 (no effect is named) | above | not measured")
    latency_source: str | None = Field(description="the phase and cache state the latency ratio comes from")
    latency_ratio: float | None = Field(description="e2e median, cell / baseline, over the tasks both timed")
    latency_ratio_low: float | None = Field(description="its paired bootstrap 95% interval, low end")
    latency_ratio_high: float | None = Field(description="its paired bootstrap 95% interval, high end")
    latency_pairs: int | None = Field(description="tasks both cells timed in latency_source")
    speed_verdict: str = Field(description="faster (latency_ratio_high < 1) | slower (latency_ratio_low > 1) | "
                                           "no measurable change | too few timed pairs (< 5) | not measured")
    speed_words: str = Field(description="the speed verdict as the report words it")
    ttft_cold_ratio: float | None = Field(description="TTFT median cell / baseline, cold cache (None: not timed)")
    ttft_warm_ratio: float | None = Field(description="TTFT median cell / baseline, warm cache (None: not timed)")
    verdict: str = Field(description="both verdicts as the report prints them: speed; answers (and MLPerf)")


def _ends(estimate: stats.RatioEstimate | None) -> tuple[float | None, float | None, float | None]:
    if estimate is None:
        return None, None, None
    # a bootstrap whose every resample divided by zero has no interval: None, never NaN, in the table
    return tuple(None if math.isnan(v) else v for v in (estimate.ratio, estimate.interval.low,  # type: ignore
                                                         estimate.interval.high))


def record(comparison: Comparison, quantization: QuantizationRow | None = None) -> ComparisonRecord:
    """The row of one comparison (a quantization row adds MLPerf's targets)."""
    c = comparison
    retained, retained_low, retained_high = _ends(c.retained)
    ratio, ratio_low, ratio_high = _ends(c.latency_ratio)
    noise = c.noise
    floor = noise.floor if noise is not None else None
    within = noise.within if noise is not None else None
    passed = round(c.cell_rate * c.pairs) if c.cell_rate is not None else 0
    base_passed = round(c.baseline_rate * c.pairs) if c.baseline_rate is not None else 0
    return ComparisonRecord(
        kind="quantization" if quantization is not None else "technique", run=c.cell.run.name,
        cell=c.cell.label, cell_id=c.cell.cell.id, baseline=c.baseline.label, baseline_id=c.baseline.cell.id,
        quantization=c.cell.cell.quantization, baseline_quantization=c.baseline.cell.quantization,
        techniques=";".join(f"{k}={v}" for k, v in sorted(c.cell.cell.techniques.items())),
        pairs=c.pairs, baseline_passed=base_passed, cell_passed=passed, baseline_pass_rate=c.baseline_rate,
        cell_pass_rate=c.cell_rate, diff_points=c.diff_points, mcnemar_b=c.only_baseline, mcnemar_c=c.only_cell,
        mcnemar_p=c.p_value, retained=retained, retained_low=retained_low, retained_high=retained_high,
        accuracy_verdict=c.accuracy_verdict.value, accuracy_words=c.accuracy,
        mlperf_99=quantization.meets_99.value if quantization is not None and quantization.meets_99 else None,
        mlperf_999=quantization.meets_999.value if quantization is not None and quantization.meets_999 else None,
        answers_changed=noise.changed if noise is not None else 0,
        answers_paired=noise.pairs if noise is not None else 0,
        noise_floor_changed=floor.answers_changed if floor is not None else None,
        noise_floor_tasks=floor.tasks if floor is not None else None,
        noise_floor_concurrency=floor.concurrency if floor is not None else None,
        fisher_p=noise.p_value if noise is not None else None,
        noise_floor_verdict="not measured" if within is None else ("within" if within else "above"),
        latency_source=c.latency_source, latency_ratio=ratio, latency_ratio_low=ratio_low,
        latency_ratio_high=ratio_high, latency_pairs=c.latency_ratio.pairs if c.latency_ratio else None,
        speed_verdict=c.speed_verdict.value, speed_words=c.speed,
        ttft_cold_ratio=c.ttft_ratios["cold"].ratio if "cold" in c.ttft_ratios else None,
        ttft_warm_ratio=c.ttft_ratios["warm"].ratio if "warm" in c.ttft_ratios else None,
        verdict=quantization.verdict + f"; {c.speed}" if quantization is not None else c.verdict)


def comparison_rows(techniques: list[Comparison], quantizations: list[QuantizationRow]) -> list[ComparisonRecord]:
    """Every comparison of the report: techniques first, then quantizations, in the report's order."""
    return [record(c) for c in techniques] + [record(q.comparison, q) for q in quantizations]


def _type_name(annotation) -> str:
    text = str(annotation).replace("typing.", "")
    return text.replace("<class '", "").replace("'>", "").replace("NoneType", "None")


def schema_markdown() -> str:
    """The table's schema as Markdown: one row per field with its type and meaning."""
    lines = ["# The `comparisons` table", "",
             "<!-- generated by `python -m runner.report.comparison_table`: do not edit by hand -->", "",
             f"`runner report` writes `comparisons.csv` and `comparisons.json` beside `results.csv`: one row per "
             f"cell compared with its baseline (a technique cell with the same cell without its techniques, a "
             f"quantized cell with its model's full-precision cell). Schema version **{SCHEMA_VERSION}**; "
             f"every row carries it in `schema_version`. In the CSV an empty field is None.", "",
             "| field | type | meaning |", "|---|---|---|"]
    for name, info in ComparisonRecord.model_fields.items():
        meaning = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{_type_name(info.annotation).replace('|', chr(92) + '|')}` | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_markdown())
