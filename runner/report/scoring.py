"""Both post-processing cascades side by side: upstream's scoring code and this project's."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from runner.records import Outcome, Sample
from runner.report.data import CellData, split_task_id
from runner.report.rates import PassRate


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
    """Both cascades side by side, per cell and language x mode, where answers carry upstream's verdict."""
    rows = []
    for cell in cells:
        by_key: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for s in cell.accuracy:
            # only answers judged by upstream's code too: a run that kept one cascade's verdicts
            # (starter's) has no second column to show
            if s.upstream is not None:
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
