"""The report's comparison of SimCoPilot editions: one run's answers judged by each edition's own code.

A run whose matrix lists ``compare_editions`` keeps, on every answer, the verdict of each other
edition beside the headline one (``Sample.editions``). Per cell and split this module puts the two
pass rates side by side and lists the answers whose pass/fail flips between the editions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from runner.records import Outcome, Sample, Stage
from runner.report.data import CellData, split_task_id
from runner.report.rates import PassRate


@dataclass(frozen=True)
class EditionFlip:
    """One answer that passes under one edition's scoring code and not under the other's."""

    task_id: str
    headline_outcome: Outcome
    headline_stage: Stage | None
    other_outcome: Outcome
    other_stage: Stage | None


@dataclass(frozen=True)
class EditionRow:
    """One cell and split: the headline edition's pass rate, another edition's, and the flips."""

    cell: CellData
    language: str
    mode: str
    headline_edition: str
    headline: PassRate  # over the tasks scoreable under the headline edition
    edition: str
    other: PassRate  # over the tasks scoreable under ``edition``
    flips: list[EditionFlip]  # of the answers scoreable under both
    compared: int  # answers scoreable (or failed as requests) under both
    unjudged: int  # answers without a verdict under ``edition`` yet


def _other_outcome(sample: Sample, edition: str) -> tuple[Outcome | None, Stage | None]:
    """``sample``'s verdict under ``edition``; a failed request fails there too (no answer came)."""
    verdict = next((v for v in sample.editions if v.edition == edition), None)
    if verdict is not None:
        return verdict.outcome, verdict.stage
    if sample.outcome is Outcome.error and sample.error and not sample.error.startswith("evaluation failed"):
        return Outcome.error, None
    return None, None


def edition_rows(cells: list[CellData]) -> list[EditionRow]:
    """Per cell, split and compared edition, where the cell's answers carry other editions' verdicts."""
    rows = []
    for cell in cells:
        names = list(dict.fromkeys(v.edition for s in cell.accuracy for v in s.editions))
        if not names:
            continue
        edition_ref = cell.run.manifest.edition
        headline_edition = edition_ref.name if edition_ref is not None else "2024"
        by_split: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for s in cell.accuracy:
            by_split[split_task_id(s.task_id)].append(s)
        for (language, mode), samples in sorted(by_split.items()):
            for name in names:
                pairs = [(s, *_other_outcome(s, name)) for s in samples]
                both = [(s, o, st) for s, o, st in pairs if o is not None and o is not Outcome.unscoreable
                        and s.outcome is not None and s.outcome is not Outcome.unscoreable]
                flips = [EditionFlip(s.task_id, s.outcome, s.stage, o, st) for s, o, st in both
                         if (s.outcome is Outcome.passed) != (o is Outcome.passed)]
                rows.append(EditionRow(cell=cell, language=language, mode=mode, headline_edition=headline_edition,
                                       headline=PassRate.of([s.outcome for s in samples]), edition=name,
                                       other=PassRate.of([o for _, o, _ in pairs]), flips=flips,
                                       compared=len(both), unjudged=sum(o is None for _, o, _ in pairs)))
    return rows
