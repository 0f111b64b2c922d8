"""The report: the latency–accuracy trade-off of every cell, with its uncertainty and provenance.

``render(run_dirs, out_dir)`` reads run directories (``runs/<name>``) and writes::

    out_dir/index.html     one self-contained page (inline CSS and SVG, no network)
    out_dir/README.md      the same tables in Markdown, charts as out_dir/plots/*.png
    out_dir/results.csv    one row per cell × language × mode with every figure
    out_dir/results.json   the same rows as JSON records
    out_dir/comparisons.csv  one row per cell against its baseline: each verdict with its test
    out_dir/comparisons.json the same rows as JSON records (schema: runner.report.comparison_table)
    out_dir/load_points.csv  one row per judged sweep point: pass rate, changes, goodput
    out_dir/load_points.json the same rows as JSON records (schema: runner.report.underload)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.report import data, plots, tables, writers


@dataclass(frozen=True)
class ReportPaths:
    """The files one ``render`` wrote."""

    html: Path
    markdown: Path
    csv: Path
    json: Path
    comparisons_csv: Path
    comparisons_json: Path
    load_points_csv: Path
    load_points_json: Path
    plots: tuple[Path, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        """The page, the Markdown and the six tables, in the order the CLI lists them."""
        return (self.html, self.markdown, self.csv, self.json, self.comparisons_csv, self.comparisons_json,
                self.load_points_csv, self.load_points_json)


def default_out_dir(run_dirs: list[Path]) -> Path:
    """``report/<run>`` for one run, ``report/<first>-and-<n>-more`` for several: reports never overwrite."""
    names = [Path(p).resolve().name for p in run_dirs]
    return Path("report") / (names[0] if len(names) == 1 else f"{names[0]}-and-{len(names) - 1}-more")


def render(run_dirs: list[Path], out_dir: Path) -> ReportPaths:
    """Render the report of ``run_dirs`` into ``out_dir`` (created if needed)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: a file, not a folder; give -o a folder for the report (new or existing)")
    notes: list[str] = []
    runs = data.load_runs([Path(p) for p in run_dirs], notes)
    catalogue = data.load_tasks(runs)
    built = tables.build(runs, catalogue, notes)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = plots.render_all(built, out_dir / "plots")
    return ReportPaths(
        html=writers.write_html(built, drawn, out_dir / "index.html"),
        markdown=writers.write_markdown(built, drawn, out_dir / "README.md"),
        csv=writers.write_csv(built, out_dir / "results.csv"),
        json=writers.write_json(built, out_dir / "results.json"),
        comparisons_csv=writers.write_comparisons_csv(built, out_dir / "comparisons.csv"),
        comparisons_json=writers.write_comparisons_json(built, out_dir / "comparisons.json"),
        load_points_csv=writers.write_load_points_csv(built, out_dir / "load_points.csv"),
        load_points_json=writers.write_load_points_json(built, out_dir / "load_points.json"),
        plots=tuple(p.png for p in drawn),
    )


__all__ = ["ReportPaths", "render"]
