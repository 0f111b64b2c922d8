"""One writer per format: the self-contained HTML page, the Markdown README, and the CSV and JSON tables
(results, comparisons, load_points)."""

from __future__ import annotations

import csv
import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from runner import __version__
from runner.errors import cap
from runner.paths import templates_dir
from runner.report.comparison_table import ComparisonRecord
from runner.report.plots import Plot
from runner.report.tables import Tables
from runner.report.underload import LoadRecord


def pct(rate: float | None, digits: int = 1) -> str:
    """A fraction as a percentage without the sign: 0.544 -> ``54.4``; ``—`` when unknown."""
    return "—" if rate is None or (isinstance(rate, float) and math.isnan(rate)) else f"{100 * rate:.{digits}f}"


def secs(value: float | None) -> str:
    """Seconds in a readable unit: ``850 ms``, ``2.41 s``."""
    if value is None:
        return "—"
    if value < 1:
        return f"{1000 * value:.0f} ms" if value >= 0.01 else f"{1000 * value:.1f} ms"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def pvalue(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\|`[]"})


def md(value: Any) -> str:
    """A Markdown table cell: one line; pipes, backticks and link brackets escaped (HTML is escaped
    for every expression of the Markdown template, see ``_md_finalize``)."""
    text = "" if value is None else str(value)
    return text.translate(_MD_SPECIAL).replace("\r", " ").replace("\n", " ").strip() or " "


def _md_finalize(value: Any) -> Any:
    # Markdown renders inline HTML: labels, reasons, host names and error texts come from run
    # directories that may have been made elsewhere, so no text reaches the page as markup.
    return html.escape(value, quote=False) if isinstance(value, str) else value


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir() / "report"), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, finalize=None if autoescape else _md_finalize)
    env.filters.update(pct=pct, secs=secs, num=num, pvalue=pvalue, md=md, cap=cap)
    return env


def _context(tables: Tables, plots: list[Plot]) -> dict[str, Any]:
    return {"t": tables, "plots": {p.name: p for p in plots}, "plot_list": plots, "version": __version__,
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def write_html(tables: Tables, plots: list[Plot], path: Path) -> Path:
    """The self-contained page: inline CSS and SVG, no script, no external resource."""
    path.write_text(_environment(True).get_template("index.html.j2").render(_context(tables, plots)), encoding="utf-8")
    return path


def write_markdown(tables: Tables, plots: list[Plot], path: Path) -> Path:
    """README.md: the same tables in Markdown; charts as PNG files beside it."""
    context = _context(tables, plots)
    context["png"] = {p.name: p.png.relative_to(path.parent).as_posix() for p in plots}
    context["columns"] = list(tables.results[0]) if tables.results else []
    path.write_text(_environment(False).get_template("README.md.j2").render(context), encoding="utf-8")
    return path


def write_csv(tables: Tables, path: Path) -> Path:
    """results.csv: one row per cell × language × mode, every figure a column (empty: not measured)."""
    columns = list(tables.results[0]) if tables.results else []
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in tables.results:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def write_json(tables: Tables, path: Path) -> Path:
    """results.json: the same rows as results.csv, as a list of records (``pandas.read_json``)."""
    path.write_text(json.dumps(tables.results, indent=1, allow_nan=False, default=str), encoding="utf-8")
    return path


def write_comparisons_csv(tables: Tables, path: Path) -> Path:
    """comparisons.csv: one row per cell against its baseline, each verdict with its test (empty: None)."""
    columns = list(ComparisonRecord.model_fields)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in tables.comparisons:
            writer.writerow({k: "" if v is None else v for k, v in row.model_dump().items()})
    return path


def write_comparisons_json(tables: Tables, path: Path) -> Path:
    """comparisons.json: the same rows as comparisons.csv, as a list of records."""
    path.write_text(json.dumps([r.model_dump() for r in tables.comparisons], indent=1, allow_nan=False),
                    encoding="utf-8")
    return path


def _load_records(tables: Tables) -> list[LoadRecord]:
    return tables.underload.records if tables.underload is not None else []


def write_load_points_csv(tables: Tables, path: Path) -> Path:
    """load_points.csv: one row per judged sweep point of each cell, goodput flattened (empty: None);
    a header alone where no sweep judged its answers."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(LoadRecord.model_fields))
        writer.writeheader()
        for row in _load_records(tables):
            writer.writerow({k: "" if v is None else v for k, v in row.model_dump().items()})
    return path


def write_load_points_json(tables: Tables, path: Path) -> Path:
    """load_points.json: the same rows as load_points.csv, as a list of records."""
    path.write_text(json.dumps([r.model_dump() for r in _load_records(tables)], indent=1, allow_nan=False),
                    encoding="utf-8")
    return path
