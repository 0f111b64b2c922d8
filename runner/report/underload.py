"""Accuracy under load: per cell, each judged sweep point's pass rate, its answers changed against the
accuracy phase (judged by a noise floor), and its goodput under the run's SLO; and the ``load_points``
table (load_points.csv, load_points.json).

The table's columns are ``LoadRecord``'s fields, versioned by ``SCHEMA_VERSION``: a change of a field's
name, type or meaning raises the version. ``python -m runner.report.underload`` prints the schema
(field, type, meaning) as Markdown: docs/reference/load_points.md is that output, and a test keeps the
two equal.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from runner.errors import UserError
from runner.matrix.spec import Slo
from runner.measuring.underload import LoadPoint, highest_within, load_points
from runner.planning.baselines import quantization_baseline, technique_baseline
from runner.report.data import CellData, RunData

#: raised whenever a field's name, type or meaning changes
SCHEMA_VERSION = "2"


def run_slo(run: RunData) -> Slo:
    """The SLO a run's sweep was held to: its matrix's ``[slo]`` (the defaults for runs before it)."""
    value = run.manifest.matrix.get("slo") or {}
    try:
        return Slo.from_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{run.path / 'manifest.json'}: matrix.slo.{field} = {first.get('input')!r}: "
                        f"{first['msg']}; fix the manifest's [slo] or rerun with a valid one") from None


def _bound(value: float) -> float | None:
    return None if math.isinf(value) else value


def objective_words(slo: Slo) -> str:
    """The objectives each request is held to, ``inf`` ones left out: ``TTFT ≤ 30 s · ITL p99 ≤ 100 ms``."""
    parts = []
    if not math.isinf(slo.ttft_s):
        parts.append(f"TTFT ≤ {slo.ttft_s:g} s")
    if not math.isinf(slo.itl_ms):
        parts.append(f"ITL p{slo.itl_percentile:g} ≤ {slo.itl_ms:g} ms")
    if not math.isinf(slo.tpot_ms):
        parts.append(f"TPOT ≤ {slo.tpot_ms:g} ms")
    if not math.isinf(slo.e2e_s):
        parts.append(f"e2e ≤ {slo.e2e_s:g} s")
    return " · ".join(parts)  # empty: every objective written `inf`


def slo_words(slo: Slo) -> str:
    """The whole SLO in one line: its objectives and the attainment a point needs."""
    objectives = objective_words(slo) or "no objective (every answered request conforms)"
    return f"{objectives} · attainment ≥ {100 * slo.attainment:g}%"


def _rate(value: float) -> str:
    return f"{value:g} req/s"


@dataclass
class CellLoad:
    """One cell's judged sweep points, the floor its changes were judged against and the SLO it was held to."""

    cell: CellData
    points: list[LoadPoint]
    slo: Slo
    #: the label of the cell whose noise floor judged the changes (the cell's own, else its baseline's);
    #: None where neither measured one
    floor_cell: str | None

    @property
    def highest(self) -> tuple[LoadPoint | None, LoadPoint | None]:
        """The highest concurrency and the highest offered rate within the SLO (None where none was)."""
        return highest_within(self.points)

    @property
    def highest_words(self) -> str:
        """``c4 / 1.5 req/s``; ``c4 / none of the rates`` where no rate point reached the SLO; ``none
        measured`` where no point of any kind did."""
        closed, opened = self.highest
        if closed is None and opened is None:
            return "none measured"
        parts = []
        if any(p.concurrency is not None for p in self.points):
            parts.append(closed.load if closed else "none of the concurrencies")
        if any(p.offered_rps is not None for p in self.points):
            parts.append(_rate(opened.offered_rps) if opened and opened.offered_rps is not None
                         else "none of the rates")
        return " / ".join(parts)

    @property
    def floor_words(self) -> str:
        """Whose noise floor the changes were judged against."""
        if self.floor_cell is None:
            return "no noise floor measured (settings.repeat_tasks): changes are counted, never called an effect"
        if self.floor_cell == self.cell.label:
            return "changes judged against its own noise floor"
        return f"changes judged against its baseline's noise floor ({self.floor_cell})"


def floor_of(cell: CellData) -> CellData | None:
    """The cell whose noise floor judges ``cell``'s changes: its own if it measured one, else its
    baseline's (the technique baseline first, then the full-precision cell), else None."""
    if cell.noise is not None:
        return cell
    cells = [o.cell for o in cell.run.cells]
    for found in (technique_baseline(cell.cell, cells), quantization_baseline(cell.cell, cells)):
        if found is None:
            continue
        baseline = next(o for o in cell.run.cells if o.cell.id == found.id)
        if baseline.noise is not None:
            return baseline
    return None


def cell_load(cell: CellData, slo: Slo) -> CellLoad | None:
    """``cell``'s judged sweep points; None where it has none (no sweep, or one from before judged sweeps)."""
    judge = floor_of(cell)
    points = load_points(cell.result, cell.samples, judge.noise if judge else None, slo)
    if not points:
        return None
    return CellLoad(cell=cell, points=points, slo=slo, floor_cell=judge.label if judge else None)


#: each ``Goodput`` field's column in the table; ``requests`` and ``seconds`` are the point's own columns
GOODPUT_COLUMNS = {"errors": "request_errors", "conforming": "slo_conforming", "attainment": "slo_attainment",
                   "goodput_rps": "goodput_rps", "judged": "goodput_judged",
                   "passed_conforming": "passed_conforming", "pass_goodput_rps": "pass_goodput_rps",
                   "ttft_p_s": "ttft_p_s", "itl_p_ms": "itl_p_ms", "within_slo": "within_slo"}
#: ``Goodput`` fields that equal a ``LoadPoint`` field of the same name, so appear once
GOODPUT_SHARED = ("requests", "seconds")


class LoadRecord(BaseModel):
    """One judged sweep point of one cell: speed, pass rate, changes against the accuracy phase, goodput."""

    schema_version: str = Field(SCHEMA_VERSION, description="the version of this table's schema")
    run: str = Field(description="the run the cell belongs to")
    cell: str = Field(description="the cell's label in the report")
    cell_id: str = Field(description="the cell's id (model/runtime/quantization/label)")
    model: str = Field(description="the cell's model key: one chart per model")
    kind: Literal["concurrency", "rate"] = Field(
        description="concurrency: closed loop, `concurrency` requests in flight; rate: open loop, Poisson "
                    "arrivals at `offered_rps`")
    load: str = Field(description="the point's name: `c<N>` (N requests in flight) or `r<R>` (R requests per "
                                  "second offered)")
    concurrency: int | None = Field(description="requests in flight; None at a rate point")
    offered_rps: float | None = Field(description="the offered rate, requests per second; None at a concurrency "
                                                  "point")
    achieved_rps: float = Field(description="answered requests per second over the point's duration")
    output_tokens_per_s: float = Field(description="output tokens per second over the point's duration")
    seconds: float = Field(description="the point's duration, first send to last answer; the goodputs' "
                                       "denominator")
    requests: int = Field(description="requests sent: the sweep's stratified task sample")
    judged: int = Field(description="answers with a verdict, and request errors (counted as not passing); unscoreable "
                                    "tasks left out")
    passed: int = Field(description="answers that passed their tests")
    pass_rate: float | None = Field(description="passed / judged (a fraction); None before any verdict")
    pass_low: float | None = Field(description="the pass rate's Wilson 95% interval, low end")
    pass_high: float | None = Field(description="the pass rate's Wilson 95% interval, high end")
    paired: int = Field(description="tasks answered both at this point and in the accuracy phase")
    answers_changed: int = Field(description="of those, answers whose text differs from the accuracy answer")
    verdicts_changed: int = Field(description="of the tasks judged in both, verdicts (pass or not) that differ")
    verdicts_paired: int = Field(description="tasks judged both at this point and in the accuracy phase")
    floor_p: float | None = Field(description="one-sided Fisher exact p: answers changed more often here than "
                                              "by repetition alone (the noise floor); None: no floor measured")
    floor: Literal["within the noise floor", "above the noise floor", "noise floor not measured"] = Field(
        description="above: floor_p < 0.05, the only case the changes are an effect | within | not measured")
    floor_cell: str | None = Field(description="the cell whose noise floor judged the changes: the cell itself, "
                                               "else its baseline; None: neither measured one")
    changes_words: str = Field(description="the changes and the floor's verdict as the report words them")
    request_errors: int = Field(description="requests that failed (no answer); they never conform")
    slo_conforming: int = Field(description="requests with no error that met every objective of the SLO")
    slo_attainment: float | None = Field(description="slo_conforming / requests (a fraction); None with no "
                                                     "request")
    within_slo: bool = Field(description="slo_attainment >= slo_attainment_target")
    goodput_rps: float | None = Field(description="conforming requests per second; None for a point of no "
                                                  "duration")
    goodput_judged: int = Field(description="requests whose answer has a verdict, unscoreable ones included "
                                            "(errors have none)")
    passed_conforming: int = Field(description="requests whose answer passed its tests and that conformed")
    pass_goodput_rps: float | None = Field(description="passing and conforming requests per second; None for a "
                                                       "point of no duration")
    ttft_p_s: float | None = Field(description="the point's TTFT at slo_ttft_percentile across its requests, "
                                               "seconds; None where none was measured")
    itl_p_ms: float | None = Field(description="the point's inter-token gap at slo_itl_percentile across all "
                                               "its requests' gaps, milliseconds; None where none")
    highest_within: bool = Field(description="this point is the cell's highest load of its kind within the SLO")
    probe: bool = Field(description="a rate the search for the highest rate within the SLO added "
                                    "(`settings.find_max_rate`), not one of `sweep_rates` (schema 2)")
    slo: str = Field(description="the SLO in words, objectives written `inf` left out")
    slo_ttft_s: float | None = Field(description="the most seconds to a request's first token; None: no "
                                                 "objective (`inf`)")
    slo_ttft_percentile: float = Field(description="the percentile ttft_p_s reports")
    slo_itl_ms: float | None = Field(description="the most milliseconds at slo_itl_percentile of a request's own "
                                                 "inter-token gaps; None: no objective")
    slo_itl_percentile: float = Field(description="the percentile of a request's gaps held to slo_itl_ms (and "
                                                  "that itl_p_ms reports)")
    slo_tpot_ms: float | None = Field(description="the most milliseconds per output token after the first; "
                                                  "None: no objective")
    slo_e2e_s: float | None = Field(description="the most seconds for a whole answer; None: no objective")
    slo_attainment_target: float = Field(description="the share of a point's requests that must conform for "
                                                     "the point to be within the SLO (0.9: 90%)")


def record(load: CellLoad, point: LoadPoint) -> LoadRecord:
    """The row of one point: the ``LoadPoint``'s fields, its goodput's flattened (``GOODPUT_COLUMNS``)."""
    fields = point.model_dump(exclude={"goodput"})
    fields.update({column: getattr(point.goodput, name) for name, column in GOODPUT_COLUMNS.items()})
    closed, opened = load.highest
    slo = load.slo
    return LoadRecord(
        **fields, run=load.cell.run.name, cell=load.cell.label, model=load.cell.cell.model,
        kind="concurrency" if point.concurrency is not None else "rate", floor_cell=load.floor_cell,
        changes_words=point.changed_words, highest_within=point is closed or point is opened,
        slo=slo_words(slo), slo_ttft_s=_bound(slo.ttft_s), slo_ttft_percentile=slo.ttft_percentile,
        slo_itl_ms=_bound(slo.itl_ms), slo_itl_percentile=slo.itl_percentile, slo_tpot_ms=_bound(slo.tpot_ms),
        slo_e2e_s=_bound(slo.e2e_s), slo_attainment_target=slo.attainment)


@dataclass
class UnderLoad:
    """The section "Accuracy under load": every cell with judged sweep points, in the report's order."""

    cells: list[CellLoad]

    @property
    def models(self) -> list[tuple[str, list[CellLoad]]]:
        """The cells grouped by model (one chart each), in order of first appearance."""
        groups: dict[str, list[CellLoad]] = {}
        for load in self.cells:
            groups.setdefault(load.cell.cell.model, []).append(load)
        return list(groups.items())

    @property
    def charts(self) -> list[tuple[str, str, list[CellLoad]]]:
        """Per model: its chart's name (``underload-<model>``, unique), the model and its cells."""
        found: list[tuple[str, str, list[CellLoad]]] = []
        for model, loads in self.models:
            name = "underload-" + (re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-") or "model")
            taken = {n for n, _, _ in found}
            found.append((name if name not in taken else f"{name}-{len(found)}", model, loads))
        return found

    @property
    def slos(self) -> list[tuple[str, str, list[str]]]:
        """Each SLO: its objectives in words, its attainment target (``90%``) and the runs held to it
        (the runs of one report may differ)."""
        found: dict[tuple[str, str], list[str]] = {}
        for load in self.cells:
            runs = found.setdefault((objective_words(load.slo), f"{100 * load.slo.attainment:g}%"), [])
            if load.cell.run.name not in runs:
                runs.append(load.cell.run.name)
        return [(objectives, target, runs) for (objectives, target), runs in found.items()]

    @property
    def records(self) -> list[LoadRecord]:
        return [record(load, p) for load in self.cells for p in load.points]


def under_load(runs: list[RunData]) -> UnderLoad | None:
    """The section's data; None where no cell has a judged sweep point (the section is left out)."""
    cells = []
    for run in runs:
        slo = None
        for cell in run.cells:
            if not any(p.tasks for p in cell.result.sweep):
                continue
            slo = slo or run_slo(run)
            found = cell_load(cell, slo)
            if found is not None:
                cells.append(found)
    return UnderLoad(cells=cells) if cells else None


def _type_name(annotation) -> str:
    text = str(annotation).replace("typing.", "")
    return text.replace("<class '", "").replace("'>", "").replace("NoneType", "None")


def schema_markdown() -> str:
    """The table's schema as Markdown: one row per field with its type and meaning."""
    lines = ["# The `load_points` table", "",
             "<!-- generated by `python -m runner.report.underload`: do not edit by hand -->", "",
             "`runner report` writes `load_points.csv` and `load_points.json` beside `results.csv`: one row per "
             "judged sweep point of each cell (a concurrency `c<N>` or a Poisson rate `r<R>`), the figures of "
             "the report's \"Accuracy under load\" section. A run whose sweep did not judge its answers has no "
             f"rows. Schema version **{SCHEMA_VERSION}**; every row carries it in `schema_version`. The JSON "
             "holds the same flat records as the CSV; in the CSV an empty field is None.", "",
             "| field | type | meaning |", "|---|---|---|"]
    for name, info in LoadRecord.model_fields.items():
        meaning = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{_type_name(info.annotation).replace('|', chr(92) + '|')}` | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_markdown())
