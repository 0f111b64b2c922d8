"""Print the wall time of one small matrix run in process and on a local two-worker Ray cluster.

The matrix: four CPU llama.cpp cells of Gemma 3 270M (one thread each) asking for 1, 2, 1 and 2
logical GPUs, on the starter set's Python tasks. The cluster: a head without GPUs and two worker
nodes of 2 logical GPUs each (``ray.cluster_utils.Cluster``, all on this machine), so up to three
cells run at once and evaluation runs as Ray CPU tasks beside them. On a machine with few cores the
cluster's gain is bounded by the cores, not the GPUs; the figures say how much the executor itself
costs and gains here. Usage: ``.venv/bin/python bench/ray_matrix.py [--limit N] [--max-tokens N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from runner.matrix import load_matrix
from runner.paths import matrices_dir
from runner.running.run import RunOptions, reproduce

CELLS = [("one-a", 1, 'parallel = "1"'), ("two-a", 2, 'parallel = "1", kv_cache = "q8_0"'),
         ("one-b", 1, 'parallel = "1", spec = "ngram"'), ("two-b", 2, 'parallel = "1"')]


def matrix_text(gguf: Path, limit: int, max_tokens: int) -> str:
    groups = "".join(f"""
[[cells]]
model = "gemma3-270m"
runtime = "llamacpp"
quantization = "q4_k_m"
label = "{label}"
gpus = {gpus}
techniques = {{ {techniques} }}
""" for label, gpus, techniques in CELLS)
    return f"""
name = "bench-ray"
benchmark = "starter"
gpu_type = "logical"
[tasks]
languages = ["python"]
limit = {limit}
[settings]
max_tokens = {max_tokens}
concurrency = 1
latency_tasks = 2
warmup_requests = 0
sweep = []
sweep_requests = 0
threads = 1
[models.gemma3-270m]
name = "Gemma 3 270M"
chat = false
prompt_styles = ["prefix"]
[models.gemma3-270m.quantizations.q4_k_m]
kind = "path"
path = "{gguf}"
{groups}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=4, help="tasks per cell")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--record", type=Path, help="also write the figures here as JSON (bench/results/ray.json)")
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from runner.serving.models import prepare

    demo = load_matrix(matrices_dir() / "demo.toml")
    gguf = prepare(demo, next(c for c in demo.cells if c.runtime == "llamacpp")).files.path
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "bench-ray.toml"
        path.write_text(matrix_text(gguf, args.limit, args.max_tokens), encoding="utf-8")
        matrix = load_matrix(path)

        started = time.monotonic()
        local = reproduce(matrix, RunOptions(runs_dir=folder / "local"))
        local_s = time.monotonic() - started

        started = time.monotonic()
        cluster = Cluster(initialize_head=True,
                          head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1, num_gpus=2, resources={"gpu:logical": 2})
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        up_s = time.monotonic() - started
        try:
            started = time.monotonic()
            on_ray = reproduce(matrix, RunOptions(runs_dir=folder / "ray", executor="ray", address="auto"))
            ray_s = time.monotonic() - started
        finally:
            ray.shutdown()
            cluster.shutdown()

    statuses = {r.status for r in local.results} | {r.status for r in on_ray.results}
    print(f"matrix: {len(matrix.cells)} cells (GPUs 1, 2, 1, 2), {args.limit} tasks each, max_tokens "
          f"{args.max_tokens}, one llama.cpp thread per server; statuses: {', '.join(sorted(statuses))}")
    print(f"in process (one cell at a time):          {local_s:7.1f} s")
    print(f"Ray, head + two 2-GPU workers (run only):  {ray_s:7.1f} s   (cluster start {up_s:.1f} s more)")
    print(f"ratio in-process / Ray:                    {local_s / ray_s:7.2f}")
    print(f"CPU cores on this machine: {os.cpu_count()} (shared: timings inflated by other load)")
    if args.record:
        import record  # bench/record.py: a script's own folder is on sys.path

        record.write(args.record, {"cells": len(matrix.cells), "tasks": args.limit, "max_tokens": args.max_tokens,
                                   "statuses": sorted(statuses), "in_process_s": round(local_s, 1),
                                   "ray_s": round(ray_s, 1), "cluster_start_s": round(up_s, 1)})


if __name__ == "__main__":
    main()
