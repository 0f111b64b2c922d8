"""SimCoPilot's published leaderboards, shipped as data (``simcopilot-published.toml``) with their sources.

A matrix model names the row its cells are compared with, ``published = "2024: LLaMA 3 70B"``;
the report puts each such cell's per-split rates beside that row's.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from runner.errors import UserError

DATA = Path(__file__).resolve().parent / "simcopilot-published.toml"
#: the splits of every SimCoPilot table, in upstream's column order
SPLITS: tuple[tuple[str, str], ...] = (("python", "infill"), ("python", "completion"),
                                       ("java", "infill"), ("java", "completion"))


class PublishedRate(BaseModel):
    """One published pass rate, as upstream printed it."""

    model_config = ConfigDict(frozen=True)

    rate: float = Field(description="pass rate, % of the split's tasks")
    half_width: float = Field(description="half-width of the 95% interval, % (upstream: 1.96 SD of a bootstrap)")

    @property
    def low(self) -> float:
        return self.rate - self.half_width

    @property
    def high(self) -> float:
        return self.rate + self.half_width


class PublishedRow(BaseModel):
    """One model's row of a published table."""

    model_config = ConfigDict(frozen=True)

    edition: str = Field(description="the table's edition: 2024 or 2025")
    model: str = Field(description="the model's name exactly as the table prints it")
    rates: dict[str, PublishedRate] = Field(description="per split, keyed 'python/infill' and so on")

    @property
    def reference(self) -> str:
        """How a matrix names this row."""
        return f"{self.edition}: {self.model}"

    def rate(self, language: str, mode: str) -> PublishedRate | None:
        return self.rates.get(f"{language}/{mode}")


class PublishedTable(BaseModel):
    """One published leaderboard and where it was published."""

    model_config = ConfigDict(frozen=True)

    edition: str = Field(description="2024 (the release) or 2025 (the repository the arXiv paper links)")
    repository: str = Field(description="GitHub owner/name")
    commit: str = Field(description="the commit whose file holds the table")
    file: str = Field(description="the file in that commit")
    note: str = Field("", description="what is known about how the numbers were made")
    rows: tuple[PublishedRow, ...]

    @property
    def source(self) -> str:
        return f"{self.repository}@{self.commit[:7]} {self.file}"


@lru_cache(maxsize=1)
def load_tables(path: Path = DATA) -> tuple[PublishedTable, ...]:
    """Both shipped tables, 2024 first."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    tables = []
    for table in data["tables"]:
        rows = tuple(PublishedRow(edition=table["edition"], model=row["model"],
                                  rates={f"{lang}/{mode}": PublishedRate(rate=row[f"{lang}_{mode}"][0],
                                                                         half_width=row[f"{lang}_{mode}"][1])
                                         for lang, mode in SPLITS})
                     for row in table["rows"])
        tables.append(PublishedTable(**{k: v for k, v in table.items() if k != "rows"}, rows=rows))
    return tuple(tables)


def references() -> list[str]:
    """Every valid ``published`` value."""
    return [row.reference for table in load_tables() for row in table.rows]


def table_of(row: PublishedRow) -> PublishedTable:
    return next(t for t in load_tables() if t.edition == row.edition)


def lookup(reference: str) -> PublishedRow:
    """The row ``"<edition>: <model>"`` names; a ``UserError`` listing the valid names otherwise."""
    edition, _, model = reference.partition(":")
    for table in load_tables():
        if table.edition == edition.strip():
            for row in table.rows:
                if row.model == model.strip():
                    return row
    raise UserError(f"published = {reference!r} names no row of SimCoPilot's published tables; "
                    f"choose one of: {', '.join(references())}")
