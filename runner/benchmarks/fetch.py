"""Download or import SimCoPilot at the pinned commit, verify every file, install it atomically.

Sources: the GitHub tarball (``RUNNER_SIMCOPILOT_URL`` overrides the address), or a local copy
(a git checkout, an unpacked archive, or a ``.tar.gz``/``.zip`` file). Only the files the
manifest lists are installed, so the data folder is exactly the pinned commit's kept subset.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import httpx

from runner import __version__
from runner.benchmarks import simcopilot_dir
from runner.benchmarks.editions import DEFAULT_EDITION, Edition, get_edition
from runner.benchmarks.manifest import (
    Manifest,
    Mismatch,
    Verification,
    active_manifest,
    check_file,
    verify_tree,
)
from runner.errors import UserError
from runner.records import utcnow

URL_ENV = "RUNNER_SIMCOPILOT_URL"
INSTALLED_MANIFEST = "files.tsv"
REPOSITORY = "mj33rice/SimCoPilot"
_CHUNK = 1 << 16
Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


def default_url(commit: str, repository: str = REPOSITORY) -> str:
    """The GitHub tarball of ``commit``, unless ``RUNNER_SIMCOPILOT_URL`` names another."""
    return os.environ.get(URL_ENV) or f"https://codeload.github.com/{repository}/tar.gz/{commit}"


@dataclass(frozen=True)
class ImportResult:
    """Where the copy was installed, where it came from, and how it compared with the manifest."""

    dest: Path
    source: str
    kind: str  # "download" | "directory" | "archive"
    verification: Verification
    manifest: Manifest


class ImportRefused(UserError):
    """The copy holds files whose content differs from the pinned commit."""

    def __init__(self, message: str, verification: Verification):
        super().__init__(message)
        self.verification = verification


def fetch_simcopilot(
    url: str | None = None,
    allow_modified: bool = False,
    progress: Progress | None = None,
    timeout: float = 30.0,
    edition: str | None = None,
) -> ImportResult:
    """Download ``edition``'s pinned tarball, verify it, and install it as that edition of ``simcopilot``."""
    pinned = get_edition(edition)
    manifest = active_manifest(pinned.name)
    url = url or default_url(manifest.commit, pinned.repository)
    data_root = simcopilot_dir(pinned.name).parent
    data_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=data_root) as tmp:
        archive = Path(tmp) / "simcopilot.tar.gz"
        _download(url, archive, progress, timeout, pinned)
        return _import_archive(archive, manifest, allow_modified, source=url, kind="download", edition=pinned)


def import_simcopilot(source: Path, allow_modified: bool = False, edition: str | None = None) -> ImportResult:
    """Verify a local copy (directory or ``.tar.gz``/``.tgz``/``.tar``/``.zip``) of ``edition`` and install it."""
    pinned = get_edition(edition)
    manifest = active_manifest(pinned.name)
    source = Path(source).expanduser()
    if not source.exists():
        raise UserError(f"{source}: no such file or directory; give a {pinned.repository} checkout, "
                        "an unpacked archive, or a .tar.gz/.zip of it")
    if source.is_dir():
        return _import_directory(source, manifest, allow_modified, pinned)
    return _import_archive(source, manifest, allow_modified, source=str(source.resolve()), kind="archive",
                           edition=pinned)


# --- download ---------------------------------------------------------------------------------


def _download(url: str, dest: Path, progress: Progress | None, timeout: float, edition: Edition) -> None:
    flag = "" if edition.name == DEFAULT_EDITION else f" --edition {edition.name}"
    offline_hint = (f"to import a local copy instead, run `runner data fetch simcopilot{flag} --from PATH` "
                    f"(a checkout, unpacked archive or .tar.gz/.zip of {edition.repository} at {edition.commit[:7]})")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise UserError(f"downloading {url} failed: HTTP {response.status_code}; {offline_hint}")
            total = response.headers.get("content-length")
            done = 0
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, int(total) if total and total.isdigit() else None)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise UserError(f"cannot download {url} ({reason}); {offline_hint}") from None


# --- sources ----------------------------------------------------------------------------------


def _repo_root(folder: Path) -> Path:
    """The repository's top folder: ``folder`` itself or its single ``SimCoPilot-<sha>/`` child."""
    if (folder / "example_code").is_dir():
        return folder
    children = [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")]
    if len(children) == 1 and (children[0] / "example_code").is_dir():
        return children[0]
    raise UserError(f"{folder}: no example_code/ folder here or in a single subfolder; "
                    "expected a checkout or unpacked archive of SimCoPilot")


def _import_directory(folder: Path, manifest: Manifest, allow_modified: bool, edition: Edition) -> ImportResult:
    root = _repo_root(folder)
    verification = verify_tree(root, manifest)
    _refuse_modified(verification, manifest, allow_modified, str(root))
    staging = _staging_dir(edition)
    try:
        for rel in verification.ok + [m.path for m in verification.modified]:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, target)
        return _install(staging, manifest, verification, str(root.resolve()), "directory", allow_modified, edition)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _import_archive(archive: Path, manifest: Manifest, allow_modified: bool, source: str, kind: str,
                    edition: Edition) -> ImportResult:
    staging = _staging_dir(edition)
    try:
        found: dict[str, Path] = {}
        with _open_archive(archive) as members:
            prefix = _archive_prefix(archive, [name for name, _ in members])
            for name, opener in members:
                rel = name[len(prefix):]
                if rel not in manifest.entries or rel in found:
                    continue
                target = staging / rel  # a manifest path: relative, no "..", so it stays in staging
                target.parent.mkdir(parents=True, exist_ok=True)
                with opener() as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                found[rel] = target
        verification = Verification()
        for rel, entry in sorted(manifest.entries.items()):
            if rel not in found:
                verification.missing.append(rel)
            elif (mismatch := check_file(entry, found[rel])) is None:
                verification.ok.append(rel)
            else:
                verification.modified.append(mismatch)
        _refuse_modified(verification, manifest, allow_modified, source)
        return _install(staging, manifest, verification, source, kind, allow_modified, edition)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _open_archive(archive: Path) -> Iterator[list[tuple[str, Callable[[], IO[bytes]]]]]:
    """Regular files of a tar or zip archive, as (path, opener); links and folders are skipped."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            yield [(_clean(info.filename), lambda info=info: handle.open(info))
                   for info in handle.infolist() if not info.is_dir()]
        return
    try:
        tar = tarfile.open(archive)  # any compression tarfile knows
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"{archive}: not a .tar.gz, .tar or .zip archive ({exc})") from None
    with tar:
        try:
            members = [m for m in tar.getmembers() if m.isfile()]
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserError(f"{archive}: damaged archive ({exc})") from None
        yield [(_clean(m.name), lambda m=m: tar.extractfile(m)) for m in members]


def _clean(name: str) -> str:
    # "tar -C dir ." writes "./example_code/..."; PurePosixPath drops the "./".
    return str(PurePosixPath(name))


def _archive_prefix(archive: Path, names: list[str]) -> str:
    """``""`` when the archive holds ``example_code/`` at its top, else its one top folder + ``/``."""
    if any(n.startswith("example_code/") for n in names):
        return ""
    tops = {PurePosixPath(n).parts[0] for n in names if PurePosixPath(n).parts}
    if len(tops) == 1:
        prefix = f"{tops.pop()}/"
        if any(n.startswith(prefix + "example_code/") for n in names):
            return prefix
    raise UserError(f"{archive}: no example_code/ folder at the top or in a single top folder; "
                    "expected an archive of SimCoPilot")


# --- install ----------------------------------------------------------------------------------


def _refuse_modified(verification: Verification, manifest: Manifest, allow_modified: bool, source: str) -> None:
    if not verification.ok and not verification.modified:
        raise UserError(f"{source}: none of the {len(verification.missing)} files of SimCoPilot "
                        f"{manifest.commit[:7]} is there; nothing imported")
    if verification.modified and not allow_modified:
        raise ImportRefused(
            f"{source}: {len(verification.modified)} file(s) differ from SimCoPilot "
            f"{manifest.commit[:7]} (first: {verification.modified[0].path}); "
            "nothing imported; pass --allow-modified to import them anyway",
            verification,
        )


def _staging_dir(edition: Edition) -> Path:
    data_root = simcopilot_dir(edition.name).parent
    data_root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".simcopilot-staging-", dir=data_root))


def _install(
    staging: Path, manifest: Manifest, verification: Verification, source: str, kind: str, allow_modified: bool,
    edition: Edition,
) -> ImportResult:
    """Write ``source.json`` into ``staging`` and swap it in place of the edition's current copy."""
    record = {
        "repository": edition.repository,
        "edition": edition.name,
        "commit": manifest.commit,
        "imported_at": utcnow().isoformat(),
        "source": source,
        "kind": kind,
        "allow_modified": allow_modified,
        "runner_version": __version__,
        "verification": verification.summary(),
    }
    (staging / "source.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    # The copy keeps the manifest it was checked against: the loader reads it to tell which
    # data files each program needs.
    shutil.copyfile(manifest.source, staging / INSTALLED_MANIFEST)
    dest = simcopilot_dir(edition.name)
    # Two renames on one file system: a reader sees the old copy or the new one, never half.
    old = Path(tempfile.mkdtemp(prefix=".simcopilot-old-", dir=dest.parent))
    if dest.exists():
        dest.rename(old)  # onto the empty folder mkdtemp made
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return ImportResult(dest=dest, source=source, kind=kind, verification=verification, manifest=manifest)


def read_source_record(root: Path | None = None, edition: str | None = None) -> dict[str, object] | None:
    """The ``source.json`` of the installed copy (of ``edition``), or ``None`` if there is none."""
    path = (root or simcopilot_dir(edition)) / "source.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


__all__ = [
    "ImportRefused",
    "ImportResult",
    "Mismatch",
    "URL_ENV",
    "default_url",
    "fetch_simcopilot",
    "import_simcopilot",
    "read_source_record",
]
