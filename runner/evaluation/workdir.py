"""The sandbox's working folders: one private folder per run under a world-traversable base, each a
size-limited tmpfs where the runner is root (so that an answer cannot fill the host's disk), and the
sweep that unmounts the folders a killed runner left behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)


def _workdir_base() -> Path:
    # World-traversable (0711) but not listable, so that a private uid reaches its own
    # directory and nothing else; pytest's and the user's temp folders are often 0700.
    base = Path(tempfile.gettempdir()) / f"runner-sandbox-{os.getuid()}"
    base.mkdir(mode=0o711, exist_ok=True)
    os.chmod(base, 0o711)
    _sweep_work_mounts(str(base))
    return base


# -- the working folder as a size-limited tmpfs ------------------------------------------------------
_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2
_WORK_SOURCE = "runner-work-"


@lru_cache(maxsize=1)
def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _mount_work(path: Path, megabytes: int) -> bool:
    # the source names this process, so that a later runner can tell a mount a killed one left
    source = f"{_WORK_SOURCE}{os.getpid()}".encode()
    options = f"size={megabytes}m,mode=0700".encode()
    return _libc().mount(source, str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options) == 0


def _unmount(path: Path) -> None:
    # detached: a namespace that still holds the folder (a sandbox being torn down) keeps its copy
    if _libc().umount2(str(path).encode(), _MNT_DETACH) != 0:
        log.warning("cannot unmount the sandbox's working folder %s", path)


@lru_cache(maxsize=1)
def work_limit_works() -> bool:
    """Whether the working folder can be a size-limited tmpfs here (the runner is root and may mount)."""
    if os.geteuid() != 0:
        return False
    probe = Path(tempfile.mkdtemp(prefix="runner-work-probe-"))
    try:
        if not _mount_work(probe, 1):
            log.warning("cannot mount a tmpfs for the sandbox's working folder: an answer may fill the disk")
            return False
        _unmount(probe)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _mount_points(fstype: str, source_prefix: str) -> list[tuple[str, str]]:
    """(mount point, source) of this namespace's mounts of ``fstype`` whose source starts so."""
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                fields, _, rest = line.partition(" - ")
                kind, source = (rest.split() + ["", ""])[:2]
                if kind == fstype and source.startswith(source_prefix):
                    point = fields.split()[4].encode().decode("unicode_escape")
                    found.append((point, source))
    except OSError:
        pass
    return found


@lru_cache(maxsize=8)
def _sweep_work_mounts(base: str) -> None:
    """Unmount the working folders that runners killed before their cleanup left under ``base``."""
    if os.geteuid() != 0:
        return
    for point, source in _mount_points("tmpfs", _WORK_SOURCE):
        if os.path.dirname(point) != base:
            continue
        try:
            os.kill(int(source.removeprefix(_WORK_SOURCE)), 0)
            continue  # its runner is alive
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        _unmount(Path(point))
        shutil.rmtree(point, ignore_errors=True)
