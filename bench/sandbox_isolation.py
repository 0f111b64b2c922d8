"""What the local sandbox's isolation costs per run: the private /tmp, /var/tmp, /dev/shm and
hidden folders (mount namespace) and the Unix-socket filter (seccomp), side by side with the
same sandbox without them, in one process, alternating so that machine load hits both alike.

    .venv/bin/python bench/sandbox_isolation.py [--runs 30]

Prints, per variant, the median and p90 wall time of one sandboxed ``python -c pass`` and of a
Java ``-version``, and the ratio full / without. Needs root (the sandbox's private uid).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.evaluation.sandbox import Limits, LocalSandbox  # noqa: E402


def without_isolation() -> LocalSandbox:
    sandbox = LocalSandbox()
    sandbox.capabilities = sandbox.capabilities.model_copy(update={"private_mounts": False, "unix_socket_filter": False})
    sandbox._socket_filter = None
    return sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    limits = Limits(wall_seconds=30, cpu_seconds=60)
    variants = {"full": LocalSandbox(), "without": without_isolation()}
    commands = {"python": [sys.executable, "-c", "pass"]}
    if shutil.which("java"):
        from runner.evaluation.java_check import java_toolchain

        toolchain = java_toolchain()
        commands["java"] = [toolchain.java, *toolchain.jvm_flags(limits), "-version"]
    times: dict[tuple[str, str], list[float]] = {(v, c): [] for v in variants for c in commands}
    for _ in range(args.runs):
        for command, argv in commands.items():
            for name, sandbox in variants.items():
                run_limits = limits.for_jvm() if command == "java" else limits
                with sandbox.workdir() as workdir:
                    started = time.perf_counter()
                    result = sandbox.run(argv, workdir, run_limits)
                    times[(name, command)].append(time.perf_counter() - started)
                assert result.exit_code == 0, (name, command, result.stderr_tail)
    for command in commands:
        medians = {}
        for name in variants:
            values = sorted(times[(name, command)])
            medians[name] = statistics.median(values)
            p90 = values[int(0.9 * (len(values) - 1))]
            print(f"{command} {name}: median {1000 * medians[name]:.1f} ms, p90 {1000 * p90:.1f} ms ({len(values)} runs)")
        print(f"{command} ratio full/without: {medians['full'] / medians['without']:.2f} "
              f"(+{1000 * (medians['full'] - medians['without']):.1f} ms per run)")


if __name__ == "__main__":
    main()
