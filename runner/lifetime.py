"""Helper processes die with the runner that started them, however the runner dies.

A single-process helper (``llama-server``, ``llama-quantize``) gets a parent-death signal between
fork and exec. A helper with children of its own (a build: bash, cmake, make, the compilers; a pip
install) would leave those children behind, since the signal reaches only the direct child, so it
runs under a tether: a small process that holds the parent-death signal and, when it fires (or when
the helper ends), kills the helper's whole process group.

    python -m runner.lifetime -- ARGV...   # the tether, as ``run_tied`` starts it
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
from functools import lru_cache

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
    return subprocess.run([sys.executable, "-m", "runner.lifetime", "--", *argv], preexec_fn=tied(signal.SIGTERM),
                          **kwargs)


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
        sys.exit("usage: python -m runner.lifetime -- ARGV...")
    sys.exit(_tether(args))
