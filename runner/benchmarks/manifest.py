"""The file manifest of a pinned SimCoPilot commit: git blob ids, checked offline.

A git blob id is the SHA-1 of ``blob <size>\\0`` followed by the content, so a file can be
checked against the pinned commit whatever brought it (tarball, zip, git checkout, copy).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import UserError

SIMCOPILOT_COMMIT = "90c5560e5c360b8da9fa0631998a17b7a1a5f0b4"
BUNDLED_MANIFEST = Path(__file__).resolve().parent / "simcopilot-90c5560-files.tsv"
MANIFEST_ENV = "RUNNER_SIMCOPILOT_MANIFEST"
_HEADER = ["path", "git_blob_sha1", "size_bytes"]
_COMMIT_IN_NAME = re.compile(r"simcopilot-([0-9a-f]{7,40})-files\.tsv")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    """One file of the pinned commit: its repository path, blob id and size (``None`` if unknown)."""

    path: str
    blob_sha1: str
    size: int | None


@dataclass(frozen=True)
class Manifest:
    """Every kept file of one commit, by repository path."""

    commit: str
    entries: dict[str, ManifestEntry]
    source: Path

    def under(self, folder: str) -> list[ManifestEntry]:
        """The entries inside ``folder`` (a repository path, any depth), sorted by path."""
        prefix = folder.rstrip("/") + "/"
        return [e for p, e in sorted(self.entries.items()) if p.startswith(prefix)]


@dataclass(frozen=True)
class Mismatch:
    """A file whose content is not the pinned commit's."""

    path: str
    expected_sha1: str
    actual_sha1: str
    expected_size: int | None
    actual_size: int


@dataclass
class Verification:
    """What a copy holds compared with the manifest."""

    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    modified: list[Mismatch] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every manifest file is present with the pinned content."""
        return not self.missing and not self.modified

    def summary(self) -> dict[str, object]:
        """Counts and paths, as stored in ``source.json``."""
        return {
            "ok": len(self.ok),
            "missing": sorted(self.missing),
            "modified": sorted(m.path for m in self.modified),
        }


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data`` (what ``git hash-object`` prints)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def file_blob_sha1(path: Path) -> str:
    """The git blob id of a file, read in chunks."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(path: Path = BUNDLED_MANIFEST, commit: str = SIMCOPILOT_COMMIT) -> Manifest:
    """Parse a ``path<TAB>git_blob_sha1<TAB>size_bytes`` file (size may be ``unknown``)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the file manifest ({exc.strerror})") from None
    if not lines or lines[0].split("\t") != _HEADER:
        raise UserError(f"{path}: line 1 must be the header {' '.join(_HEADER)!r}")
    entries: dict[str, ManifestEntry] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != 3:
            raise UserError(f"{path}: line {number} has {len(cells)} columns, expected 3")
        rel, sha, size = cells
        if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            raise UserError(f"{path}: line {number}: {sha!r} is not a 40-digit git blob id")
        if size != "unknown" and not size.isdigit():
            raise UserError(f"{path}: line {number}: size {size!r} is neither a number nor 'unknown'")
        if rel.startswith("/") or ".." in rel.split("/"):
            raise UserError(f"{path}: line {number}: {rel!r} is not a relative repository path")
        entries[rel] = ManifestEntry(rel, sha, None if size == "unknown" else int(size))
    return Manifest(commit=commit, entries=entries, source=path)


def active_manifest(edition: str | None = None) -> Manifest:
    """The manifest an import of ``edition`` is checked against: ``$RUNNER_SIMCOPILOT_MANIFEST`` or the bundled one.

    A replacement named ``simcopilot-<commit>-files.tsv`` records that commit; any other name
    records ``unknown``.
    """
    from runner.benchmarks.editions import get_edition

    pinned = get_edition(edition)
    env = os.environ.get(MANIFEST_ENV)
    if not env:
        return load_manifest(pinned.manifest, commit=pinned.commit)
    path = Path(env).expanduser()
    match = _COMMIT_IN_NAME.fullmatch(path.name)
    return load_manifest(path, commit=match.group(1) if match else "unknown")


def check_file(entry: ManifestEntry, path: Path) -> Mismatch | None:
    """``None`` when ``path`` holds the entry's content, else what differs."""
    actual = file_blob_sha1(path)
    if actual == entry.blob_sha1:
        return None
    return Mismatch(entry.path, entry.blob_sha1, actual, entry.size, path.stat().st_size)


def verify_tree(root: Path, manifest: Manifest) -> Verification:
    """Check every manifest file under ``root`` (a repository's top folder)."""
    report = Verification()
    for rel, entry in sorted(manifest.entries.items()):
        path = root / rel
        if not path.is_file():
            report.missing.append(rel)
            continue
        mismatch = check_file(entry, path)
        if mismatch is None:
            report.ok.append(rel)
        else:
            report.modified.append(mismatch)
    return report
