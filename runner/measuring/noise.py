"""The noise floor: how many answers and verdicts change when a cell is simply asked again.

Batched serving is not deterministic (the batch a request shares changes its arithmetic), so "a
technique changed 9 answers" means something only beside how many change by repetition alone. A
cell with ``settings.repeat_tasks = k`` asks k of its tasks again after its accuracy phase, in the
``repeat`` phase at the accuracy phase's concurrency and in ``repeat-serial`` one at a time
(``runner.running.cell``); ``noise_floor`` counts, per repetition, the answers whose text differs from the
task's accuracy answer and the verdicts whose pass/fail differs. ``against_floor`` sets a
comparison's changed answers beside the baseline's floor (a one-sided Fisher exact test).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from runner.records import Outcome, Sample

#: the repetition at the accuracy phase's concurrency (``settings.concurrency`` in flight)
REPEAT = "repeat"
#: the repetition one request at a time
REPEAT_SERIAL = "repeat-serial"
REPEAT_PHASES = (REPEAT, REPEAT_SERIAL)
#: a change is called an effect only when its rate is above the noise floor's at this level
ALPHA = 0.05


class Repetition(BaseModel):
    """One repetition of a cell's repeated tasks, counted against the same tasks' accuracy answers."""

    phase: str = Field(description="the sample phase: repeat (accuracy concurrency) or repeat-serial")
    concurrency: int = Field(description="requests in flight while it was asked")
    tasks: int = Field(description="repeated tasks with an answer in both this repetition and the accuracy phase")
    answers_changed: int = Field(description="of those, answers whose raw text differs from the accuracy answer")
    verdicts_changed: int = Field(description="of those judged in both, answers whose pass/fail differs")
    judged: int = Field(description="tasks judged in both (the verdicts' denominator)")

    @property
    def words(self) -> str:
        return (f"{self.answers_changed} of {self.tasks} answers, {self.verdicts_changed} of {self.judged} "
                f"verdicts at concurrency {self.concurrency}")


class NoiseFloor(BaseModel):
    """A cell's noise floor: its repeated tasks' changes by repetition alone, per repetition."""

    cell_id: str
    concurrent: Repetition | None = Field(None, description="asked again at the accuracy phase's concurrency")
    serial: Repetition | None = Field(None, description="asked again one request at a time")


def _answered(samples: Iterable[Sample], phase: str) -> dict[str, Sample]:
    """The samples of ``phase`` that returned an answer (no request error), by task."""
    return {s.task_id: s for s in samples if s.phase == phase and s.outcome is not Outcome.error and s.error is None}


def _passed(sample: Sample) -> bool | None:
    """Pass or not; None where no verdict on the model exists (not judged yet, or unscoreable: the
    environment decided it, and a sandbox that failed once must not pass for batching noise)."""
    if sample.outcome is None or sample.outcome is Outcome.unscoreable:
        return None
    return sample.outcome is Outcome.passed


def repetition(accuracy: dict[str, Sample], again: dict[str, Sample], phase: str, concurrency: int) -> Repetition:
    """``again``'s answers counted against ``accuracy``'s on the tasks both answered."""
    common = sorted(set(accuracy) & set(again))
    judged = [t for t in common if _passed(accuracy[t]) is not None and _passed(again[t]) is not None]
    return Repetition(phase=phase, concurrency=concurrency, tasks=len(common),
                      answers_changed=sum(accuracy[t].raw_text != again[t].raw_text for t in common),
                      verdicts_changed=sum(_passed(accuracy[t]) != _passed(again[t]) for t in judged),
                      judged=len(judged))


def noise_floor(cell_id: str, samples: list[Sample], concurrency: int) -> NoiseFloor | None:
    """The noise floor of a cell from its latest samples (``RunStore.latest_samples``); None where it
    has no repeated answer. ``concurrency``: the run's ``settings.concurrency``."""
    accuracy = _answered(samples, "accuracy")
    found = {}
    for phase, level in ((REPEAT, concurrency), (REPEAT_SERIAL, 1)):
        again = _answered(samples, phase)
        if again:
            found[phase] = repetition(accuracy, again, phase, level)
    if not found:
        return None
    return NoiseFloor(cell_id=cell_id, concurrent=found.get(REPEAT), serial=found.get(REPEAT_SERIAL))


class AgainstFloor(BaseModel):
    """A comparison's changed answers beside its baseline's noise floor (at the accuracy concurrency)."""

    changed: int = Field(description="paired tasks whose answer text differs between the two cells")
    pairs: int = Field(description="paired tasks answered by both cells")
    floor: Repetition | None = Field(None, description="the baseline's repetition at the accuracy concurrency")
    #: one-sided Fisher exact test: are answers changed more often between the cells than by repetition?
    p_value: float | None = None

    @property
    def within(self) -> bool | None:
        """Whether the change is inside the noise floor (None: no floor measured)."""
        return None if self.p_value is None else self.p_value >= ALPHA

    @property
    def words(self) -> str:
        head = f"answers changed: {self.changed} of {self.pairs}"
        if self.floor is None:
            return f"{head} · noise floor not measured"
        side = "within the noise floor" if self.within else "above the noise floor"
        return (f"{head} · by repetition alone: {self.floor.answers_changed} of {self.floor.tasks} "
                f"(concurrency {self.floor.concurrency}) · {side} (Fisher p={self.p_value:.2g})")


def against_floor(changed: int, pairs: int, floor: NoiseFloor | None) -> AgainstFloor:
    """``changed`` of ``pairs`` answers beside ``floor``'s repetition at the accuracy concurrency."""
    repeated = floor.concurrent if floor is not None else None
    if repeated is None or not repeated.tasks or not pairs:
        return AgainstFloor(changed=changed, pairs=pairs, floor=repeated)
    from scipy.stats import fisher_exact

    table = [[changed, pairs - changed], [repeated.answers_changed, repeated.tasks - repeated.answers_changed]]
    p = float(fisher_exact(table, alternative="greater").pvalue)
    return AgainstFloor(changed=changed, pairs=pairs, floor=repeated, p_value=p)
