"""The report's "Accuracy under load" section and its table (load_points.csv / .json), from runs built
the way ``runner reproduce`` writes them: the H100 run of ``two_machine_runs`` judged its sweep (three
concurrencies and two Poisson rates, an SLO with an e2e bound, the bf16 baseline's noise floor); the
A100 run's sweep only timed its answers, like a run from before judged sweeps."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.matrix.spec import Slo
from runner.measuring.goodput import Goodput
from runner.measuring.underload import LoadPoint, highest_within, load_points
from runner.report import data, render
from runner.report.underload import (GOODPUT_COLUMNS, GOODPUT_SHARED, SCHEMA_VERSION, CellLoad, LoadRecord, floor_of,
                                     run_slo, schema_markdown, slo_words)
from runner.store import Manifest
from tests.report.conftest import A100, BASELINE, FP8, SPEC, SWEEP_ERROR, SWEEP_SLO, write_run

ROOT = Path(__file__).resolve().parents[2]


def _cells(runs: list[Path]) -> dict[tuple[str, str], data.CellData]:
    return {(c.run.name, c.cell.id): c for r in data.load_runs(runs) for c in r.cells}


def _points(cell: data.CellData, floor: data.CellData | None) -> list[LoadPoint]:
    """The figures as runner.measuring computes them, independently of the report's wiring."""
    return load_points(cell.result, cell.samples, floor.noise if floor else None, Slo.from_json(SWEEP_SLO))


def test_the_section_shows_every_judged_point_with_its_changes_goodput_and_slo(two_machine_runs, tmp_path):
    paths = render(two_machine_runs, tmp_path / "report")
    html, md = paths.html.read_text(), paths.markdown.read_text()
    assert 'id="underload"' in html and "## Accuracy under load" in md
    assert 'href="#underload"' in html
    # one chart per model, drawn inline and written for the Markdown
    assert 'id="plot-underload-llama3-70b"' in html
    assert "![Accuracy under load: llama3-70b](plots/underload-llama3-70b.png)" in md
    assert (paths.html.parent / "plots" / "underload-llama3-70b.png").stat().st_size > 10_000
    # the SLO as the run's manifest keeps it, its `inf` objectives (ITL, TPOT) left out
    assert "each request meets TTFT ≤ 30 s · e2e ≤ 8 s; a point is within the SLO when at least 90%" in html
    assert "each request meets TTFT ≤ 30 s · e2e ≤ 8 s; a point is within the SLO when at least 90%" in md
    section = html[html.index('id="underload"'):html.index("</section>", html.index('id="underload"'))]
    assert "ITL p99 ≤" not in section and "TPOT ≤" not in section

    cells = _cells(two_machine_runs)
    base = cells[("paper-h100", BASELINE.id)]
    points = {p.load: p for p in _points(base, base)}
    assert sorted(points) == ["c1", "c16", "c4", "r0.5", "r2"]
    # c16 changed 9 of its 15 answers (one request failed) against a floor of 1 of 12: an effect, and said so
    c16 = points["c16"]
    assert (c16.answers_changed, c16.paired, c16.verdicts_changed) == (9, 15, 3)
    assert c16.floor == "above the noise floor" and c16.floor_p < 0.05
    assert "answers changed: 9 of 15 · verdicts changed: 3 of 15 · above the noise floor (Fisher p=" in section
    # c4 changed one answer: counted, not called an effect
    assert points["c4"].floor == "within the noise floor"
    assert "answers changed: 1 of 16 · verdicts changed: 0 of 16 · within the noise floor" in section
    # the e2e bound breaks at c16 (requests 2.4× slower than at c1): below the attainment target
    assert not c16.goodput.within_slo and c16.goodput.errors == 1
    assert points["c1"].goodput.within_slo
    closed, opened = highest_within(list(points.values()))
    expected = f"{closed.load} / {opened.offered_rps:g} req/s"
    assert f"highest load within the SLO (attainment ≥ 90%): <b>{expected}</b>" in section
    assert f"highest load within the SLO (attainment ≥ 90%): **{expected}**" in md
    # the figures of a rate point: achieved beside offered, pass rate with its interval, goodputs
    r2 = points["r2"]
    assert f"{r2.achieved_rps:,.2f}<br><span class=\"small\">offered 2</span>" in section
    assert f"[{100 * r2.pass_low:.1f}, {100 * r2.pass_high:.1f}] · n={r2.judged}" in section
    assert f"<b>{r2.goodput.pass_goodput_rps:,.2f}</b>" in section
    # only cells that judged a sweep: not the A100 run's (throughput-only), not the failed llama.cpp cell
    assert section.count("highest load within the SLO") == 3
    assert "@ 2× A100" not in section and "llamacpp" not in section
    # its failed request is counted against goodput, and listed with the run's request errors
    assert "ms<br>1 request error</span>" in section
    errors = html[html.index('<table id="error-table">'):]
    assert errors[:errors.index("</table>")].count(SWEEP_ERROR) == 3


def test_changes_are_judged_by_the_cells_own_floor_else_its_baselines(two_machine_runs, tmp_path):
    cells = _cells(two_machine_runs)
    base, fp8, spec = (cells[("paper-h100", c.id)] for c in (BASELINE, FP8, SPEC))
    assert base.noise is not None and fp8.noise is None and spec.noise is None
    assert floor_of(base) is base
    assert floor_of(fp8) is base  # its full-precision cell
    assert floor_of(spec) is base  # its technique baseline
    assert floor_of(cells[("paper-a100", BASELINE.id)]) is None  # no cell of that run repeated tasks
    records = json.loads(render(two_machine_runs, tmp_path / "report").load_points_json.read_text())
    assert {r["cell_id"]: r["floor_cell"] for r in records} == {c.id: base.label for c in (BASELINE, FP8, SPEC)}
    # FP8 at c16: 2 of 15 changed against the baseline's 1 of 12: within its floor
    fp8_c16 = next(r for r in records if r["cell_id"] == FP8.id and r["load"] == "c16")
    assert (fp8_c16["answers_changed"], fp8_c16["paired"], fp8_c16["floor"]) == (2, 15, "within the noise floor")


def test_load_points_csv_and_json_rows_are_the_load_points(two_machine_runs, tmp_path):
    paths = render(two_machine_runs, tmp_path / "report")
    records = json.loads(paths.load_points_json.read_text())
    with open(paths.load_points_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(LoadRecord.model_fields) == list(records[0])
    assert len(rows) == len(records) == 3 * 5  # three cells judged five points each
    cells = _cells(two_machine_runs)
    base = cells[("paper-h100", BASELINE.id)]
    expected = [(cells[("paper-h100", c.id)], p) for c in (BASELINE, FP8, SPEC)
                for p in _points(cells[("paper-h100", c.id)], base)]
    for (cell, point), record, row in zip(expected, records, rows):
        assert record["schema_version"] == row["schema_version"] == SCHEMA_VERSION
        assert (record["run"], record["cell"], record["cell_id"]) == ("paper-h100", cell.label, cell.cell.id)
        assert record["kind"] == ("concurrency" if point.concurrency is not None else "rate")
        figures = {**point.model_dump(exclude={"goodput"}),
                   **{column: getattr(point.goodput, name) for name, column in GOODPUT_COLUMNS.items()}}
        for name in GOODPUT_SHARED:
            assert getattr(point.goodput, name) == getattr(point, name)
        for name, value in figures.items():
            assert record[name] == value, (point.load, name)
            # the CSV: the same value, written as text (empty: None)
            assert row[name] == ("" if value is None else str(value)), (point.load, name)
        assert record["changes_words"] == point.changed_words
        assert record["slo_e2e_s"] == 8.0 and record["slo_itl_ms"] is None and record["slo_tpot_ms"] is None
        assert record["slo"] == slo_words(Slo.from_json(SWEEP_SLO))
    # the highest point within the SLO, per cell and kind of load, is flagged once per kind at most
    for cell_id in {r["cell_id"] for r in records}:
        for kind in ("concurrency", "rate"):
            flagged = [r for r in records if r["cell_id"] == cell_id and r["kind"] == kind and r["highest_within"]]
            assert len(flagged) <= 1 and all(r["within_slo"] for r in flagged)


def test_every_field_of_a_load_point_and_its_goodput_has_a_column():
    """Fails when runner.measuring adds a figure the table does not carry."""
    columns = set(LoadRecord.model_fields)
    assert set(LoadPoint.model_fields) - {"goodput"} <= columns
    assert set(Goodput.model_fields) == set(GOODPUT_COLUMNS) | set(GOODPUT_SHARED)
    assert set(GOODPUT_COLUMNS.values()) <= columns


def test_the_load_points_schema_doc_is_generated_and_lists_every_field():
    doc = ROOT / "docs" / "reference" / "load_points.md"
    text = doc.read_text()
    assert text == schema_markdown(), "regenerate: python -m runner.report.underload > " + str(doc)
    for name, info in LoadRecord.model_fields.items():
        assert f"| `{name}` |" in text and info.description, name
    assert "reference/load_points.md" in (ROOT / "mkdocs.yml").read_text()


def test_no_section_and_empty_tables_without_a_judged_sweep(tmp_path):
    store = write_run(tmp_path / "runs", "old", A100, [BASELINE, FP8], speed=0.6, seed=2)
    paths = render([store.root], tmp_path / "report")
    html, md = paths.html.read_text(), paths.markdown.read_text()
    assert 'id="underload"' not in html and 'href="#underload"' not in html and "Accuracy under load" not in md
    assert "load_points" not in md and not list((paths.html.parent / "plots").glob("underload-*"))
    assert paths.load_points_csv.read_text().splitlines() == [",".join(LoadRecord.model_fields)]
    assert json.loads(paths.load_points_json.read_text()) == []
    # its throughput-only sweep still has its chart and table
    assert 'id="plot-throughput"' in html and "req/s @16" in html


def test_rate_points_leave_the_throughput_chart_and_table_to_the_concurrencies(two_machine_runs, tmp_path):
    paths = render(two_machine_runs, tmp_path / "report")
    html = paths.html.read_text()
    assert 'id="plot-throughput"' in html
    assert [f"req/s @{c}" in html for c in (1, 4, 16)] == [True] * 3
    assert "@0.5" not in html and "@None" not in html and "@2<" not in html
    with open(paths.csv, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    sweep_columns = [c for c in header if c.startswith(("requests_per_s_", "output_tokens_per_s_"))]
    assert sweep_columns == [f"{what}_c{c}" for c in (1, 4, 16) for what in ("requests_per_s", "output_tokens_per_s")]


def test_the_slo_comes_from_the_manifest_and_a_broken_one_is_one_line(tmp_path):
    store = write_run(tmp_path / "runs", "judged", A100, [BASELINE], speed=1.0, seed=3, judged=True)
    run = data.load_run(store.root)
    slo = run_slo(run)
    assert slo.e2e_s == 8.0 and math.isinf(slo.itl_ms)
    # a run from before [slo]: the defaults, inference-perf's code-generation SLO
    run.manifest.matrix.pop("slo")
    assert run_slo(run) == Slo() and slo_words(Slo()) == "TTFT ≤ 30 s · ITL p99 ≤ 100 ms · attainment ≥ 90%"
    run.manifest.matrix["slo"] = {**SWEEP_SLO, "attainment": 90}
    with pytest.raises(UserError) as caught:
        run_slo(run)
    message = str(caught.value)
    assert "manifest.json" in message and "matrix.slo.attainment = 90" in message and "\n" not in message


def test_a_run_whose_sweep_judged_answers_renders_with_the_default_slo(tmp_path):
    store = write_run(tmp_path / "runs", "defaults", A100, [BASELINE], speed=1.0, seed=4, judged=True)
    manifest = store.read_manifest()
    manifest.matrix.pop("slo")
    store.write_manifest(Manifest.model_validate(manifest.model_dump()))
    paths = render([store.root], tmp_path / "report")
    html = paths.html.read_text()
    assert "each request meets TTFT ≤ 30 s · ITL p99 ≤ 100 ms; a point is within the SLO when at least 90%" in html
    assert len(json.loads(paths.load_points_json.read_text())) == 5


def test_the_highest_load_within_the_slo_is_said_per_kind_or_none_measured(two_machine_runs):
    base = _cells(two_machine_runs)[("paper-h100", BASELINE.id)]
    points = _points(base, base)

    def held(within: set[str]) -> CellLoad:
        moved = [p.model_copy(update={"goodput": p.goodput.model_copy(update={"within_slo": p.load in within})})
                 for p in points]
        return CellLoad(cell=base, points=moved, slo=Slo.from_json(SWEEP_SLO), floor_cell=base.label)

    assert held({"c1", "c4", "r0.5", "r2"}).highest_words == "c4 / 2 req/s"
    assert held({"c1", "c4"}).highest_words == "c4 / none of the rates"
    assert held({"r0.5"}).highest_words == "none of the concurrencies / 0.5 req/s"
    assert held(set()).highest_words == "none measured"
    only_rates = CellLoad(cell=base, points=[p for p in points if p.offered_rps is not None and p.goodput.within_slo],
                          slo=Slo(), floor_cell=None)
    assert only_rates.highest_words == "0.5 req/s"
    assert only_rates.floor_words.startswith("no noise floor measured")


def test_a_rate_the_search_added_is_marked_in_the_table_and_the_files(two_machine_runs, tmp_path):
    from runner.store import RunStore

    store = RunStore(two_machine_runs[0])
    result = store.read_cell(BASELINE)
    result.sweep[-1] = result.sweep[-1].model_copy(update={"probe": True})  # r2, as find_max_rate adds one
    store.write_cell(result)
    paths = render(two_machine_runs, tmp_path / "report")
    records = json.loads(paths.load_points_json.read_text())
    probes = [(r["cell_id"], r["load"]) for r in records if r["probe"]]
    assert probes == [(BASELINE.id, "r2")]
    html = paths.html.read_text()
    assert 'title="added by the rate search (settings.find_max_rate)">search</span>' in html
    assert "| r2 (search) |" in (tmp_path / "report" / "README.md").read_text()
