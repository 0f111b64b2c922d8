"""The per-task drill-down: every task's outcome in every cell, and each cell's answers."""

from __future__ import annotations

from dataclasses import dataclass

from runner.records import Outcome
from runner.report.data import CellData


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
