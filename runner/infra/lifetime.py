"""Helper processes die with the runner that started them, however the runner dies.

A single-process helper (``llama-server``, ``llama-quantize``) gets a parent-death signal between
fork and exec. A helper with children of its own (a build: bash, cmake, make, the compilers; a pip
install) would leave those children behind, since the signal reaches only the direct child, so it
runs under a tether: a small process that holds the parent-death signal and, when it fires (or when
the helper ends), kills the helper's whole process group.

    python -m runner.infra.lifetime -- ARGV...   # the tether, as ``run_tied`` starts it
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

_PR_SET_PDEATHSIG = 1


@lru_cache(maxsize=1)
def _prctl():
    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """In a child between fork and exec: get ``signum`` when ``parent`` (the forking thread) ends.

    The signal follows the *thread* that forked, so long-lived helpers are started from threads
    that live as long as the run."""
    if _prctl()(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        os._exit(126)
    if os.getppid() != parent:  # it ended before the signal was armed
        os._exit(126)


def tied(signum: int = signal.SIGKILL):
    """A ``preexec_fn`` that ties the child to this process (see ``die_with_parent``)."""
    return functools.partial(die_with_parent, os.getpid(), signum)


def run_tied(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` for a helper with children: the helper's whole process group dies with this process."""
    return subprocess.run([sys.executable, "-m", "runner.infra.lifetime", "--", *argv], preexec_fn=tied(signal.SIGTERM),
                          **kwargs)


# -- which process is which: a pid alone is reused, a pid with its start time and boot is not ----------
def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/PID/stat``); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_cmdline(pid: int) -> list[str] | None:
    """``pid``'s command line; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def boot_id() -> str:
    """This boot's id: a pid and its start time name one process only within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def is_process(pid: int, start_ticks: int, cmdline: list[str] | None = None) -> bool:
    """Whether ``pid`` is still the process that had ``start_ticks`` (and ``cmdline``)."""
    if process_start_ticks(pid) != start_ticks:
        return False
    return cmdline is None or process_cmdline(pid) == cmdline


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _tether(argv: list[str]) -> int:
    started: list[subprocess.Popen] = []

    def stop(signum, _frame) -> None:
        for child in started:
            _kill_group(child.pid)
        os._exit(128 + signum)

    # armed before the helper starts: a runner that dies meanwhile takes the helper too
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    child = subprocess.Popen(argv, start_new_session=True)
    started.append(child)
    try:
        code = child.wait()
    finally:
        _kill_group(child.pid)  # what the helper left running (a daemonised compiler server) goes too
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit("usage: python -m runner.infra.lifetime -- ARGV...")
    sys.exit(_tether(args))
