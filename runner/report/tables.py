"""Every table of the report, computed once from loaded runs and written by every writer (HTML,
Markdown, CSV, JSON); each table's rows live in a module named for what it shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.measuring.client import overhead_note
from runner.evaluation.verdicts import JudgingCounts
from runner.measuring.noise import NoiseFloor
from runner.report.categories import CategoryTable, categories
from runner.report.comparison_table import ComparisonRecord, comparison_rows
from runner.report.comparisons import Comparison, QuantizationRow, quantization_impact, technique_impact
from runner.report.data import CellData, RunData, TaskCatalogue
from runner.report.drilldown import CellDetails, TaskOutcomes, cell_details, task_outcomes
from runner.report.editions import EditionRow, edition_rows
from runner.report.hardware import HardwareRow, ResourceColumns, hardware, resource_columns
from runner.report.headline import HeadlineRow, headline, language_modes, sweep_levels
from runner.report.provenance import (EnvironmentRow, JudgingRow, PromptCheck, TimingRow, environment_rows,
                                      judging, prompt_checks, timing_rows)
from runner.report.reference import ReferenceRow, reference
from runner.report.results import result_rows
from runner.report.scoring import CascadeRow, cascades
from runner.report.tradeoff import Highlights, highlights
from runner.report.underload import UnderLoad, under_load


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
    resources: ResourceColumns | None = None
    environment: list[EnvironmentRow] = field(default_factory=list)
    environment_notes: list[str] = field(default_factory=list)
    editions: list[EditionRow] = field(default_factory=list)
    client_overhead: str | None = None  # runner.measuring.client.overhead_note: bench/client_speed.py's figures, where measured
    judging: list[JudgingRow] = field(default_factory=list)  # per cell: answers judged, verdicts reused
    judging_total: JudgingCounts = field(default_factory=JudgingCounts)
    timing: list[TimingRow] = field(default_factory=list)  # per run: timed samples that overlapped other generation
    noise: list[tuple[CellData, NoiseFloor]] = field(default_factory=list)  # the cells that repeated tasks
    comparisons: list[ComparisonRecord] = field(default_factory=list)  # every verdict with its test
    underload: UnderLoad | None = None  # cells with judged sweep points ("Accuracy under load"); None: none
    notes: list[str] = field(default_factory=list)  # runs given twice, counted once

    @property
    def simcopilot(self) -> bool:
        """Whether any run was judged on SimCoPilot (its sections: published tables, categories' families)."""
        return any(r.benchmark == "simcopilot" for r in self.runs)

    @property
    def quantization_baselines(self) -> str:
        """The full-precision quantizations the quantized cells are compared with, by their own names."""
        return ", ".join(dict.fromkeys(q.comparison.baseline.cell.quantization for q in self.quantizations))


def build(runs: list[RunData], catalogue: TaskCatalogue, notes: list[str] | None = None) -> Tables:
    """Compute every table of the report from loaded runs (``notes``: what loading them set aside)."""
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
                  noise=[(c, floor) for c in cells if (floor := c.noise) is not None],
                  comparisons=comparison_rows(techniques, quantizations), underload=under_load(runs),
                  notes=list(notes or []))
