"""A matrix's lock: the Hub commit and every file (size, sha256) each of its Hugging Face sources resolved to.

``matrices/NAME.toml`` has its lock beside it, ``matrices/NAME.lock``, in TOML: the matrix is TOML, its
diffs review line by line, and uv.lock and Cargo.lock use it for the same job. ``runner models lock``
writes it (``runner.serving.lock_hub.resolve``), ``--check`` compares it with the Hub and the matrix
(``runner.serving.lock_hub.check``); preparation downloads the locked commit's locked files and checks each
against its size and sha256 (``runner.serving.models``), and the plan names each cell's locked commit.

A lock entry matches its matrix source when repo, revision, filename and allow_patterns are equal. A
split GGUF (``X-00001-of-00003.gguf`` named as ``filename``) locks every part as its files.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runner.errors import UserError
from runner.matrix import Matrix, ModelSource
# split GGUF names are the runtimes' convention (llama.cpp's); the lock and the Hub download follow it
from runner.runtimes.base import split_parts

_STRICT = ConfigDict(extra="forbid", populate_by_name=True)
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
VERSION = 1


class LockedFile(BaseModel):
    """One file of a locked source: its size, and the hashes that identify its content."""

    model_config = _STRICT

    path: str  # relative to the repository's root
    #: bytes; None where the page that proved the file showed only a rounded size (``size_note``): preparation
    #: takes the exact size from the Hub's metadata at the locked commit
    size: int | None = Field(None, ge=0)
    sha256: str | None = None  # the LFS oid (sha256 of the content); None for a small non-LFS file not hashed
    blob: str | None = None  # the git blob id (of the LFS pointer, for an LFS file)
    evidence: str | None = None  # the page its size and sha256 were read on
    size_note: str | None = None
    note: str | None = None

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.fullmatch(value.lower()):
            raise ValueError("a sha256 is 64 hexadecimal digits")
        return value.lower() if value else value

    @field_validator("blob")
    @classmethod
    def _blob(cls, value: str | None) -> str | None:
        if value is not None and not _HEX40.fullmatch(value.lower()):
            raise ValueError("a git blob id is 40 hexadecimal digits")
        return value.lower() if value else value


class LockedSource(BaseModel):
    """One ``hf`` source of the matrix (``models.<model>.quantizations.<quantization>``) as the Hub resolved it."""

    model_config = _STRICT

    model: str
    quantization: str
    repo: str
    revision: str  # as the matrix names it: a branch, a tag or a commit
    commit: str  # what it resolved to
    filename: str = ""  # the matrix's ``filename`` ("" when none)
    allow_patterns: list[str] = Field(default_factory=list)  # the matrix's ([] when none)
    gated: bool
    license: str | None = None
    checked: str  # the date of the check, YYYY-MM-DD
    checked_on: Literal["hub-api", "hub-pages"]  # `runner models lock`, or by hand from the Hub's public pages
    evidence: str  # the page the commit was read on
    files: list[LockedFile] = Field(min_length=1)
    replaces: str | None = None  # the source this one replaced, where the matrix's original did not exist
    why: str | None = None
    #: whether ``files`` lists every file the selection takes at the commit; an entry read by hand from the
    #: Hub's pages may list fewer (a page cut short): preparation then lists the rest from the Hub's metadata
    #: at the locked commit, and checks every locked file against it
    complete: bool = True
    note: str | None = None

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not _HEX40.fullmatch(value.lower()):
            raise ValueError("a commit is 40 hexadecimal digits")
        return value.lower()

    @field_validator("checked", mode="before")
    @classmethod
    def _date(cls, value: object) -> object:
        if isinstance(value, datetime.date):  # TOML's bare date
            return value.isoformat()
        if isinstance(value, str):
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                raise ValueError("a date is written YYYY-MM-DD") from None
        return value

    @property
    def key(self) -> str:
        """The matrix key path of its source: ``models.<model>.quantizations.<quantization>``."""
        return f"models.{self.model}.quantizations.{self.quantization}"

    def differences(self, source: ModelSource) -> list[str]:
        """How the matrix's ``source`` differs from what this entry locked (empty: it matches)."""
        pairs = (("repo", self.repo, source.repo), ("revision", self.revision, source.revision),
                 ("filename", self.filename, source.filename or ""),
                 ("allow_patterns", self.allow_patterns, source.allow_patterns or []))
        return [f"{name} {locked!r} in the lock, {now!r} in the matrix" for name, locked, now in pairs if locked != now]


class Lock(BaseModel):
    """A matrix's lock file: one entry per Hugging Face source its cells use."""

    model_config = _STRICT

    version: Literal[1] = VERSION
    matrix: str  # the matrix file's name, beside the lock
    sources: list[LockedSource] = Field(default_factory=list, alias="source")

    def entry(self, model: str, quantization: str) -> LockedSource | None:
        """The entry for ``models.<model>.quantizations.<quantization>``, if the lock has one."""
        return next((s for s in self.sources if (s.model, s.quantization) == (model, quantization)), None)


ProblemKind = Literal["no-lock", "not-locked", "stale", "unused", "missing-repository", "missing-revision",
                      "missing-file", "moved", "changed-file", "gated", "unreachable", "incomplete",
                      "checkpoint"]


class Problem(BaseModel):
    """One finding of ``runner models lock --check``: where (file and matrix key), what, and what to do."""

    where: str  # e.g. "matrices/paper.toml: models.llama3-70b.quantizations.q8_0"
    kind: ProblemKind
    message: str

    @property
    def line(self) -> str:
        """The finding as one line."""
        return f"{self.where}: {self.message}"


# -- files ------------------------------------------------------------------------------------------
def lock_path(matrix: Matrix | Path | str) -> Path:
    """Where a matrix's lock lives: ``<stem>.lock`` beside the matrix file."""
    path = Path(matrix.path or matrix.name) if isinstance(matrix, Matrix) else Path(matrix)
    return path.with_suffix(".lock")


def load_lock(matrix: Matrix | Path | str) -> Lock | None:
    """The lock beside ``matrix`` (None: there is none); a malformed one is a ``UserError`` naming file and field."""
    from runner.matrix.load import _validation_lines

    if isinstance(matrix, Matrix) and matrix.path is None:
        return None  # a matrix built in memory has no file to sit beside
    path = lock_path(matrix)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read ({exc}); restore it, or write it again with "
                        f"`runner models lock {path.with_suffix('.toml')}`") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}; write it again with "
                        f"`runner models lock {path.with_suffix('.toml')}`") from None
    try:
        lock = Lock.model_validate(document)
    except ValidationError as exc:
        raise UserError("\n".join(_validation_lines(str(path), exc))) from None
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(lock.sources):
        if (entry.model, entry.quantization) in seen:
            raise UserError(f"{path}: source[{index}]: {entry.key} is locked twice; keep one entry")
        seen.add((entry.model, entry.quantization))
    return lock


def write_lock(lock: Lock, matrix: Matrix | Path | str) -> Path:
    """Write ``lock`` beside ``matrix`` as TOML (tomli-w); returns its path."""
    import tomli_w

    path = lock_path(matrix)
    matrix_file = path.with_suffix(".toml")
    head = (f"# written by `runner models lock {matrix_file}`; check with "
            f"`runner models lock {matrix_file} --check`\n")
    body = tomli_w.dumps(lock.model_dump(mode="json", by_alias=True, exclude_none=True))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(head + body, encoding="utf-8")
    tmp.replace(path)
    return path


# -- which files, which sources ---------------------------------------------------------------------
def wanted_files(names: list[str], filename: str | None, allow_patterns: list[str] | None) -> list[str]:
    """The names a source selects from a repository's ``names``: ``filename`` (every part of a split GGUF),
    else those matching ``allow_patterns`` (all when none); the caller names what ``filename`` lacks."""
    if filename:
        present = set(names)
        return [name for name in split_parts(filename) if name in present]
    return [name for name in names if not allow_patterns or any(fnmatch.fnmatch(name, p) for p in allow_patterns)]


def where(matrix: Matrix, model: str, quantization: str) -> str:
    """``<matrix file>: models.<model>.quantizations.<quantization>``, how every finding starts."""
    return f"{matrix.path or matrix.name}: models.{model}.quantizations.{quantization}"


def hub_sources(matrix: Matrix) -> list[tuple[str, str, ModelSource]]:
    """Every ``hf`` source the cells use, directly, as the ``of`` of a derived source, or as a draft model."""
    used: dict[tuple[str, str], None] = {}
    for cell in matrix.cells:
        pairs = [(cell.model, cell.quantization)]
        draft = matrix.model(cell).draft
        if cell.techniques.get("spec") == "draft" and draft is not None:
            pairs.append((draft.model, draft.quantization))
        for model, quant in list(pairs):
            tokenizer = matrix.models[model].quantizations[quant].tokenizer_of
            if tokenizer is not None:  # its tokenizer files come from that source
                pairs.append((model, tokenizer))
        for model, quant in pairs:
            seen = set()
            while quant not in seen:
                seen.add(quant)
                used[(model, quant)] = None
                source = matrix.models[model].quantizations[quant]
                if source.kind not in ("dequantize", "quantize"):
                    break
                quant = source.of
    # in the matrix's own order, so that the lock reads like the matrix
    return [(model, quant, source) for model, spec in matrix.models.items()
            for quant, source in spec.quantizations.items() if (model, quant) in used and source.kind == "hf"]


def matrix_problems(matrix: Matrix, lock: Lock | None) -> list[Problem]:
    """Where ``lock`` no longer matches ``matrix``: a source without an entry, an entry that differs from its
    source, an entry no cell uses. No lock at all is one problem (kind ``no-lock``) when the matrix has hub sources."""
    name = matrix.path or matrix.name
    redo = f"run `runner models lock {name}`"
    sources = hub_sources(matrix)
    if lock is None:
        return [Problem(where=str(lock_path(matrix)), kind="no-lock",
                        message=f"no lock for the {len(sources)} Hugging Face sources of {name}; {redo}")] \
            if sources else []
    problems = []
    for model, quant, source in sources:
        entry = lock.entry(model, quant)
        if entry is None:
            problems.append(Problem(where=where(matrix, model, quant), kind="not-locked",
                                    message=f"not in {lock_path(matrix).name}: the lock no longer matches its "
                                            f"matrix; {redo}"))
        elif differences := entry.differences(source):
            problems.append(Problem(where=where(matrix, model, quant), kind="stale",
                                    message=f"the lock no longer matches its matrix ({'; '.join(differences)}); "
                                            f"{redo}"))
    used = {(model, quant) for model, quant, _ in sources}
    for entry in lock.sources:
        if (entry.model, entry.quantization) not in used:
            problems.append(Problem(where=f"{lock_path(matrix)}: {entry.key}", kind="unused",
                                    message=f"no cell of {name} uses this source: the lock no longer matches its "
                                            f"matrix; {redo}"))
    return problems


def locked_entry(matrix: Matrix, model: str, quantization: str) -> LockedSource | None:
    """The lock's entry for a ``hf`` source, None when the matrix has no lock or the lock no entry for it;
    a ``UserError`` when the entry no longer matches the source (the lock is stale)."""
    lock = load_lock(matrix)
    entry = lock.entry(model, quantization) if lock is not None else None
    if entry is None:
        return None
    differences = entry.differences(matrix.models[model].quantizations[quantization])
    if differences:
        raise UserError(f"{where(matrix, model, quantization)}: lock stale: {'; '.join(differences)}; run "
                        f"`runner models lock {matrix.path or matrix.name}`")
    return entry


class LockStatus(BaseModel):
    """What the plan shows of a matrix's lock: per hub source its locked commit, and what is stale."""

    commits: dict[str, str | None] = Field(default_factory=dict)  # "model:quant" -> locked commit (None: not locked)
    problems: list[str] = Field(default_factory=list)  # "lock stale: ..." lines; the run cannot start

    def label(self, matrix: Matrix, model: str, quantization: str) -> str:
        """``locked 0123abcd`` or ``not locked`` for the hub source a cell's weights come from; "" for another kind."""
        root = _root(matrix, model, quantization)
        if root not in self.commits:
            return ""
        commit = self.commits[root]
        return f"locked {commit[:8]}" if commit else "not locked"


def _root(matrix: Matrix, model: str, quantization: str) -> str:
    """``model:quant`` of the source a derived source is made from (itself for any other kind)."""
    seen, source = {quantization}, matrix.models[model].quantizations[quantization]
    while source.kind in ("dequantize", "quantize") and source.of not in seen:
        quantization = source.of
        seen.add(quantization)
        source = matrix.models[model].quantizations[quantization]
    return f"{model}:{quantization}"


def lock_status(matrix: Matrix) -> LockStatus:
    """The plan's view of the lock: each hub source's locked commit, and a problem per stale entry
    (a malformed lock is a ``UserError``). No lock at all is no problem: each source is ``not locked``."""
    lock = load_lock(matrix)
    status = LockStatus()
    for model, quant, source in hub_sources(matrix):
        entry = lock.entry(model, quant) if lock is not None else None
        # a stale entry locks nothing the matrix now asks for
        fresh = entry is not None and not entry.differences(source)
        status.commits[f"{model}:{quant}"] = entry.commit if fresh else None
    if lock is not None:
        status.problems = [f"lock stale: {p.line}" for p in matrix_problems(matrix, lock)]
    return status
