"""Pass rate per SimCoPilot category, per cell and language × mode."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from runner.records import Outcome
from runner.report.data import LANGUAGE_MODES, CellData, TaskCatalogue, split_task_id
from runner.report.rates import PassRate


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
