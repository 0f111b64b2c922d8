"""A cell against its baseline: technique impact and quantization impact, each as two verdicts no
stronger than their tests. Speed: a paired bootstrap interval of the e2e ratio. Answers: exact
McNemar on the paired outcomes, a paired bootstrap interval of the retained ratio (MLPerf's 99% rule),
and the baseline's noise floor (``runner.measuring.noise``): a change inside it is never an effect."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from scipy.stats import beta

from runner.measuring import stats
from runner.measuring.noise import AgainstFloor, against_floor
from runner.planning.baselines import FULL_PRECISION, is_full_precision, quantization_baseline, technique_baseline
from runner.records import Outcome
from runner.report.data import LATENCY_SOURCES, CellData

#: significance level for the plain-words verdicts
ALPHA = 0.05
BOOTSTRAP_SEED = 20240601
BOOTSTRAP_RESAMPLES = 10_000


class Accuracy(str, Enum):
    """The accuracy verdict of a comparison: only as strong as its test."""

    kept = "kept"  # the retained ratio's whole 95% interval is at or above 99%
    lost = "lost"  # McNemar p < ALPHA, fewer passes, and above the noise floor (or no floor measured)
    gained = "gained"  # McNemar p < ALPHA, more passes, and above the noise floor (or no floor measured)
    not_distinguishable = "not distinguishable"  # the test cannot tell the two cells apart
    within_noise_floor = "within the noise floor"  # answers change as often when the baseline is asked again
    not_measured = "not measured"


class Speed(str, Enum):
    """The speed verdict of a comparison, from the paired bootstrap interval of the e2e ratio."""

    faster = "faster"  # the whole interval below 1
    slower = "slower"  # the whole interval above 1
    no_change = "no measurable change"  # the interval holds 1
    too_few_pairs = "too few timed pairs"
    not_measured = "not measured"


class Target(str, Enum):
    """Whether a quantized cell meets an MLPerf accuracy target, as far as its interval says."""

    met = "met"  # the retained ratio's whole interval is at or above the target
    missed = "missed"  # a loss the test supports, and the whole interval below the target
    undecided = "undecided"  # the interval spans the target, or the loss is not an effect


def _ratio_words(ratio: stats.RatioEstimate) -> str:
    return f"×{ratio.ratio:.2f} [{ratio.interval.low:.2f}, {ratio.interval.high:.2f}]"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


@dataclass
class Comparison:
    """A cell against its baseline on the tasks both answered: two verdicts, speed and answers,
    each with its interval or test."""

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
    #: cell pass rate / baseline pass rate over the paired tasks, paired bootstrap interval
    retained: stats.RatioEstimate | None = None
    #: TTFT ratio cell / baseline per cache state measured one at a time (``cold``, ``warm``)
    ttft_ratios: dict[str, stats.RatioEstimate] = field(default_factory=dict)
    #: the paired answers whose text differs, beside the baseline's noise floor
    noise: AgainstFloor | None = None

    @property
    def speed_verdict(self) -> Speed:
        ratio = self.latency_ratio
        if ratio is None:
            return Speed.not_measured
        if ratio.pairs < MIN_PAIRS:
            return Speed.too_few_pairs
        if ratio.interval.high < 1:
            return Speed.faster
        if ratio.interval.low > 1:
            return Speed.slower
        return Speed.no_change

    @property
    def cache_state(self) -> str | None:
        """The cache state the speed was measured in, where recorded (latency/warm -> ``warm``)."""
        source = self.latency_source
        return source.split("/", 1)[1] if source and "/" in source else None

    @property
    def speed(self) -> str:
        """The speed verdict in words, with the latency ratio and its 95% interval."""
        verdict, ratio = self.speed_verdict, self.latency_ratio
        if ratio is None:
            return "speed not measured"
        if verdict is Speed.too_few_pairs:
            return f"too few timed pairs to judge speed ({ratio.pairs}; ×{ratio.ratio:.2f} the latency)"
        state = f" ({self.cache_state} cache)" if self.cache_state else ""
        head = "no measurable speed change" if verdict is Speed.no_change else verdict.value
        return f"{head} {_ratio_words(ratio)}{state}"

    @property
    def accuracy_verdict(self) -> Accuracy:
        if self.diff_points is None or self.p_value is None:
            return Accuracy.not_measured
        if self.noise is not None and self.noise.within:
            # repetition alone changes answers as often: no effect to name, whatever McNemar says
            return Accuracy.within_noise_floor
        if self.p_value < ALPHA and self.diff_points != 0:
            return Accuracy.lost if self.diff_points < 0 else Accuracy.gained
        if self.retained is not None and self.retained.interval.low >= 0.99:
            return Accuracy.kept
        return Accuracy.not_distinguishable

    @property
    def accuracy(self) -> str:
        """The answers' verdict in words, with the test behind it."""
        verdict, p = self.accuracy_verdict, self.p_value
        if verdict is Accuracy.not_measured:
            return "accuracy not measured"
        if verdict is Accuracy.within_noise_floor:
            return (f"no change beyond the noise floor ({self.diff_points:+.1f} points, McNemar p = {p:.2g}; "
                    f"Fisher p = {self.noise.p_value:.2g} against repetition alone)")
        if verdict in (Accuracy.lost, Accuracy.gained):
            unmeasured = "; noise floor not measured" if self.noise is None or self.noise.floor is None else ""
            return f"{verdict.value} {abs(self.diff_points):.1f} points (McNemar p = {p:.2g}{unmeasured})"
        if verdict is Accuracy.kept:
            return f"kept ≥ 99% (retained {_pct(self.retained.ratio)} [{_pct(self.retained.interval.low)}, " \
                   f"{_pct(self.retained.interval.high)}])"
        return f"not distinguishable with {self.pairs} tasks (McNemar p = {p:.2g})"

    @property
    def verdict(self) -> str:
        """Both verdicts: ``slower ×2.22 [1.71, 3.46]; answers: no change beyond the noise floor (…)``."""
        return f"{self.speed}; answers: {self.accuracy}"


@dataclass
class QuantizationRow:
    """A quantized cell against the model's full-precision cell of the same runtime (MLPerf's rule)."""

    comparison: Comparison

    @property
    def retained(self) -> float | None:
        """Cell pass rate / baseline pass rate over the paired tasks."""
        r = self.comparison.retained
        return r.ratio if r is not None else None

    def target(self, level: float) -> Target | None:
        """Whether the MLPerf target ``level`` (0.99, 0.999) is met, missed, or not decided by the data."""
        r = self.comparison.retained
        if r is None:
            return None
        if r.interval.low >= level:
            return Target.met
        if r.interval.high < level and self.comparison.accuracy_verdict is Accuracy.lost:
            return Target.missed
        return Target.undecided

    @property
    def meets_99(self) -> Target | None:
        return self.target(0.99)

    @property
    def meets_999(self) -> Target | None:
        return self.target(0.999)

    @property
    def verdict(self) -> str:
        return f"{self.comparison.accuracy}; {self.mlperf}"

    @property
    def mlperf(self) -> str:
        """MLPerf's 99% / 99.9% targets, hedged by the retained ratio's interval."""
        r = self.comparison.retained
        if r is None:
            return "no baseline accuracy to compare with"
        interval = f"retained {_pct(r.ratio)} [{_pct(r.interval.low)}, {_pct(r.interval.high)}]"
        if self.meets_999 is Target.met:
            return f"MLPerf 99.9% target met ({interval})"
        if self.meets_99 is Target.met:
            return f"MLPerf 99% target met, 99.9% not decided ({interval})"
        if self.meets_99 is Target.missed:
            return f"MLPerf 99% target missed ({interval})"
        return f"MLPerf 99% target not decided with {self.comparison.pairs} tasks ({interval})"


def compare(cell: CellData, baseline: CellData) -> Comparison:
    """Paired accuracy (exact McNemar, bootstrap retained ratio) and paired latency (bootstrap ratio
    of medians) of two cells."""
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
    retained = retained_interval(sum(base_pass), only_base, only_cell, n) if n and any(base_pass) else None
    answered = [t for t in common if Outcome.error not in (a[t].outcome, b[t].outcome)]
    changed = sum(a[t].raw_text != b[t].raw_text for t in answered)
    noise = against_floor(changed, len(answered), baseline.noise)
    ratio, source = _latency_ratio(cell, baseline)
    ttft = {state: r for state in ("cold", "warm")
            if (r := _paired_ratio(cell, baseline, f"latency/{state}", "ttft_s")) is not None}
    return Comparison(cell=cell, baseline=baseline, pairs=n, baseline_rate=base_rate, cell_rate=cell_rate,
                      diff_points=diff, only_baseline=only_base, only_cell=only_cell, p_value=p,
                      latency_ratio=ratio, latency_source=source, retained=retained, ttft_ratios=ttft, noise=noise)


def retained_interval(base_passed: int, b: int, c: int, n: int, confidence: float = 0.95) -> stats.RatioEstimate:
    """Retained = cell passes / baseline passes over ``n`` paired tasks, with an interval that holds
    the baseline's passes fixed and bounds the discordant counts (b: passes the cell lost, c: passes it
    gained) by Clopper-Pearson, each at 1 - (1 - confidence)/4 (Bonferroni: the interval covers at least
    ``confidence``). Never a bootstrap: with b = 0 every resample keeps all passes and an interval would
    claim "kept ≥ 99%" from a few dozen tasks."""
    tail = (1 - confidence) / 4

    def upper(k: int) -> float:  # the most tasks of n that k observed could stand for
        return n * (1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k)))

    def lower(k: int) -> float:
        return n * (0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1)))

    ratio = (base_passed - b + c) / base_passed
    low = max(0.0, (base_passed - upper(b) + lower(c)) / base_passed)
    high = (base_passed - lower(b) + upper(c)) / base_passed
    return stats.RatioEstimate(ratio=ratio, interval=stats.Interval(low, high), pairs=n, resamples=0)


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
                notes.append(f"{cell.label}: no full-precision cell ({', '.join(FULL_PRECISION)}) of {c.model} on "
                             f"{c.runtime} to compare with")
            continue
        rows.append(QuantizationRow(comparison=compare(cell, baseline)))
    return rows, notes
