"""The report's tables as typed rows, computed once and written by every writer (HTML, Markdown, CSV, JSON)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from runner.errors import cap
from runner.evaluation.verdicts import JudgingCounts, judging_counts
from runner.measuring import stats
from runner.measuring.client import overhead_note
from runner.measuring.noise import NoiseFloor
from runner.measuring.passrate import pass_count
from runner.records import ExpectedOutputs, Outcome, Sample
from runner.report.comparisons import Comparison, QuantizationRow, quantization_impact, technique_impact
from runner.report.data import (LANGUAGE_MODES, CellData, RunData, TaskCatalogue, machine_key,
                                shared_latency_source, split_task_id)



# -- small records -----------------------------------------------------------------------------
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


@dataclass(frozen=True)
class CascadeRow:
    """One cell and split: the headline cascade, each cascade's pass rate, and the verdicts that flip."""

    cell: CellData
    language: str
    mode: str
    headline: str  # "upstream" or "runner"
    upstream: PassRate
    runner: PassRate
    flips: int  # tasks passing under one cascade and not the other
    compared: int  # tasks judged by both


def cascades(cells: list[CellData]) -> list[CascadeRow]:
    """Both cascades side by side, per cell and language x mode, where samples carry both verdicts."""
    rows = []
    for cell in cells:
        by_key: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for s in cell.accuracy:
            if s.upstream is not None or s.runner is not None:
                by_key[split_task_id(s.task_id)].append(s)
        for (language, mode), samples in sorted(by_key.items()):
            both = [s for s in samples if s.upstream is not None and s.runner is not None]
            flips = sum((s.upstream.outcome == Outcome.passed) != (s.runner.outcome == Outcome.passed) for s in both)
            heads = {s.cascade.value for s in samples if s.cascade is not None}
            rows.append(CascadeRow(cell=cell, language=language, mode=mode, headline=", ".join(sorted(heads)) or "—",
                                   upstream=PassRate.of([s.upstream.outcome for s in samples if s.upstream]),
                                   runner=PassRate.of([s.runner.outcome for s in samples if s.runner]),
                                   flips=flips, compared=len(both)))
    return rows


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
        return cls(source=source, samples=len(samples),
                   ttft_p50=stats.percentile(ttft, 50), ttft_p95=stats.percentile(ttft, 95),
                   tpot_p50=stats.percentile(tpot, 50), itl_p50=stats.percentile(itl, 50),
                   e2e_p50=stats.percentile(e2e, 50), e2e_p95=stats.percentile(e2e, 95),
                   output_tokens_per_s=tokens / seconds if seconds > 0 else None,
                   cached_tokens_p50=stats.percentile(cached, 50) if cached else None,
                   ttft_cold_p50=stats.percentile(cold, 50) if cold else None, cold_samples=len(cold))


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
            sweep={p.concurrency: (p.requests_per_s, p.output_tokens_per_s) for p in result.sweep},
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


# -- published reference -------------------------------------------------------------------------
#: SimCoPilot's tasks per split (the published tables' denominators)
SPLIT_SIZES = {("python", "infill"): 382, ("python", "completion"): 212, ("java", "infill"): 283,
               ("java", "completion"): 286}


def _overlap(rate: PassRate, published: float, half: float) -> str:
    """How a reproduced rate (± upstream's bootstrap half-width) stands against a published interval, in words."""
    if rate.rate is None:
        return "not measured"
    value, spread = 100 * rate.rate, 100 * (rate.boot_half or 0.0)
    if abs(value - published) <= half:
        return "inside the published interval"
    if value - spread <= published + half and published - half <= value + spread:
        return "intervals overlap"
    return "no overlap"


@dataclass(frozen=True)
class ReferenceRow:
    """A reproduced pass rate beside the published row its model names, both ways, with what is known to differ."""

    cell: CellData
    language: str
    mode: str
    reproduced: PassRate  # over the scoreable tasks (the headline)
    published: float  # %
    published_half_width: float  # %
    row: str  # the published row, "<edition>: <model>"
    source: str  # repository@commit file
    reproduced_all: PassRate | None = None  # over all tasks, unscoreable ones counted as failures
    note: str = ""  # the published table's note (how its numbers were made, e.g. a hosted endpoint)
    differences: str = ""  # what is known to differ from the published setting

    @property
    def within(self) -> bool | None:
        """Whether the reproduced rate (scoreable tasks) falls inside the published 95% interval."""
        return self._inside(self.reproduced)

    @property
    def within_all(self) -> bool | None:
        """Whether the all-tasks rate (unscoreable ones as failures) falls inside the published 95% interval."""
        return self._inside(self.reproduced_all)

    def _inside(self, rate: PassRate | None) -> bool | None:
        if rate is None or rate.rate is None:
            return None
        return abs(100 * rate.rate - self.published) <= self.published_half_width

    @property
    def verdict(self) -> str:
        return _overlap(self.reproduced, self.published, self.published_half_width)

    @property
    def verdict_all(self) -> str:
        return _overlap(self.reproduced_all, self.published, self.published_half_width) if self.reproduced_all else "not measured"


def published_row_of(cell: CellData) -> str | None:
    """The published row a cell's model names in its run's matrix (runs before the field: a ``llama3-70b*`` key is 2024's LLaMA 3 70B)."""
    spec = (cell.run.manifest.matrix.get("models") or {}).get(cell.cell.model) or {}
    if isinstance(spec, dict) and spec.get("published"):
        return str(spec["published"])
    return "2024: LLaMA 3 70B" if cell.cell.model.startswith("llama3-70b") else None


def reference(rows: list[HeadlineRow]) -> list[ReferenceRow]:
    """Every cell whose model names a published row: its pass rate per split beside the published one, both ways."""
    from runner.benchmarks.published import SPLITS, lookup, table_of
    from runner.errors import UserError

    out = []
    for row in rows:
        name = published_row_of(row.cell)
        if name is None:
            continue
        try:
            published = lookup(name)
        except UserError:
            continue  # a run from a matrix whose row no longer ships: nothing to compare with
        table = table_of(published)
        for key in SPLITS:
            ref = published.rate(*key)
            if ref is None:
                continue
            rate = row.best.get(key) or PassRate.of([])
            every = row.best_all.get(key) or PassRate.of([])
            differences = []
            if rate.unscoreable:
                differences.append(f"{rate.unscoreable} unscoreable here")
            if row.re_recorded.get(key):
                differences.append(f"{row.re_recorded[key]} judged against re-recorded outputs")
            size = SPLIT_SIZES.get(key)
            if size and every.n < size:
                differences.append(f"{size - every.n} of {size} tasks not asked or unavailable")
            out.append(ReferenceRow(cell=row.cell, language=key[0], mode=key[1], reproduced=rate,
                                    published=ref.rate, published_half_width=ref.half_width, reproduced_all=every,
                                    row=published.reference, source=table.source, note=table.note,
                                    differences="; ".join(differences) or "none known"))
    return out


# -- hardware ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HardwareEntry:
    machine: str
    row: HeadlineRow
    speedup: float | None  # reference machine's e2e p50 / this machine's (>1: faster)


@dataclass(frozen=True)
class HardwareRow:
    """The same cell measured on several machines."""

    cell_id: str
    entries: list[HardwareEntry]


def hardware(runs: list[RunData], rows: list[HeadlineRow]) -> list[HardwareRow]:
    """Cells measured on more than one machine, side by side; empty when all runs share a machine."""
    if len({machine_key(r.manifest.fingerprint) for r in runs}) < 2:
        return []
    by_id: dict[str, list[HeadlineRow]] = defaultdict(list)
    for row in rows:
        by_id[row.cell.cell.id].append(row)
    out = []
    for cell_id, same in by_id.items():
        machines = {machine_key(r.cell.run.manifest.fingerprint) for r in same}
        if len(machines) < 2:
            continue
        ref = same[0].latency.e2e_p50
        entries = [HardwareEntry(machine=r.cell.run.machine, row=r,
                                 speedup=(ref / r.latency.e2e_p50) if ref and r.latency.e2e_p50 else None)
                   for r in same]
        out.append(HardwareRow(cell_id=cell_id, entries=entries))
    return out


# -- categories ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CategoryRow:
    """One cell on one of the paper's splits (language x mode)."""

    cell: CellData
    language: str
    mode: str

    @property
    def key(self) -> str:
        return f"{self.cell.label} · {self.language} {self.mode}"


@dataclass(frozen=True)
class CategoryTable:
    """Pass rate by SimCoPilot category (rows: cell x language x mode, as the paper reports them)."""

    categories: list[str]
    cells: list[CellData]
    rows: list[CategoryRow]
    rates: dict[tuple[str, str], PassRate]  # (row key, category) -> rate


def categories(cells: list[CellData], catalogue: TaskCatalogue) -> CategoryTable | None:
    """Pass rate per category per cell and language x mode, or None when no task carries categories."""
    if not catalogue.tasks:
        return None
    outcomes: dict[tuple[str, str], list[Outcome | None]] = defaultdict(list)
    names: set[str] = set()
    rows: dict[str, CategoryRow] = {}
    for cell in cells:
        for s in cell.accuracy:
            task = catalogue.tasks.get(s.task_id)
            if not task or not task.categories:
                continue
            language, mode = split_task_id(s.task_id)
            row = rows.setdefault(f"{cell.label} · {language} {mode}", CategoryRow(cell, language, mode))
            for category in task.categories:
                outcomes[(row.key, category)].append(s.outcome)
                names.add(category)
    if not names:
        return None
    with_data = [c for c in cells if c.accuracy]
    order = {c.label: i for i, c in enumerate(with_data)}
    ordered = sorted(rows.values(), key=lambda r: (order.get(r.cell.label, 0), LANGUAGE_MODES.index((r.language, r.mode))
                                                   if (r.language, r.mode) in LANGUAGE_MODES else 99))
    return CategoryTable(categories=sorted(names), cells=with_data, rows=ordered,
                         rates={k: PassRate.of(v) for k, v in outcomes.items()})


# -- prompts -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptMismatch:
    task_id: str
    hashes: dict[str, list[str]]  # prompt sha256 -> cell labels that saw it


@dataclass(frozen=True)
class PromptCheck:
    """Whether every cell of one prompt style saw the same prompt for each task."""

    style: str
    cells: list[str]
    tasks: int
    manifest_hashes: dict[str, str]  # run name -> prompt-set sha256 in its manifest
    mismatches: list[PromptMismatch]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def prompt_checks(runs: list[RunData]) -> list[PromptCheck]:
    """Compare the per-task prompt sha256 across all cells of each prompt style."""
    seen: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    cells_of: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        for cell in run.cells:
            style = cell.cell.prompt_style
            hashes = {s.task_id: s.prompt_sha256 for s in cell.samples if s.prompt_sha256}
            if hashes:
                cells_of[style].append(cell.label)
            for task_id, digest in hashes.items():
                seen[style][task_id][digest].append(cell.label)
    out = []
    styles = sorted(set(seen) | {s for r in runs for s in r.manifest.prompt_set_sha256})
    for style in styles:
        tasks = seen.get(style, {})
        mismatches = [PromptMismatch(task_id=t, hashes=dict(h)) for t, h in sorted(tasks.items()) if len(h) > 1]
        out.append(PromptCheck(style=style, cells=cells_of.get(style, []), tasks=len(tasks),
                               manifest_hashes={r.name: r.manifest.prompt_set_sha256[style]
                                                for r in runs if style in r.manifest.prompt_set_sha256},
                               mismatches=mismatches))
    return out


# -- per-task drill-down -------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskOutcomes:
    """One task's outcome in every cell (None: the cell has no verdict for it)."""

    task_id: str
    outcomes: list[Outcome | None]

    @property
    def disagrees(self) -> bool:
        judged = {o == Outcome.passed for o in self.outcomes if o is not None}
        return len(judged) > 1


def task_outcomes(cells: list[CellData]) -> list[TaskOutcomes]:
    """Every task any cell judged, in id order, with each cell's outcome."""
    maps = [c.accuracy_by_task() for c in cells]
    ids = sorted({t for m in maps for t in m}, key=_task_sort_key)
    return [TaskOutcomes(task_id=t, outcomes=[m[t].outcome if t in m else None for m in maps]) for t in ids]


def _task_sort_key(task_id: str) -> tuple:
    # (folders, first line of the span, id): ids from another tool may have no "/" or no span
    parts = task_id.split("/")
    span = parts[-1].split("-")[0]
    return (tuple(parts[:-1]), int(span) if span.isdigit() else -1, task_id)


@dataclass(frozen=True)
class Text:
    """A possibly truncated text for the report."""

    text: str
    omitted: int  # characters left out

    @classmethod
    def of(cls, value: str | None, limit: int) -> "Text":
        value = value or ""
        if len(value) <= limit:
            return cls(value, 0)
        return cls(value[:limit], len(value) - limit)


@dataclass(frozen=True)
class SampleDetail:
    """One answer of one cell, for the collapsed drill-down."""

    task_id: str
    outcome: str
    cleaned_outcome: str
    stage: str
    prompt_sha256: str
    finish_reason: str
    e2e_s: float | None
    raw: Text
    code: Text
    stderr: Text
    error: str | None


@dataclass(frozen=True)
class CellDetails:
    cell: CellData
    shown: list[SampleDetail]
    hidden: int  # answers left out to keep the page small


#: limits that keep a full paper run's page in the tens of megabytes at worst
TEXT_LIMIT = 1500
STDERR_LIMIT = 800
DETAIL_BUDGET = 3000  # answers shown across all cells
MIN_PER_CELL = 25


def cell_details(cells: list[CellData], outcomes: list[TaskOutcomes]) -> list[CellDetails]:
    """Per cell, its answers; where the budget runs out, tasks on which the cells disagree come first."""
    per_cell = max(MIN_PER_CELL, DETAIL_BUDGET // max(1, len(cells)))
    priority = {t.task_id: (0 if t.disagrees else 1, i) for i, t in enumerate(outcomes)}
    out = []
    for cell in cells:
        answers = sorted(cell.accuracy, key=lambda s: priority.get(s.task_id, (2, 0)))
        chosen = sorted(answers[:per_cell], key=lambda s: priority.get(s.task_id, (2, 0))[1])
        shown = [SampleDetail(task_id=s.task_id, outcome=_value(s.outcome), cleaned_outcome=_value(s.cleaned_outcome),
                              stage=_value(s.stage), prompt_sha256=s.prompt_sha256, finish_reason=s.finish_reason or "",
                              e2e_s=s.e2e_s, raw=Text.of(s.raw_text, TEXT_LIMIT), code=Text.of(s.code, TEXT_LIMIT),
                              stderr=Text.of(_tail(s.stderr_tail, STDERR_LIMIT), STDERR_LIMIT), error=s.error)
                 for s in chosen]
        out.append(CellDetails(cell=cell, shown=shown, hidden=len(answers) - len(shown)))
    return out


def _tail(text: str, limit: int) -> str:
    # the end of stderr holds the exception; keep it rather than the head
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def _value(enum_value) -> str:
    return enum_value.value if enum_value is not None else ""


# -- the flat results rows (CSV, JSON) -------------------------------------------------------------
def _techniques(techniques: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(techniques.items()))


def result_rows(rows: list[HeadlineRow], refs: list[ReferenceRow]) -> list[dict[str, Any]]:
    """One flat row per cell × language × mode with every figure, same columns in every row."""
    keys = language_modes(rows)
    levels = sweep_levels(rows)
    ref_of = {(r.cell.label, r.language, r.mode): r for r in refs}
    out = []
    for row in rows:
        cell, result, lat = row.cell, row.cell.result, row.latency
        noise = cell.noise
        concurrent, serial = (noise.concurrent, noise.serial) if noise else (None, None)
        for language, mode in keys:
            best = row.best.get((language, mode)) or PassRate.of([])
            every = row.best_all.get((language, mode)) or PassRate.of([])
            clean = row.cleaned.get((language, mode)) or PassRate.of([])
            ref = ref_of.get((cell.label, language, mode))
            record: dict[str, Any] = {
                "run": cell.run.name, "machine": cell.run.machine, "cell": cell.label, "cell_id": cell.cell.id,
                "model": cell.cell.model, "runtime": cell.cell.runtime, "quantization": cell.cell.quantization,
                "techniques": _techniques(cell.cell.techniques), "prompt_style": cell.cell.prompt_style,
                "status": result.status, "status_reason": cap(result.reason),
                "language": language, "mode": mode,
                "tasks": best.n, "passed": best.passed, "pass_rate": best.rate,
                "pass_half_width": best.half_width, "pass_bootstrap_half": best.boot_half,
                "pass_normal_low": best.normal_low,
                "pass_normal_high": best.normal_high, "pass_wilson_low": best.wilson_low,
                "pass_wilson_high": best.wilson_high,
                # the paper's denominator: every task asked, an unscoreable one counted as a failure
                "unscoreable": best.unscoreable, "all_tasks": every.n, "all_tasks_pass_rate": every.rate,
                "all_tasks_bootstrap_half": every.boot_half,
                "re_recorded_samples": row.re_recorded.get((language, mode), 0),
                "cleaned_passed": clean.passed, "cleaned_pass_rate": clean.rate,
                "cleaned_half_width": clean.half_width, "cleaned_wilson_low": clean.wilson_low,
                "cleaned_wilson_high": clean.wilson_high,
                "cell_tasks": row.overall.n, "cell_pass_rate": row.overall.rate,
                "cell_wilson_low": row.overall.wilson_low, "cell_wilson_high": row.overall.wilson_high,
                "request_errors": row.errors,
                # the cell's answers judged afresh, and those that took an identical answer's verdict
                "cell_answers_judged": row.judging.judged, "cell_answers_reused": row.judging.reused,
                "latency_source": lat.source, "latency_samples": lat.samples,
                "ttft_cold_p50_s": lat.ttft_cold_p50, "cached_tokens_p50": lat.cached_tokens_p50,
                "ttft_p50_s": lat.ttft_p50, "ttft_p95_s": lat.ttft_p95, "tpot_p50_s": lat.tpot_p50,
                "itl_p50_s": lat.itl_p50, "e2e_p50_s": lat.e2e_p50, "e2e_p95_s": lat.e2e_p95,
                "output_tokens_per_s": lat.output_tokens_per_s,
                # whether the server batched concurrent requests (None: the runtime always does)
                "batched": result.batched, "batching": result.batching,
                "load_s": result.load_seconds, "peak_gpu_memory_mib": result.peak_gpu_memory_mib,
                "peak_rss_mib": result.peak_rss_mib, "energy_per_task_j": row.energy_per_task_j,
                "energy_source": result.energy_source, "error_samples": row.errors,
                # answers generated but not judged: the most at once, and those still waiting
                "eval_backlog_peak": result.eval_backlog_peak, "eval_pending": result.eval_pending,
                "nodes": " ".join(dict.fromkeys(p.node for p in result.placements)),
                # the cell's noise floor (runner.measuring.noise): its repeated tasks, at the accuracy phase's
                # concurrency and one at a time, and how many answers and verdicts changed
                "repeat_tasks": concurrent.tasks if concurrent else None,
                "repeat_answers_changed": concurrent.answers_changed if concurrent else None,
                "repeat_verdicts_changed": concurrent.verdicts_changed if concurrent else None,
                "repeat_serial_tasks": serial.tasks if serial else None,
                "repeat_serial_answers_changed": serial.answers_changed if serial else None,
                "repeat_serial_verdicts_changed": serial.verdicts_changed if serial else None,
            }
            for level in levels:
                rps, tps = row.sweep.get(level, (None, None))
                record[f"requests_per_s_c{level}"] = rps
                record[f"output_tokens_per_s_c{level}"] = tps
            # rounded: the published values have one decimal of a percent, and /100 adds float noise
            record["published_pass_rate"] = round(ref.published / 100, 6) if ref else None
            record["published_half_width"] = round(ref.published_half_width / 100, 6) if ref else None
            record["within_published"] = ref.within if ref else None
            record["within_published_all_tasks"] = ref.within_all if ref else None
            record["published_row"] = f"{ref.row} ({ref.source})" if ref else None
            record["published_source"] = ref.source if ref else None
            record["published_verdict"] = ref.verdict if ref else None
            record["published_verdict_all_tasks"] = ref.verdict_all if ref else None
            record["published_differences"] = ref.differences if ref else None
            out.append(record)
    # a measurement no cell has is left out, never shown as an always-empty column; the report
    # says why it is missing (CellResult.resources_absent)
    empty = [k for k in _OPTIONAL_COLUMNS if out and all(r.get(k) is None for r in out)]
    return [{k: v for k, v in r.items() if k not in empty} for r in out]


#: columns that only some hosts or runtimes can fill
_OPTIONAL_COLUMNS = ("batched", "batching", "peak_gpu_memory_mib", "peak_rss_mib", "energy_per_task_j", "energy_source",
                     "ttft_cold_p50_s", "cached_tokens_p50", "repeat_tasks", "repeat_answers_changed",
                     "repeat_verdicts_changed", "repeat_serial_tasks", "repeat_serial_answers_changed",
                     "repeat_serial_verdicts_changed")


def frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points (lower x, higher y), in increasing x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    best, out = float("-inf"), []
    for i in order:
        if points[i][1] > best:
            out.append(i)
            best = points[i][1]
    return out


@dataclass(frozen=True)
class TradePoint:
    """One cell on the latency–accuracy trade-off, its latency from the comparison's common source."""

    row: HeadlineRow
    latency: LatencySummary

    @property
    def cell(self) -> CellData:
        return self.row.cell

    @property
    def overall(self) -> PassRate:
        return self.row.overall


@dataclass(frozen=True)
class TradeOff:
    """The cells the trade-off compares, like with like: those scored on the most tasks, their
    latency from one phase every one of them has (accuracy when some were never timed)."""

    points: list[TradePoint]
    source: str | None
    left_out: list[HeadlineRow]  # scored on fewer tasks (a group's limit): compared in the technique table

    def note(self) -> str | None:
        """Why some cells are not on the chart, or None."""
        if not self.left_out:
            return None
        names = ", ".join(r.cell.label for r in self.left_out)
        return (f"{len(self.left_out)} cell(s) scored on fewer tasks are compared with their baseline "
                f"task by task in the technique table instead: {names}")


def trade_off(rows: list[HeadlineRow]) -> TradeOff:
    """The comparable cells of ``rows`` and the latency source they share."""
    judged = [r for r in rows if r.overall.n]
    if not judged:
        return TradeOff(points=[], source=None, left_out=[])
    most = max(r.overall.n for r in judged)
    full = [r for r in judged if r.overall.n == most]
    source = shared_latency_source([r.cell for r in full])
    return TradeOff(points=[TradePoint(r, LatencySummary.of(r.cell, source)) for r in full], source=source,
                    left_out=[r for r in judged if r.overall.n < most])


@dataclass(frozen=True)
class Highlights:
    """What a reader should see first: the most accurate cell, the fastest, and the frontier, among
    the cells ``trade`` compares."""

    most_accurate: TradePoint | None
    fastest: TradePoint | None
    frontier: list[TradePoint]
    trade: TradeOff
    cells: int
    done: int
    failed: int
    skipped: int
    answers: int
    errors: int


def highlights(rows: list[HeadlineRow]) -> Highlights:
    trade = trade_off(rows)
    timed = [p for p in trade.points if p.latency.e2e_p50]
    on_frontier = [timed[i] for i in frontier([(p.latency.e2e_p50, p.overall.rate) for p in timed])]
    status = [r.status for r in rows]
    return Highlights(
        most_accurate=max(trade.points, key=lambda p: (p.overall.rate, -(p.latency.e2e_p50 or 0)))
        if trade.points else None,
        fastest=min(timed, key=lambda p: p.latency.e2e_p50) if timed else None,
        frontier=on_frontier, trade=trade, cells=len(rows), done=status.count("done"), failed=status.count("failed"),
        skipped=status.count("skipped"), answers=sum(r.overall.n for r in rows), errors=sum(r.errors for r in rows))


# -- judging: answers judged and verdicts reused -----------------------------------------------------
@dataclass(frozen=True)
class JudgingRow:
    """One cell's accuracy answers: judged afresh, and those whose verdict the verdict cache gave
    (an identical answer judged before in the same environment: ``Sample.verdict_from``)."""

    cell: CellData
    judged: int
    reused: int


def judging(cells: list[CellData]) -> tuple[list[JudgingRow], JudgingCounts]:
    """Per cell and in total, the answers judged and the verdicts reused."""
    rows = [JudgingRow(cell, c.judged, c.reused) for cell in cells for c in [judging_counts(cell.samples)]]
    total = JudgingCounts(sum(r.judged for r in rows), sum(r.reused for r in rows))
    return rows, total


# -- timing isolation: timed samples against other generation on their node ----------------------
@dataclass(frozen=True)
class TimingRow:
    """One run's timed figures checked against its activity records (``runner.measuring.activity``)."""

    run: RunData
    isolation: Any  # runner.measuring.activity.TimingIsolation


def timing_rows(runs: list[RunData]) -> list[TimingRow]:
    """Per run, whether any timed sample overlapped another cell's generation on its node."""
    from runner.measuring.activity import overlapping_timed, read_activity

    return [TimingRow(run, overlapping_timed(read_activity(run.path), [s for c in run.cells for s in c.samples]))
            for run in runs]


# -- the environment check ------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvironmentRow:
    """One program the environment check set apart in one run: unscoreable, or judged against re-recorded outputs."""

    run: str
    program: str
    language: str
    status: str  # "unscoreable" | "re-recorded"
    detail: str  # the reason, or how many printed values moved and by how much
    tasks: int  # accuracy samples of this program in the run's cells (each cell counts)


def environment_rows(runs: list[RunData]) -> tuple[list[EnvironmentRow], list[str]]:
    """The programs each run's environment check set apart, with their reasons, and notes on what it checked."""
    rows, notes = [], []
    for run in runs:
        report = run.manifest.environment
        if report is None:
            notes.append(f"{run.name}: no environment check recorded (a run made before the check existed): "
                         "an environment failure there counts as the model's")
            continue
        notes.append(f"{run.name}: {len(report.programs)} programs' references judged on the {report.cascade.value} "
                     f"harness in sandbox {report.sandbox[:30]}; expected outputs: {report.expected}")
        per_program: dict[str, int] = defaultdict(int)
        failed_here: dict[tuple[str, str], list[str]] = defaultdict(list)  # the sandbox failed inside a cell
        for cell in run.cells:
            for s in cell.accuracy:
                program = s.task_id.split("/")[2] if s.task_id.count("/") >= 3 else s.task_id
                per_program[program] += 1
                if s.outcome == Outcome.unscoreable and (s.unscoreable_reason or "").startswith("environment:"):
                    failed_here[(program, split_task_id(s.task_id)[0])].append(s.unscoreable_reason)
        for check in report.programs:
            if not check.scoreable:
                rows.append(EnvironmentRow(run.name, check.program, check.language.value, "unscoreable",
                                           cap(check.reason or "its reference fails here", 300), per_program[check.program]))
            elif check.drift is not None and check.expected_outputs is ExpectedOutputs.re_recorded:
                d = check.drift
                rows.append(EnvironmentRow(run.name, check.program, check.language.value, "re-recorded",
                                           f"{d.values_moved} of {d.values_compared} printed values moved, at most "
                                           f"{d.max_relative_change:.1e} relative; upstream's outputs kept beside them",
                                           per_program[check.program]))
        for (program, language), reasons in sorted(failed_here.items()):
            rows.append(EnvironmentRow(run.name, program, language, "environment failure",
                                       f"the sandbox could not run {len(reasons)} answer(s): {cap(reasons[-1], 240)}",
                                       len(reasons)))
    return rows, notes


@dataclass
class Tables:
    """Everything the templates show, computed once."""

    runs: list[RunData]
    cells: list[CellData]
    headline: list[HeadlineRow]
    language_modes: list[tuple[str, str]]
    sweep_levels: list[int]
    techniques: list[Comparison]
    technique_notes: list[str]
    quantizations: list[QuantizationRow]
    quantization_notes: list[str]
    reference: list[ReferenceRow]
    hardware: list[HardwareRow]
    categories: CategoryTable | None
    category_notes: list[str]
    prompt_checks: list[PromptCheck]
    cascades: list[CascadeRow]
    task_outcomes: list[TaskOutcomes]
    details: list[CellDetails]
    highlights: Highlights
    results: list[dict[str, Any]] = field(default_factory=list)
    resources: "ResourceColumns | None" = None
    environment: list[EnvironmentRow] = field(default_factory=list)
    environment_notes: list[str] = field(default_factory=list)
    editions: list[Any] = field(default_factory=list)  # runner.report.editions.EditionRow
    client_overhead: str | None = None  # runner.measuring.client.overhead_note: bench/client_speed.py's figures, where measured
    judging: list[JudgingRow] = field(default_factory=list)  # per cell: answers judged, verdicts reused
    judging_total: JudgingCounts = field(default_factory=JudgingCounts)
    timing: list[TimingRow] = field(default_factory=list)  # per run: timed samples that overlapped other generation
    noise: list[tuple[CellData, NoiseFloor]] = field(default_factory=list)  # the cells that repeated tasks


@dataclass
class ResourceColumns:
    """Which energy and memory figures any cell has (a column only then), and why the others are missing."""

    peak_gpu_memory: bool
    peak_rss: bool
    energy: bool
    cold_ttft: bool
    notes: list[str]  # "energy: not measured on <machine>: <why>", one per distinct reason


def resource_columns(rows: list[HeadlineRow]) -> ResourceColumns:
    notes: dict[str, None] = {}
    for row in rows:
        for what, why in row.cell.result.resources_absent.items():
            notes[f"{what.replace('_', ' ')}: not measured on {row.cell.run.machine}: {why}"] = None
    return ResourceColumns(peak_gpu_memory=any(r.cell.result.peak_gpu_memory_mib is not None for r in rows),
                           peak_rss=any(r.cell.result.peak_rss_mib is not None for r in rows),
                           energy=any(r.energy_per_task_j is not None for r in rows),
                           cold_ttft=any(r.latency.ttft_cold_p50 is not None for r in rows), notes=list(notes))


def build(runs: list[RunData], catalogue: TaskCatalogue) -> Tables:
    """Compute every table of the report from loaded runs."""
    from runner.report.editions import edition_rows  # it builds on this module's PassRate

    cells = [c for r in runs for c in r.cells]
    rows = headline(cells)
    techniques, technique_notes = technique_impact(cells)
    quantizations, quantization_notes = quantization_impact(cells)
    refs = reference(rows)
    outcomes = task_outcomes(cells)
    category_table = categories(cells, catalogue)
    category_notes = list(catalogue.notes)
    env_rows, env_notes = environment_rows(runs)
    judging_rows, judging_total = judging(cells)
    if category_table is None and not category_notes:
        category_notes.append("no answered task carries a category")
    return Tables(runs=runs, cells=cells, headline=rows, language_modes=language_modes(rows),
                  sweep_levels=sweep_levels(rows), techniques=techniques, technique_notes=technique_notes,
                  quantizations=quantizations, quantization_notes=quantization_notes, reference=refs,
                  hardware=hardware(runs, rows), categories=category_table, category_notes=category_notes,
                  prompt_checks=prompt_checks(runs), cascades=cascades(cells), task_outcomes=outcomes,
                  details=cell_details(cells, outcomes), highlights=highlights(rows), results=result_rows(rows, refs),
                  resources=resource_columns(rows), environment=env_rows, environment_notes=env_notes,
                  editions=edition_rows(cells), client_overhead=overhead_note() if sweep_levels(rows) else None,
                  judging=judging_rows, judging_total=judging_total, timing=timing_rows(runs),
                  noise=[(c, floor) for c in cells if (floor := c.noise) is not None])
