"""A reproduced pass rate beside the published SimCoPilot row its model names."""

from __future__ import annotations

from dataclasses import dataclass

from runner.report.data import CellData
from runner.report.headline import HeadlineRow
from runner.report.rates import PassRate


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
    if cell.run.benchmark != "simcopilot":  # the published tables are SimCoPilot's: no other set compares
        return None
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
