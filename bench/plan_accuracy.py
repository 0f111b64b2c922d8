"""How far the plan's estimates are from a run: planned against measured minutes, per cell and per phase.

Usage::

    .venv/bin/python bench/plan_accuracy.py demo                      # read runs/demo, made already
    .venv/bin/python bench/plan_accuracy.py demo --run                # run it first (runner reproduce)
    .venv/bin/python bench/plan_accuracy.py matrices/demo.toml --runs-dir /root/plan-home/runs --name demo

The plan is the one ``runner reproduce MATRIX --plan`` prints, made here from the table alone
(``--earlier-runs DIR`` lets it reuse the runs in DIR, as ``reproduce --runs-dir DIR --plan`` does;
never the run being measured, which would compare it with itself). Measured, from the run folder:

- generation: per cell, its record's ``started_at`` to ``generation_finished_at`` (model files'
  check, server start, every request), summed over the cells;
- evaluation: the seconds every verdict took (``Sample.eval_seconds``) over one worker per core, as
  the plan counts it (its judging runs beside generation);
- whole run: the manifest's ``started_at`` to ``finished_at`` (a resumed run: the last sitting's
  cells only are comparable, so the cells' own times are summed instead and it says so).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from runner.matrix import load_matrix
from runner.paths import matrices_dir
from runner.planning.plan import make_plan
from runner.records import Outcome
from runner.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("matrix", help="a matrix file or a shipped name (demo)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--name", default=None, help="the run's name (default: the matrix's)")
    parser.add_argument("--run", action="store_true", help="run the matrix first (runner reproduce), then compare")
    parser.add_argument("--earlier-runs", type=Path, default=None, help="runs the plan may reuse (default: none)")
    args = parser.parse_args()

    path = Path(args.matrix)
    if not path.exists() and (matrices_dir() / f"{args.matrix}.toml").is_file():
        path = matrices_dir() / f"{args.matrix}.toml"
    matrix = load_matrix(path)
    name = args.name or matrix.name
    plan = make_plan(matrix, name=name, runs_dir=args.earlier_runs)
    print(f"planned: {plan.run.hours * 60:.1f} min ({plan.generation.basis})")
    if args.run:
        command = [sys.executable, "-m", "runner.cli", "reproduce", str(path), "--name", name,
                   "--runs-dir", str(args.runs_dir)]
        print("running:", " ".join(command), flush=True)
        subprocess.run(command, check=False)
    store = RunStore(args.runs_dir / name)
    if not store.exists():
        sys.exit(f"{store.root}: no run there (give --run to make it, or --runs-dir/--name to find it)")
    manifest = store.read_manifest()
    workers = os.cpu_count() or 1  # the plan judges on one worker per core here

    rows, gen_total, eval_total, resumed = [], 0.0, 0.0, False
    compared = []  # the planned cells the run finished: the phases compare these alone
    planned = {c.id: c for c in plan.cells}
    for each in manifest.cells:
        if not (store.root / "cells" / each.slug / "cell.json").is_file():  # (reading it would make its folder)
            rows.append((each.id, None, None, "not started"))
            continue
        result = store.read_cell(each)
        cell = planned.get(result.cell.id)
        end = result.generation_finished_at or result.finished_at
        if cell is None or result.status != "done" or result.started_at is None or end is None:
            rows.append((result.cell.id, None, None, f"not compared: {result.status}"))
            continue
        resumed |= len(result.placements) > 1
        generation = (end - result.started_at).total_seconds()
        judged = sum(s.eval_seconds or 0.0 for s in store.latest_samples(result.cell)
                     if s.phase == "accuracy" and s.outcome is not Outcome.error)
        gen_total += generation
        compared.append(cell)
        eval_total += judged
        rows.append((result.cell.id, (cell.generation_hours or 0) * 60, generation / 60,
                     "resumed: several sittings" if len(result.placements) > 1 else ""))

    width = max(len(r[0]) for r in rows) if rows else 4
    print(f"\n{'cell':<{width}}  planned  measured  ratio")
    for cell_id, plan_min, measured_min, note in rows:
        if plan_min is None:
            print(f"{cell_id:<{width}}  {note}")
            continue
        print(f"{cell_id:<{width}}  {plan_min:7.2f}  {measured_min:8.2f}  {_ratio(measured_min, plan_min)}  {note}")

    if manifest.finished_at is not None and not resumed:
        whole, how = (manifest.finished_at - manifest.started_at).total_seconds() / 60, "the manifest's start to end"
    else:
        whole, how = gen_total / 60, "the cells' own times summed (the run was resumed or is unfinished)"
    print(f"\n{'phase':<12}  planned  measured  ratio")
    gen_h = sum(c.generation_hours or 0 for c in compared)
    eval_h = sum(c.evaluation_hours or 0 for c in compared)
    run_h = sum(max(c.generation_hours or 0, c.evaluation_hours or 0) for c in compared)
    for label, plan_h, measured_min in (("generation", gen_h, gen_total / 60),
                                        ("evaluation", eval_h, eval_total / workers / 60),
                                        ("whole run", run_h, whole)):
        plan_min = plan_h * 60
        print(f"{label:<12}  {plan_min:7.2f}  {measured_min:8.2f}  {_ratio(measured_min, plan_min)}")
    left = len(plan.cells) - len(compared)
    print(f"\n{len(compared)} of {len(plan.cells)} cells compared" + (f" ({left} not finished)" if left else "")
          + f"; whole run measured as {how}; evaluation: the verdicts' seconds over {workers} workers; "
          f"ratio = measured / planned; run {store.root} on {manifest.fingerprint.cpu or 'unknown CPU'} "
          f"({manifest.fingerprint.cpu_count} cores)")


def _ratio(measured: float, planned: float) -> str:
    return f"{measured / planned:5.2f}" if planned else "    -"


if __name__ == "__main__":
    main()
