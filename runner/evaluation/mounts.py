"""The local sandbox's mount namespace: private temp folders, hidden runner folders, and the
interpreter's installation kept visible, read-only, wherever it lives.

An interpreter under ``/tmp`` would vanish under the private tmpfs, one below a 0700 home (pyenv
under ``/root``, a checkout's venv) is out of the private uid's reach, and one below a hidden
folder would be hidden with it: every answer would then be a ``runtime_error``. Each such prefix
is bound aside before anything is replaced and put back at its own path, read-only, afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: folders the sandbox replaces with its own empty tmpfs
REPLACED = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))
#: the PATH the sandboxed child gets (``LocalSandbox``), which resolves a bare command name
CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"

# Run as root inside the new mount namespace (``unshare --mount`` makes every mount private, which
# ``mount --move`` needs), before the uid is dropped:
#  1. each kept prefix is bound into the run's directory, which is then carried (``--rbind``) on
#     /dev/shm's fresh tmpfs while /tmp and /var/tmp are replaced;
#  2. an empty 0755 tmpfs covers each ancestor the private uid cannot traverse (the rest of that
#     home stays out of sight), then an empty root-owned tmpfs covers each hidden folder;
#  3. the run's directory goes back to its path, each kept prefix to its own, remounted read-only;
#  4. hidden folders inside a kept prefix (the benchmarks of a runner installed in that venv) are
#     covered last, since the kept bind would otherwise show them again.
# Arguments: workdir, tmpfs size in MiB, then four lists each ended by "--" (kept prefixes,
# ancestors to cover, hidden folders, hidden folders inside kept prefixes), then the command.
MOUNT_SCRIPT = r"""
set -e
w=$1; size=$2; shift 2
opts="size=${size}m,mode=1777,nosuid,nodev"
hide() { if [ -d "$1" ]; then mount -t tmpfs -o size=4k,mode=0711,nosuid,nodev,noexec runner-hidden "$1"; fi; }
n=0
while [ "$1" != "--" ]; do
  mkdir -p "$w/.runner-keep/$n"; mount --bind "$1" "$w/.runner-keep/$n"
  eval "keep_$n=\"\$1\""; n=$((n + 1)); shift
done
shift
mount -t tmpfs -o "$opts" runner-shm /dev/shm
mkdir /dev/shm/.runner-work
mount --rbind "$w" /dev/shm/.runner-work
i=0
while [ "$i" -lt "$n" ]; do umount "$w/.runner-keep/$i"; i=$((i + 1)); done
mount -t tmpfs -o "$opts" runner-tmp /tmp
if [ -d /var/tmp ] && [ ! -L /var/tmp ]; then mount -t tmpfs -o "$opts" runner-var-tmp /var/tmp; fi
while [ "$1" != "--" ]; do
  if [ -d "$1" ]; then mount -t tmpfs -o size=4k,mode=0755,nosuid,nodev runner-cover "$1"; fi
  shift
done
shift
while [ "$1" != "--" ]; do hide "$1"; shift; done
shift
mkdir -p "$w"
mount --move /dev/shm/.runner-work "$w"
rmdir /dev/shm/.runner-work
i=0
while [ "$i" -lt "$n" ]; do
  eval "p=\"\$keep_$i\""
  mkdir -p "$p"
  mount --move "$w/.runner-keep/$i" "$p"
  mount -o remount,bind,ro "$p"
  rmdir "$w/.runner-keep/$i"; i=$((i + 1))
done
if [ "$n" -gt 0 ]; then rmdir "$w/.runner-keep"; fi
while [ "$1" != "--" ]; do hide "$1"; shift; done
shift
cd "$w"
exec "$@"
"""


@dataclass(frozen=True)
class MountPlan:
    """What the mount script does besides the temp folders: the four lists it takes."""

    keep: tuple[Path, ...] = ()
    cover: tuple[Path, ...] = ()
    hide: tuple[Path, ...] = ()
    hide_inside_kept: tuple[Path, ...] = ()

    def script(self, workdir: Path, tmp_mb: int) -> list[str]:
        """The ``sh -c`` command line that sets the namespace up, to be followed by the command."""
        lists = (self.keep, self.cover, self.hide, self.hide_inside_kept)
        return ["sh", "-c", MOUNT_SCRIPT, "sh", str(workdir), str(tmp_mb),
                *[arg for paths in lists for arg in (*map(str, paths), "--")]]


def mounts_work() -> bool:
    """Whether this machine lets the sandbox set its mount namespace up (root, util-linux)."""
    with tempfile.TemporaryDirectory() as work:
        argv = ["unshare", "--mount", "--", *MountPlan().script(Path(work), 1),
                "sh", "-c", f'[ "$(pwd)" = "{work}" ] && touch /dev/shm/probe /var/tmp/probe']
        try:
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


def is_python(command: str) -> bool:
    """Whether ``command`` names a Python interpreter (``python3``, ``.venv/bin/python``, ``pypy3``)."""
    name = Path(command).name
    return "python" in name or "pypy" in name


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _command_path(command: str) -> str | None:
    if "/" not in command:
        return shutil.which(command, path=CHILD_PATH)
    return command if os.path.isfile(command) else None


_ASKED: dict[tuple[str, int], tuple[str, ...]] = {}


def _asked_prefixes(executable: str) -> tuple[str, ...]:
    """``sys.prefix`` and ``sys.base_prefix`` of another Python, asked once per version of its file."""
    try:
        key = (executable, os.stat(executable).st_mtime_ns)
    except OSError:
        return ()
    if key not in _ASKED:
        try:
            done = subprocess.run([executable, "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                                  capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
            answer = done.stdout.splitlines() if done.returncode == 0 else []
        except (OSError, subprocess.SubprocessError):
            answer = []  # an interpreter that cannot start: the self-check names it
        _ASKED[key] = tuple(line for line in answer if line.strip())
    return _ASKED[key]


def interpreter_prefixes(command: str) -> tuple[Path, ...]:
    """The real folders ``command``'s installation needs: its venv (``sys.prefix``), its base
    installation (``sys.base_prefix``) and the folder its resolved binary belongs to."""
    executable = _command_path(command)
    if executable is None:
        return ()
    # a venv's bin/python links into the base installation: the venv counts at its own path too
    found = [Path(os.path.abspath(executable)).parent.parent, Path(os.path.realpath(executable)).parent.parent]
    if os.path.abspath(executable) == os.path.abspath(sys.executable):
        found += [Path(sys.prefix), Path(sys.base_prefix)]
    elif is_python(executable):
        found += [Path(p) for p in _asked_prefixes(executable)]
    # a venv reached through a symlinked folder (a checkout's .venv -> a venv elsewhere) is run at
    # the linked path, which may lie under a folder the sandbox hides: keep that path too
    linked = Path(os.path.abspath(executable)).parent.parent
    resolved = [Path(os.path.realpath(p)) for p in found]
    return tuple(dict.fromkeys([*resolved, *([linked] if linked not in resolved else [])]))


def _placement(prefix: Path, masked: tuple[Path, ...]) -> tuple[bool, Path | None]:
    """Whether ``prefix`` must be kept, and the ancestor to cover with a fresh 0755 tmpfs first."""
    under = [m for m in masked if _within(prefix, m)]
    for ancestor in reversed(prefix.parents):  # "/" first
        if any(_within(ancestor, m) for m in under):
            break  # from here down the sandbox makes the folders itself, open to all
        try:
            if not os.stat(ancestor).st_mode & 0o001:
                return True, ancestor
        except OSError:
            return False, None
    return bool(under), None


def plan_mounts(interpreters: tuple[str, ...], hidden: tuple[Path, ...] | list[Path] = ()) -> MountPlan:
    """The namespace that keeps each interpreter's prefixes visible, read-only, with ``hidden`` out of sight."""
    hidden = tuple(hidden)
    masked = (*REPLACED, *hidden)
    keep: list[Path] = []
    cover: list[Path] = []
    for interpreter in interpreters:
        for prefix in interpreter_prefixes(interpreter):
            if not prefix.is_dir() or any(_within(k, prefix) for k in keep):
                continue
            needed, top = _placement(prefix, masked)
            if not needed:
                continue
            if prefix in hidden or any(_within(r, prefix) for r in REPLACED):
                # binding a hidden folder or the host's /tmp back would undo the sandbox
                log.warning("%s is (or holds) a folder the sandbox replaces or hides: it stays out of sight", prefix)
                continue
            if top is not None and any(_within(r, top) for r in REPLACED):
                log.warning("%s is below %s, which no other user may enter: it stays out of sight", prefix, top)
                continue
            keep = [k for k in keep if not _within(k, prefix)] + [prefix]
            if top is not None and not any(_within(top, c) for c in cover):
                cover = [c for c in cover if not _within(c, top)] + [top]
    inside = tuple(h for h in hidden if any(_within(h, k) and h != k for k in keep))
    return MountPlan(keep=tuple(keep), cover=tuple(cover), hide=tuple(h for h in hidden if h not in inside),
                     hide_inside_kept=inside)


def kept_paths(interpreters: tuple[str, ...], hidden: tuple[Path, ...] | list[Path] = ()) -> tuple[list[Path], list[Path]]:
    """The interpreter prefixes to keep visible read-only in the sandbox, and the ancestors to cover first."""
    plan = plan_mounts(interpreters, hidden)
    return list(plan.keep), list(plan.cover)


def holds_interpreter(folder: Path, interpreter: str) -> bool:
    """Whether hiding ``folder`` would hide ``interpreter`` itself, which no kept prefix can bring back:
    the folder is one of its prefixes, or lies inside one and holds the binary."""
    executable = _command_path(interpreter)
    binaries = [Path(os.path.realpath(os.path.dirname(os.path.abspath(executable or interpreter))))]
    if executable:
        binaries.append(Path(os.path.dirname(os.path.realpath(executable))))
    for prefix in interpreter_prefixes(interpreter) or (binaries[0].parent,):
        if folder == prefix or (_within(folder, prefix) and any(_within(b, folder) for b in binaries)):
            return True
    return False
