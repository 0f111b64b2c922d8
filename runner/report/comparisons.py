"""A cell against its baseline: technique impact (paired McNemar on accuracy, a paired bootstrap on
latency) and quantization impact (accuracy retained against the full-precision cell, MLPerf's rule),
each beside the baseline's noise floor (``runner.measuring.noise``): a change inside it is never an effect."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.measuring import stats
from runner.measuring.noise import AgainstFloor, against_floor
from runner.planning.baselines import is_full_precision, quantization_baseline, technique_baseline
from runner.records import Outcome
from runner.report.data import CellData
#: significance level for the plain-words verdicts
ALPHA = 0.05
BOOTSTRAP_SEED = 20240601
BOOTSTRAP_RESAMPLES = 10_000


@dataclass
class Comparison:
    """A cell against its baseline on the tasks both answered."""

    cell: CellData
    baseline: CellData
    pairs: int
    baseline_rate: float | None
    cell_rate: float | None
    diff_points: float | None  # (cell - baseline) pass rate, percentage points
    only_baseline: int  # McNemar b: passed under the baseline only
    only_cell: int  # McNemar c: passed under the cell only
    p_value: float | None
    latency_ratio: stats.RatioEstimate | None  # e2e p50 cell / baseline, paired bootstrap
    latency_source: str | None  # the phase and cache state the ratio comes from (latency/warm...)
    speed: str
    accuracy: str
    #: TTFT ratio cell / baseline per cache state measured one at a time (``cold``, ``warm``)
    ttft_ratios: dict[str, stats.RatioEstimate] = field(default_factory=dict)
    #: the paired answers whose text differs, beside the baseline's noise floor
    noise: AgainstFloor | None = None

    @property
    def verdict(self) -> str:
        # the cache state the speed was measured in, when one was recorded (latency/warm -> "warm cache")
        state = self.latency_source.split("/", 1)[1] if self.latency_source and "/" in self.latency_source else None
        return f"{self.speed}{f' ({state} cache)' if state else ''}, {self.accuracy}"


@dataclass
class QuantizationRow:
    """A quantized cell against the model's full-precision cell of the same runtime (MLPerf's rule)."""

    comparison: Comparison
    retained: float | None  # cell pass rate / baseline pass rate
    meets_99: bool | None
    meets_999: bool | None

    @property
    def verdict(self) -> str:
        words = self._mlperf()
        noise = self.comparison.noise
        return f"within the noise floor ({words})" if noise is not None and noise.within else words

    def _mlperf(self) -> str:
        if self.retained is None:
            return "no baseline accuracy to compare with"
        if self.meets_999:
            return "keeps ≥ 99.9% of the baseline accuracy (MLPerf high-accuracy target)"
        if self.meets_99:
            return "keeps ≥ 99% (not 99.9%) of the baseline accuracy"
        return f"keeps {100 * self.retained:.1f}%: below MLPerf's 99% target"


def compare(cell: CellData, baseline: CellData) -> Comparison:
    """Paired accuracy (exact McNemar) and paired latency (bootstrap ratio of medians) of two cells."""
    a, b = baseline.accuracy_by_task(), cell.accuracy_by_task()
    common = sorted(set(a) & set(b))
    base_pass = [a[t].outcome == Outcome.passed for t in common]
    cell_pass = [b[t].outcome == Outcome.passed for t in common]
    only_base = sum(x and not y for x, y in zip(base_pass, cell_pass))
    only_cell = sum(y and not x for x, y in zip(base_pass, cell_pass))
    n = len(common)
    base_rate = sum(base_pass) / n if n else None
    cell_rate = sum(cell_pass) / n if n else None
    diff = 100 * (cell_rate - base_rate) if n else None
    p = stats.mcnemar_exact(only_base, only_cell) if n else None
    answered = [t for t in common if Outcome.error not in (a[t].outcome, b[t].outcome)]
    changed = sum(a[t].raw_text != b[t].raw_text for t in answered)
    noise = against_floor(changed, len(answered), baseline.noise)
    ratio, source = _latency_ratio(cell, baseline)
    ttft = {state: r for state in ("cold", "warm")
            if (r := _paired_ratio(cell, baseline, f"latency/{state}", "ttft_s")) is not None}
    return Comparison(cell=cell, baseline=baseline, pairs=n, baseline_rate=base_rate, cell_rate=cell_rate,
                      diff_points=diff, only_baseline=only_base, only_cell=only_cell, p_value=p,
                      latency_ratio=ratio, latency_source=source, speed=_speed_words(ratio),
                      accuracy=_accuracy_words(diff, p, noise), ttft_ratios=ttft, noise=noise)


def _paired_ratio(cell: CellData, baseline: CellData, source: str, attr: str) -> stats.RatioEstimate | None:
    """Median ratio cell / baseline of ``attr`` over the tasks both timed in ``source`` (two at least)."""
    x = {s.task_id: getattr(s, attr) for s in baseline.timed(source) if getattr(s, attr) is not None}
    y = {s.task_id: getattr(s, attr) for s in cell.timed(source) if getattr(s, attr) is not None}
    common = sorted(set(x) & set(y))
    if len(common) < 2:
        return None
    return stats.paired_bootstrap_ratio([x[t] for t in common], [y[t] for t in common], statistic="median",
                                        resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)


#: fewer timed pairs than this give a ratio but no speed verdict
MIN_PAIRS = 5


def _latency_ratio(cell: CellData, baseline: CellData) -> tuple[stats.RatioEstimate | None, str | None]:
    """The e2e ratio from the one-at-a-time phase (warm cache first, then cold) when it has enough
    pairs, else from the accuracy phase."""
    from runner.report.data import LATENCY_SOURCES

    found = []
    for phase in LATENCY_SOURCES:
        x = {s.task_id: s.e2e_s for s in baseline.timed(phase)}
        y = {s.task_id: s.e2e_s for s in cell.timed(phase)}
        common = sorted(set(x) & set(y))
        if len(common) >= 2:
            found.append((phase, [x[t] for t in common], [y[t] for t in common]))
    if not found:
        return None, None
    phase, x, y = next((f for f in found if len(f[1]) >= MIN_PAIRS), found[0])
    estimate = stats.paired_bootstrap_ratio(x, y, statistic="median", resamples=BOOTSTRAP_RESAMPLES,
                                            seed=BOOTSTRAP_SEED)
    return estimate, phase


def _speed_words(ratio: stats.RatioEstimate | None) -> str:
    if ratio is None:
        return "speed not measured"
    if ratio.pairs < MIN_PAIRS:
        return f"too few timed pairs to judge speed ({ratio.pairs}; ×{ratio.ratio:.2f} the latency)"
    if ratio.interval.high < 1:
        return f"faster (×{1 / ratio.ratio:.2f})"
    if ratio.interval.low > 1:
        return f"slower (×{ratio.ratio:.2f} the latency)"
    return "no measurable speed change"


def _accuracy_words(diff: float | None, p: float | None, noise: AgainstFloor | None = None) -> str:
    if diff is None or p is None:
        return "accuracy not measured"
    if noise is not None and noise.within:  # repetition alone changes answers as often: no effect to name
        return f"within the noise floor ({diff:+.1f} points, p={p:.2g})" if p < ALPHA else "within the noise floor"
    if p < ALPHA:
        verb = "loses" if diff < 0 else "gains"
        unmeasured = "; noise floor not measured" if noise is None or noise.floor is None else ""
        return f"{verb} {abs(diff):.1f} points (p={p:.2g}{unmeasured})"
    return "no measurable accuracy loss" if diff <= 0 else "no measurable accuracy change"


def technique_impact(cells: list[CellData]) -> tuple[list[Comparison], list[str]]:
    """Each technique cell against its baseline: the cell of its run with the same model, runtime,
    quantization and prompt style whose switches are the fewest and a strict subset of its own
    (no techniques at all, or only the settings its matrix group applies to every variant)."""
    rows, notes = [], []
    for cell in cells:
        c = cell.cell
        if not c.techniques:
            continue
        found = technique_baseline(c, [o.cell for o in cell.run.cells])
        if found is None:
            mine = set(c.techniques.items())
            serves_as_baseline = any(set(o.cell.techniques.items()) > mine for o in cell.run.cells)
            if not serves_as_baseline:
                notes.append(f"{cell.label}: no baseline cell (same model, runtime, quantization and prompt "
                             "style, without its techniques) in its run")
            continue
        baseline = next(o for o in cell.run.cells if o.cell.id == found.id)
        rows.append(compare(cell, baseline))
    return rows, notes


def quantization_impact(cells: list[CellData]) -> tuple[list[QuantizationRow], list[str]]:
    """Each quantized cell against the full-precision cell of the same model, runtime, techniques and style."""
    rows, notes = [], []
    for cell in cells:
        c = cell.cell
        if is_full_precision(c):
            continue
        found = quantization_baseline(c, [o.cell for o in cell.run.cells])
        baseline = next((o for o in cell.run.cells if o.cell.id == found.id), None) if found else None
        if baseline is None:
            if not c.techniques:
                notes.append(f"{cell.label}: no BF16/FP16 cell of {c.model} on {c.runtime} to compare with")
            continue
        comparison = compare(cell, baseline)
        retained = None
        if comparison.baseline_rate:
            retained = comparison.cell_rate / comparison.baseline_rate
        rows.append(QuantizationRow(comparison=comparison, retained=retained,
                                    meets_99=None if retained is None else retained >= 0.99,
                                    meets_999=None if retained is None else retained >= 0.999))
    return rows, notes
