"""A helper the runner starts dies with it, children and all, however the runner dies.

Each case starts a real runner process, lets it start a real helper, SIGKILLs the runner and looks
for what is left in /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[1]


def session_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def live_processes() -> list[tuple[int, str, int | None]]:
    """(pid, command line, session id) of every process that is not a zombie."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            found.append((int(entry.name), argv, int(fields[3])))
    return found


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every live process below ``root``, however it was started."""
    table = {pid: (argv, _parent(pid)) for pid, argv, _ in live_processes()}
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (argv, ppid) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = argv
                frontier.append(pid)
    return found


def alive(pids) -> list[str]:
    live = {pid: argv for pid, argv, _ in live_processes()}
    return [f"{pid} {live[pid][:120]}" for pid in pids if pid in live]


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} never happened within {seconds:.0f} s")


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def kill_runner_and_expect_nothing_left(runner: subprocess.Popen, started: dict[int, str]) -> None:
    """SIGKILL ``runner``; every process it had started below it (``started``) must end within 15 s."""
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    deadline = time.monotonic() + 15
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(started), alive(started)


def test_a_helper_with_children_dies_whole_with_its_sigkilled_runner():
    marker = f"runner-tether-{uuid.uuid4().hex}"
    # a background child, a daemonised one (reparented at once: found by its name) and one in front
    helper = f"sleep 300 & (exec -a {marker}-daemon sleep 301 &); exec -a {marker}-front sleep 302"
    script = f"from runner.infra.lifetime import run_tied\nrun_tied(['bash', '-c', {helper!r}])\n"
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)

    def named() -> list[int]:
        return [pid for pid, argv, _ in live_processes() if argv.startswith(marker)]

    try:
        wait_for(lambda: len(named()) == 2, 30, "the helper's children")
        started = {**descendants(runner.pid), **{pid: "" for pid in named()}}
        kill_runner_and_expect_nothing_left(runner, started)
    finally:
        if runner.poll() is None:
            runner.kill()


def test_a_helper_that_ends_takes_what_it_left_running():
    from runner.infra.lifetime import run_tied

    marker = f"runner-leftover-{uuid.uuid4().hex}"
    done = run_tied(["bash", "-c", f"(sleep 300 {marker} &); exit 3"], capture_output=True)
    assert done.returncode == 3
    wait_for(lambda: not [p for p, argv, _ in live_processes() if marker in argv], 10, "the leftover's end")


@pytest.mark.timeout(600)
def test_a_runner_killed_while_building_llama_cpp_leaves_no_compiler_running():
    """The real build (pip download, tar, cmake, make, the compilers) into a fresh cache."""
    import shutil

    require(shutil.which("cmake") is not None and shutil.which("g++") is not None, "cmake and g++")
    cache = Path(tempfile.mkdtemp(prefix="runner-build-kill-"))
    script = ("import logging\nlogging.basicConfig(level=logging.INFO)\n"
              "from runner.runtimes.llamacpp import ensure_llama_server\nensure_llama_server()\n")
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_LLAMA_SERVER"}
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env={**env, "RUNNER_CACHE": str(cache)},
                              stderr=subprocess.DEVNULL)
    try:
        # the compile phase, which runs for minutes (configure's own try-compiles end by themselves
        # within the wait, and so would prove nothing)
        def build_steps() -> dict[int, str]:
            below = descendants(runner.pid)
            return below if any(argv.startswith("cmake --build") for argv in below.values()) else {}

        started = wait_for(build_steps, 300, "the compile phase (cmake --build)")
        kill_runner_and_expect_nothing_left(runner, started)
    finally:
        if runner.poll() is None:
            runner.kill()
        shutil.rmtree(cache, ignore_errors=True)
