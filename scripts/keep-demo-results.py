#!/usr/bin/env python3
"""Keep a demo run's figures under bench/results/demo/, the source of the docs' demo tables.

    .venv/bin/python scripts/keep-demo-results.py runs/demo report/demo --wall-minutes 21.3

Copies the report's ``results.json`` and ``comparisons.json`` (what ``runner report`` wrote from the run),
and writes ``run.json``: when and where the run ran, how long it and each cell took, what the plan had
said for it on this host, and each swept cell's sweep points (``runner.measuring.underload``).
``--wall-minutes``: ``make demo``'s own duration, when it was timed (the run's manifest knows only the run).
Then ``scripts/render-results.py`` rewrites the pages' demo tables from these files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runner.matrix import Slo, load_matrix  # noqa: E402
from runner.measuring.noise import noise_floor  # noqa: E402
from runner.measuring.underload import highest_within, load_points  # noqa: E402
from runner.store import RunStore  # noqa: E402


def minutes(start, end) -> float | None:
    return round((end - start).total_seconds() / 60, 2) if start and end else None


def planned_minutes(matrix_path: Path, cores: int) -> float:
    """The plan's whole-run minutes for the matrix on a host of ``cores`` CPUs without GPUs."""
    from runner.planning.doctor import Host
    from runner.planning.plan import make_plan

    # the plan as it reads before any run (no runs_dir: the estimates' tables, not this run's timings)
    host = Host(gpu_note="no NVIDIA driver or GPU", ram_gib=8, free_disk_gib=50, cpu="the demo's host", cpu_count=cores)
    return round(make_plan(load_matrix(matrix_path), host=host).run.hours * 60, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run directory (runs/demo)")
    parser.add_argument("report", type=Path, help="its report directory (report/demo)")
    parser.add_argument("--wall-minutes", type=float, help="make demo's own duration, if timed")
    parser.add_argument("--command", default="make demo")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "demo")
    args = parser.parse_args()
    store = RunStore(args.run)
    manifest = store.read_manifest()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "comparisons.json"):
        shutil.copyfile(args.report / name, args.out / name)
    slo = Slo.from_json(manifest.matrix.get("slo") or {})
    cells, swept = [], []
    for result in store.cell_results():
        cells.append({"cell": result.cell.id, "status": result.status,
                      "minutes": minutes(result.started_at, result.finished_at)})
        if any(p.tasks for p in result.sweep):
            samples = store.latest_samples(result.cell)
            floor = noise_floor(result.cell.id, samples, manifest.matrix["settings"]["concurrency"])
            points = load_points(result, samples, floor, slo)
            closed, opened = highest_within(points)
            swept.append({"cell": result.cell.id, "points": [p.model_dump(mode="json") for p in points],
                          "highest_concurrency_within_slo": closed.load if closed else None,
                          "highest_rate_within_slo": opened.load if opened else None})
    fingerprint = manifest.fingerprint
    cores = fingerprint.cpu_count or 2
    record = {
        "command": args.command, "measured": manifest.started_at.isoformat(),
        "machine": f"{fingerprint.cpu or 'CPU'}, {cores} cores",
        "run_minutes": minutes(manifest.started_at, manifest.finished_at), "wall_minutes": args.wall_minutes,
        "planned_minutes": planned_minutes(REPO / "matrices" / "demo.toml", cores),
        "cells": cells, "slo": slo.model_dump(mode="json"), "swept": swept,
    }
    (args.out / "run.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"kept {args.run} in {args.out}: {len(cells)} cells, {len(swept)} swept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
