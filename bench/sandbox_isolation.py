"""What the local sandbox's isolation costs per run: its mount namespace (the fresh root with the
private /tmp, /var/tmp and /dev/shm) and the Unix-socket filter (seccomp), side by side with the
same sandbox without them, alternating so that machine load hits both alike.

    .venv/bin/python bench/sandbox_isolation.py [--runs 30]
    .venv/bin/python bench/sandbox_isolation.py --against /tmp/before   # another checkout, e.g.
        # git worktree add /tmp/before 50ed6fd: its sandbox, measured the same way, in alternating rounds

Prints, per variant, the median and p90 wall time of one sandboxed ``python -c pass``, of a Java
``-version`` with the checks' JVM flags (a whole run: the working folder made and removed, the uid
leased, the namespace built) and of a real tester (``tester``: the starter's LRUCacheTester with its
reference, compiled and run by the launcher in one JVM, as ``check_java(fast=True)`` does), and the
ratio full / without. Its last line is ``key=value`` pairs. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("RUNNER_BENCH_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from runner.evaluation.sandbox import Limits, LocalSandbox  # noqa: E402


def without_isolation() -> LocalSandbox:
    sandbox = LocalSandbox()
    sandbox.capabilities = sandbox.capabilities.model_copy(update={"private_mounts": False, "unix_socket_filter": False})
    sandbox._socket_filter = None
    return sandbox


def measure(runs: int) -> dict[str, list[float]]:
    """Seconds per run, keyed ``variant/command``."""
    limits = Limits(wall_seconds=30, cpu_seconds=60)
    variants = {"full": LocalSandbox(), "without": without_isolation()}
    commands = {"python": [sys.executable, "-c", "pass"]}
    if shutil.which("java"):
        from runner.evaluation.java_check import java_toolchain

        toolchain = java_toolchain()
        commands["java"] = [toolchain.java, *toolchain.jvm_flags(limits), "-version"]
        commands["tester"] = []
    times: dict[str, list[float]] = {f"{v}/{c}": [] for v in variants for c in commands}
    for _ in range(runs):
        for command, argv in commands.items():
            for name, sandbox in variants.items():
                run_limits = limits.for_jvm() if command == "java" else limits
                started = time.perf_counter()
                if command == "tester":
                    outcome = run_tester(sandbox, limits, toolchain)
                    assert outcome == "pass", (name, outcome)
                else:
                    with sandbox.workdir() as workdir:
                        result = sandbox.run(argv, workdir, run_limits)
                    assert result.exit_code == 0, (name, command, result.stderr_tail)
                times[f"{name}/{command}"].append(time.perf_counter() - started)
    return times


def run_tester(sandbox: LocalSandbox, limits: Limits, toolchain) -> str:
    """The starter's LRUCacheTester with its reference, through the launcher in one JVM."""
    from runner.benchmarks import load_benchmark
    from runner.evaluation.java_check import check_java
    from runner.evaluation.postprocess import assemble

    starter = load_benchmark("starter")
    task = starter.task("java/infill/LRUCacheTester/37-38")
    source = assemble(task, task.reference)
    return check_java(starter.program_of(task), source, sandbox, limits, toolchain, fast=True).outcome.value


def summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def report(label: str, times: dict[str, list[float]]) -> dict[str, float]:
    medians = {}
    for key, values in times.items():
        median, p90 = summary(values)
        medians[key] = median
        print(f"{label} {key}: median {1000 * median:.1f} ms, p90 {1000 * p90:.1f} ms ({len(values)} runs)")
    for command in sorted({k.split("/")[1] for k in times}):
        full, bare = medians[f"full/{command}"], medians[f"without/{command}"]
        print(f"{label} {command} ratio full/without: {full / bare:.2f} (+{1000 * (full - bare):.1f} ms per run)")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--against", type=Path, help="another checkout whose sandbox to measure in alternating rounds")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one round, for --against
    parser.add_argument("--record", type=Path, help="also write the medians here as JSON (bench/results/sandbox-cost.json)")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.runs)))
        return
    if args.against is None:
        medians = report("this", measure(args.runs))
        print(" ".join(f"{k.replace('/', '_')}_ms={1000 * v:.1f}" for k, v in medians.items()))
        if args.record:
            import record  # bench/record.py: a script's own folder is on sys.path

            record.write(args.record, {"runs": args.runs, "median_ms": {k: round(1000 * v, 1) for k, v in medians.items()}})
        return
    rounds = 3
    collected: dict[str, dict[str, list[float]]] = {"this": {}, "against": {}}
    for _ in range(rounds):
        for label, root in (("against", args.against.resolve()), ("this", ROOT)):
            done = subprocess.run([sys.executable, __file__, "--json", "--runs", str(max(1, args.runs // rounds))],
                                  env={**os.environ, "RUNNER_BENCH_ROOT": str(root)}, capture_output=True, text=True,
                                  check=True)
            for key, values in json.loads(done.stdout.strip().splitlines()[-1]).items():
                collected[label].setdefault(key, []).extend(values)
    before = report(f"against ({args.against})", collected["against"])
    after = report("this", collected["this"])
    print(" ".join(f"{k.replace('/', '_')}_ms_before={1000 * before[k]:.1f} {k.replace('/', '_')}_ms_after={1000 * after[k]:.1f}"
                   for k in after if k.startswith("full/")))


if __name__ == "__main__":
    main()
