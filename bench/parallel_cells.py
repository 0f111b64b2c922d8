"""Print the wall time of the paper-shaped matrix one cell at a time against its cells at once.

``matrices/paper-shaped.toml``: a baseline on 4 logical GPUs and three technique cells on 2, 1 and 1
(Gemma 3 270M on llama.cpp, one thread each) on one node of 8 GPUs: in process, first with
``parallel_cells = 1``, then with the cells at once on GPU ids 0-7 (logical here: they only restrict
CUDA_VISIBLE_DEVICES). Each run starts with an empty verdict cache (its own runner home), so the
judged and reused counts are each run's own. On a host with few cores the cells share the cores:
the gain here is bounded by them, not by the GPUs. Last line: key=value figures.

    .venv/bin/python bench/parallel_cells.py [--limit N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from runner.evaluation.verdicts import judging_counts
from runner.matrix import load_matrix
from runner.measuring.activity import overlapping_timed, read_activity
from runner.paths import cache_dir, matrices_dir
from runner.running.run import RunOptions, reproduce
from runner.store import RunStore


def one_run(folder: Path, label: str, limit: int | None, parallel: int | None) -> dict:
    os.environ["RUNNER_HOME"] = str(folder / f"home-{label}")  # a verdict cache of its own
    matrix = load_matrix(matrices_dir() / "paper-shaped.toml")
    started = time.monotonic()
    outcome = reproduce(matrix, RunOptions(runs_dir=folder / "runs", name=label, limit=limit,
                                           parallel_cells=parallel, gpus=list(range(8))))
    wall = time.monotonic() - started
    failed = [r.cell.id for r in outcome.results if r.status != "done"]
    if failed:
        raise SystemExit(f"{label}: cells failed: {', '.join(failed)}")
    store = RunStore(outcome.run_dir)
    samples = [s for c in store.read_manifest().cells for s in store.latest_samples(c)]
    counts = judging_counts(samples)
    isolation = overlapping_timed(read_activity(outcome.run_dir), samples)
    return {"wall_s": wall, "judged": counts.judged, "reused": counts.reused,
            "timed": isolation.timed_samples, "overlaps": len(isolation.overlaps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="tasks per cell (default: the matrix's 4)")
    args = parser.parse_args()
    # the built llama-server and the model stay where they are; each run gets its own home
    os.environ.setdefault("RUNNER_CACHE", str(cache_dir()))
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        folder = Path(tmp)
        sequential = one_run(folder, "one-at-a-time", args.limit, 1)
        parallel = one_run(folder, "at-once", args.limit, None)
    for label, figures in (("one at a time", sequential), ("at once (8 GPU ids)", parallel)):
        print(f"{label:<20} {figures['wall_s']:6.0f} s   answers judged {figures['judged']:3d}, verdicts reused "
              f"{figures['reused']:3d}   timed samples {figures['timed']}, overlapping other generation "
              f"{figures['overlaps']}")
    print(f"sequential_s={sequential['wall_s']:.0f} parallel_s={parallel['wall_s']:.0f} "
          f"speedup={sequential['wall_s'] / parallel['wall_s']:.2f} judged={parallel['judged']} "
          f"reused={parallel['reused']} overlaps={parallel['overlaps']} cores={os.cpu_count()}")


if __name__ == "__main__":
    main()
