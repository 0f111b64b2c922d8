"""The models folder and what the runner knows of the files in it: where they live, their sha256 (cached by
path, size and mtime, hashed again from content in each run) and whether a disk has room for more.

Model preparation (``runner.serving.models``) and the Hub download (``runner.serving.models_hub``) both stand on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from runner.errors import UserError
from runner.paths import cache_dir
from runner.store import ModelRecord

_SHA_LOCK = threading.Lock()
#: free space kept beyond a download's size, so that a full disk does not break the run itself
DISK_MARGIN_BYTES = 2 * 1024**3
#: the name of the mark a finished Hub download leaves in its folder
_DOWNLOADED_MARK = "runner-downloaded"


def models_dir() -> Path:
    """Where prepared model files live: ``cache_dir()/models``."""
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- digests ---------------------------------------------------------------------------------------
def _sha256_index() -> Path:
    return cache_dir() / "sha256.json"


def _update_index(change: Callable[[dict], None]) -> None:
    index = _sha256_index()
    with _SHA_LOCK:
        cached = _read_json(index)
        change(cached)
        tmp = index.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1), encoding="utf-8")
        os.replace(tmp, index)


def sha256_file(path: Path, fresh: bool = False) -> str:
    """The file's sha256, cached by absolute path, size and mtime in ``cache_dir()/sha256.json``.

    The cached value only tells whether a rebuild can be skipped; ``fresh`` reads the content again.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    if not fresh:
        with _SHA_LOCK:
            hit = _read_json(_sha256_index()).get(key)
        if hit and hit["size"] == stat.st_size and hit["mtime_ns"] == stat.st_mtime_ns:
            return hit["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
            digest.update(block)
    value = digest.hexdigest()
    _update_index(lambda cached: cached.__setitem__(key, {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                                          "sha256": value}))
    return value


def forget_sha256(path: Path) -> None:
    """Drop the cached digests of ``path`` (a file, or every file under a folder): the next look hashes."""
    root = str(Path(path).resolve())
    _update_index(lambda cached: [cached.pop(k) for k in list(cached) if k == root or k.startswith(root + os.sep)])


def _tree_files(folder: Path) -> list[Path]:
    # dot-entries are bookkeeping (hub download cache, the runner's markers), not model content
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def sha256_tree(folder: Path, fresh: bool = False) -> str:
    """One digest for a folder: sha256 over each file's relative path and sha256, in sorted order."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in _tree_files(folder):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path, fresh)}\n".encode())
    return digest.hexdigest()


class ContentCheck:
    """The served files hashed again from their content on a background thread (started at once)."""

    def __init__(self, records: list[ModelRecord]) -> None:
        self._records = records
        self._outcome: list[ModelRecord] | UserError | None = None
        self._thread = threading.Thread(target=self._hash, name="model-sha256", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        checked, problems = [], []
        for record in self._records:
            path = Path(record.path)
            try:
                actual = sha256_file(path, fresh=True) if path.is_file() else sha256_tree(path, fresh=True)
            except OSError as exc:
                problems.append(f"{record.key}: cannot read {path} to hash it ({exc.strerror}); prepare it again")
                continue
            if record.sha256 and actual != record.sha256:
                forget_sha256(path)  # so that the next preparation rebuilds (or refuses) it
                problems.append(f"{record.key}: {path} hashes to sha256 {actual} now, but {record.sha256} was "
                                "pinned or recorded for it: its content changed under the same size and mtime "
                                "(bit rot, or an edit that kept the mtime); restore the file, or delete it and "
                                "prepare again")
            checked.append(record.model_copy(update={"sha256": actual}))
        self._outcome = UserError("; ".join(problems)) if problems else checked

    def result(self) -> list[ModelRecord]:
        """The records with the digests of this run's read; ``UserError`` when any differs from its record."""
        self._thread.join()
        if not isinstance(self._outcome, list):
            raise self._outcome or UserError("hashing the model files stopped unexpectedly; rerun the cell")
        return self._outcome


def hash_in_background(records: list[ModelRecord]) -> ContentCheck:
    """Start hashing ``records``' files (call it before the server starts; ``result()`` once it is up)."""
    return ContentCheck(records)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _digest(path: Path) -> str:
    return sha256_file(path) if path.is_file() else sha256_tree(path)


# -- disk space ------------------------------------------------------------------------------------
def check_free_space(dest: Path, needed_bytes: int, *, what: str, margin_bytes: int = DISK_MARGIN_BYTES) -> None:
    """Raise ``UserError`` unless the disk holding ``dest`` has ``needed_bytes`` plus a margin free."""
    probe = Path(dest)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes + margin_bytes:
        raise UserError(f"{what}: needs {needed_bytes / 1024**3:.1f} GiB (+{margin_bytes / 1024**3:.1f} GiB "
                        f"margin) in {dest}, but only {free / 1024**3:.1f} GiB is free; free space or set "
                        "RUNNER_CACHE to a larger disk")
