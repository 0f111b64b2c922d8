"""The local sandbox's file system: a fresh root that holds only what a program needs.

Default deny: the sandbox builds a new, empty root (a tmpfs) in its own mount namespace, binds
into it, read-only, the system's programs and libraries (``/usr`` and its links), the few files
of ``/etc`` that the loader and the JVM read, and each interpreter's installation wherever it
lives; gives it a private ``/tmp``, ``/var/tmp`` and ``/dev/shm``, a minimal ``/dev`` and the PID
namespace's own ``/proc``; binds the run's folder, read-write, at its own path; then moves into it
with ``pivot_root`` and detaches the old root. Nothing else of the host exists inside: no home,
no runner cache, no other run's folder, no ``/run`` or ``/sys``, whatever their permissions.

The one place a hidden folder is still needed is inside what is bound: a runner installed into the
interpreter's own venv ships its benchmark references there, so those are covered with an empty
tmpfs after the bind.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: the system's programs and libraries, bound read-only (on a merged-/usr system all but /usr are links)
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: what of /etc the sandbox's programs read: the dynamic loader's cache and configuration, the
#: alternatives that /usr/bin/java and javac resolve through, the JDK's configuration (Debian links
#: the JDK's ``jvm.cfg`` and ``conf/`` there) and the time zone; everything else of /etc stays out
ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/java*",
       "/etc/localtime", "/etc/timezone")
#: folders the sandbox makes its own, empty and size-limited
PRIVATE = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))
#: the PATH the sandboxed child gets (``LocalSandbox``), which resolves a bare command name
CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"

# Run as root inside the new mount namespace (``unshare --mount`` makes every mount private) before
# the uid is dropped. Arguments: the run's folder, the private tmpfs size in MiB, the folder to
# build the new root on, then five lists each ended by "--" (copied as they are: the system's
# top-level links, then the /etc entries; system folders bound read-only; kept prefixes; hidden
# folders inside them), then the command. Few programs are started (a fork and exec each cost a millisecond
# or two per run): a ``cp`` per folder copied into, one ``mount`` per mount, binds made read-only in
# the same call. The new root is read-only once built.
MOUNT_SCRIPT = r"""
set -e
umask 022
w=$1; size=$2; r=$3; shift 3
# the lists below are joined and split on newlines only: a path may hold spaces
IFS='
'
opts="size=${size}m,mode=1777,nosuid,nodev"
mount -t tmpfs -o size=1m,mode=0755,nosuid,nodev runner-root "$r"
top=""; while [ "$1" != "--" ]; do top="$top$IFS$1"; shift; done; shift
etc=""; while [ "$1" != "--" ]; do etc="$etc$IFS$1"; shift; done; shift
mkdir "$r/etc"
if [ -n "$top" ]; then cp -a $top "$r/"; fi
if [ -n "$etc" ]; then cp -a $etc "$r/etc/"; fi
binds=""; made=""; while [ "$1" != "--" ]; do binds="$binds$IFS$1"; made="$made$IFS$r$1"; shift; done; shift
mkdir -p "$r/tmp" "$r/var/tmp" "$r/dev" "$r/proc" $made
for d in $binds; do mount -o bind,ro,nosuid,nodev "$d" "$r$d"; done
mount -t tmpfs -o "$opts" runner-tmp "$r/tmp"
mount -t tmpfs -o "$opts" runner-var-tmp "$r/var/tmp"
mount -t tmpfs -o size=64k,mode=0755,nosuid,noexec runner-dev "$r/dev"
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom "$r/dev/"
ln -s /proc/self/fd "$r/dev/fd"
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
kept=""; made="$r/dev/shm$IFS$r$w"; while [ "$1" != "--" ]; do kept="$kept$IFS$1"; made="$made$IFS$r$1"; shift; done; shift
mkdir -p $made
mount -t tmpfs -o "$opts" runner-shm "$r/dev/shm"
mount --bind "$w" "$r$w"
for d in $kept; do mount -o bind,ro,nosuid,nodev "$d" "$r$d"; done
while [ "$1" != "--" ]; do
  if [ -d "$r$1" ]; then mount -t tmpfs -o size=4k,mode=0711,nosuid,nodev,noexec runner-hidden "$r$1"; fi
  shift
done
shift
mkdir "$r/.old"
cd "$r"
pr=/usr/sbin/pivot_root; [ -x "$pr" ] || pr=/sbin/pivot_root
"$pr" . .old
umount -l /.old
rmdir /.old
mount -o remount,ro,nosuid,nodev /
cd "$w"
exec "$@"
"""


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def system_paths() -> tuple[str, ...]:
    """The system folders and /etc entries this machine has, as the fresh root holds them."""
    found = [p for p in SYSTEM if os.path.lexists(p)]
    for pattern in ETC:
        found += sorted(glob.glob(pattern)) if "*" in pattern else ([pattern] if os.path.lexists(pattern) else [])
    return tuple(found)


@functools.lru_cache(maxsize=1)
def _copied_and_bound() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """What the root holds of the system: top-level links and /etc's entries, copied as they are,
    and the folders it binds (looked up once a process: every sandboxed run asks)."""
    top, etc, bound = [], [], []
    for path in system_paths():
        if path.startswith("/etc/"):
            etc.append(path)
        else:
            (bound if os.path.isdir(path) and not os.path.islink(path) else top).append(path)
    return tuple(top), tuple(etc), tuple(bound)


def in_system(path: Path) -> bool:
    """Whether ``path`` is already visible through a bound system folder (``/usr/local/...``)."""
    real = Path(os.path.realpath(path))
    return any(_within(real, Path(os.path.realpath(p))) for p in SYSTEM if os.path.isdir(p))


@dataclass(frozen=True)
class MountPlan:
    """What the fresh root holds besides the system: kept prefixes, and hidden folders inside them."""

    keep: tuple[Path, ...] = ()
    hide: tuple[Path, ...] = ()

    def script(self, workdir: Path, tmp_mb: int, root: Path) -> list[str]:
        """The ``sh -c`` command line that builds the root on ``root`` and enters it, to be followed by the command."""
        lists = (*_copied_and_bound(), tuple(map(str, self.keep)), tuple(map(str, self.hide)))
        return ["sh", "-c", MOUNT_SCRIPT, "sh", str(workdir), str(tmp_mb), str(root),
                *[arg for paths in lists for arg in (*paths, "--")]]


def new_root_mountpoint(base: Path) -> Path:
    """The folder each sandbox's namespace mounts its fresh root on (one for all: each namespace's own)."""
    point = base / ".root"
    point.mkdir(mode=0o700, exist_ok=True)
    return point


def mounts_work() -> bool:
    """Whether this machine lets the sandbox build its fresh root (root, util-linux's pivot_root)."""
    with tempfile.TemporaryDirectory() as work:
        base = Path(tempfile.mkdtemp(prefix="runner-root-probe-"))
        try:
            check = (f'[ "$(pwd)" = "{work}" ] && touch /dev/shm/probe /var/tmp/probe /tmp/probe '
                     f'&& [ ! -e {shlex.quote(str(base))} ] && [ -x /usr/bin/env ]')
            argv = ["unshare", "--mount", "--pid", "--fork", "--",
                    *MountPlan().script(Path(work), 1, new_root_mountpoint(base)), "sh", "-c", check]
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return False
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return done.returncode == 0


def is_python(command: str) -> bool:
    """Whether ``command`` names a Python interpreter (``python3``, ``.venv/bin/python``, ``pypy3``)."""
    name = Path(command).name
    return "python" in name or "pypy" in name


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


def plan_mounts(interpreters: tuple[str, ...], hidden: tuple[Path, ...] | list[Path] = ()) -> MountPlan:
    """The prefixes of ``interpreters`` the fresh root must bind, and the ``hidden`` folders inside what it binds."""
    keep: list[Path] = []
    for interpreter in interpreters:
        for prefix in interpreter_prefixes(interpreter):
            if not prefix.is_dir() or in_system(prefix) or any(_within(prefix, k) for k in keep):
                continue
            if any(_within(p, prefix) for p in PRIVATE) or prefix == Path("/"):
                # binding a folder that holds /tmp (or all of /) would bring the host back
                log.warning("%s holds a folder the sandbox makes its own: it stays out of sight", prefix)
                continue
            keep = [k for k in keep if not _within(k, prefix)] + [prefix]
    bound = [*keep, *(Path(os.path.realpath(p)) for p in SYSTEM if os.path.isdir(p) and not os.path.islink(p))]
    inside = tuple(h for h in hidden if any(_within(h, b) for b in bound))
    return MountPlan(keep=tuple(keep), hide=inside)


def kept_paths(interpreters: tuple[str, ...], hidden: tuple[Path, ...] | list[Path] = ()) -> list[Path]:
    """The interpreter prefixes the fresh root binds, read-only, at their own paths."""
    return list(plan_mounts(interpreters, hidden).keep)


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
