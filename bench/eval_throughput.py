"""Evaluation throughput over the starter set with the reference solutions.

Prints tasks per second with 1 worker and with N workers, the mean seconds per Python task
and per Java task, and the Java path side by side: javac then java (two JVMs) against one JVM
that compiles in memory and runs the JUnit launcher (``--java-fast``), with their verdicts compared.

    .venv/bin/python bench/eval_throughput.py [--workers N] [--benchmark starter] [--solution reference]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from runner.benchmarks import load_benchmark
from runner.evaluation import Evaluator, check_solution
from runner.records import Language


def measure(bench, solution: str, workers: int, java_fast: bool, language: str | None = None):
    evaluator = Evaluator(bench.programs, junit_console=bench.junit_jar, java_fast=java_fast, scale_time=False)
    tasks = bench.select(language=language, available_only=True)
    started = time.monotonic()
    checks = check_solution(evaluator, tasks, solution, workers=workers)
    return checks, time.monotonic() - started


def mean_seconds(checks, language: Language) -> float:
    values = [c.seconds for c in checks if c.language is language]
    return statistics.fmean(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="starter")
    parser.add_argument("--solution", default="reference", choices=["reference", "empty"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--java-paths-only", action="store_true", help="Only the two Java paths side by side.")
    args = parser.parse_args()
    bench = load_benchmark(args.benchmark)
    load = os.getloadavg()[0]
    print(f"benchmark {args.benchmark}, {len(bench.available())} tasks, {args.solution} solution, "
          f"{os.cpu_count()} cores, load average {load:.1f} at start")

    if not args.java_paths_only:
        for workers in sorted({1, args.workers}):
            checks, seconds = measure(bench, args.solution, workers, java_fast=False)
            passed = sum(c.outcome.value == "pass" for c in checks)
            print(f"workers={workers}: {len(checks)} tasks in {seconds:.1f} s = {len(checks) / seconds:.2f} tasks/s "
                  f"({passed} pass); mean per task: python {mean_seconds(checks, Language.python):.2f} s, "
                  f"java {mean_seconds(checks, Language.java):.2f} s")

    # Verdicts must agree on failures too, so both oracle solutions go through both paths.
    for solution in ("reference", "empty"):
        slow, slow_s = measure(bench, solution, args.workers, java_fast=False, language="java")
        fast, fast_s = measure(bench, solution, args.workers, java_fast=True, language="java")
        same = [a.outcome for a in slow] == [b.outcome for b in fast]
        print(f"java {solution}, workers={args.workers}: javac+java {len(slow) / slow_s:.2f} tasks/s "
              f"(mean {mean_seconds(slow, Language.java):.2f} s/task), one JVM {len(fast) / fast_s:.2f} tasks/s "
              f"(mean {mean_seconds(fast, Language.java):.2f} s/task); verdicts identical: {same}")

if __name__ == "__main__":
    main()
