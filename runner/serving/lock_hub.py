"""The Hub's side of a matrix's lock (``runner.serving.lock``): resolve each Hugging Face source to a commit and its
files through huggingface_hub's API, and check a lock against what the Hub holds now. Metadata only: nothing
is downloaded, so ``--check`` takes seconds.

Every call names its endpoint (``HF_ENDPOINT``, read when called: huggingface_hub reads it once, at
import) and its token (``HF_TOKEN``). A source that does not resolve is one ``Problem`` naming the matrix
key and what the Hub has instead: similar repositories, the repository's branches and tags, or the
nearest file names.
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.errors import UserError
from runner.matrix import Matrix, ModelSource
from runner.serving.lock import (Lock, LockedFile, LockedSource, Problem, ProblemKind, hub_sources, load_lock,
                                 lock_path, matrix_problems, split_parts, wanted_files, where)

DEFAULT_ENDPOINT = "https://huggingface.co"
#: seconds per API call: a check of twenty sources stays within seconds even on a slow link
TIMEOUT_S = 15.0
#: sources resolved at once
WORKERS = 8


def hub_endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT`` as it is now, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_token() -> str | None:
    """``HF_TOKEN`` when set (gated repositories' files need it; their metadata does not)."""
    return os.environ.get("HF_TOKEN") or None


class _Failure(Exception):
    """A source that does not resolve: carries its one problem."""

    def __init__(self, problem: Problem):
        super().__init__(problem.line)
        self.problem = problem


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class _Hub:
    """huggingface_hub's API at one endpoint, turning its errors into problems naming the matrix key."""

    def __init__(self, endpoint: str | None = None, token: str | None = None):
        from huggingface_hub import HfApi, errors

        self.endpoint = (endpoint or hub_endpoint()).rstrip("/")
        self.token = token if token is not None else hub_token()
        self.api = HfApi(endpoint=self.endpoint, token=self.token)
        self.errors = errors

    def info(self, at: str, repo: str, revision: str):
        """The repository at ``revision`` with every file's size, LFS sha256 and blob id; ``_Failure`` if not."""
        errors = self.errors
        try:
            return self.api.model_info(repo, revision=revision, files_metadata=True, timeout=TIMEOUT_S)
        except errors.GatedRepoError:
            access = "HF_TOKEN has no access" if self.token else "no HF_TOKEN is set"
            raise _Failure(Problem(where=at, kind="gated", message=(
                f"{repo} is gated and the Hub refuses even its metadata ({access}); accept its licence on "
                f"{self.endpoint}/{repo} and set HF_TOKEN to a token of that account"))) from None
        except errors.RevisionNotFoundError:
            raise _Failure(Problem(where=at, kind="missing-revision", message=(
                f"revision = {revision!r}: {repo} has no such branch, tag or commit; {self._refs(repo)}; "
                "pin one of them (a commit is best)"))) from None
        except errors.RepositoryNotFoundError:
            private = "" if self.token else ", or it is private: set HF_TOKEN"
            raise _Failure(Problem(where=at, kind="missing-repository", message=(
                f"repo = {repo!r}: no such repository at {self.endpoint}{private}; {self._similar(repo)}; "
                "fix `repo`"))) from None
        except (errors.HfHubHTTPError, OSError, getattr(errors, "HTTPError", OSError)) as exc:
            raise _Failure(Problem(where=at, kind="unreachable", message=(
                f"cannot ask the Hub at {self.endpoint} about {repo}@{revision} ({type(exc).__name__}: "
                f"{_one_line(exc)[:300]}); check the network or HF_ENDPOINT"))) from None

    def _refs(self, repo: str) -> str:
        """The repository's branches and tags with their commits, for a revision it lacks."""
        try:
            refs = self.api.list_repo_refs(repo)
        except Exception as exc:  # noqa: BLE001 - only adds detail to a problem already found
            return f"its branches could not be listed ({type(exc).__name__})"
        branches = ", ".join(f"{r.name} ({r.target_commit[:12]})" for r in refs.branches) or "none"
        tags = ", ".join(f"{r.name} ({r.target_commit[:12]})" for r in refs.tags)
        return f"its branches: {branches}" + (f"; its tags: {tags}" if tags else "")

    def _similar(self, repo: str) -> str:
        """Repositories of the same owner named like ``repo``, for a repository the Hub lacks."""
        owner, _, name = repo.partition("/")
        word = name.replace("_", "-").split("-")[0] or name
        try:
            found = [m.id for m in self.api.list_models(author=owner, search=word, limit=200)]
        except Exception as exc:  # noqa: BLE001 - only adds detail to a problem already found
            return f"similar repositories could not be listed ({type(exc).__name__})"
        near = difflib.get_close_matches(repo, found, n=3, cutoff=0.5)
        if near:
            return "nearest repositories: " + ", ".join(near)
        return f"{owner} has no repository named like {word!r}" if not found else \
            f"{owner}'s repositories named like {word!r}: " + ", ".join(found[:5])


def _nearest(name: str, names: list[str]) -> str:
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.3)
    return ", ".join(near) if near else "none alike; it has " + ", ".join(names[:6])


def _license(info) -> str | None:
    card = info.card_data
    value = getattr(card, "license", None) if card is not None else None
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    if value == "other" and getattr(card, "license_name", None):
        value = card.license_name  # e.g. Mistral's "mnpl": "other" says nothing
    if not value:
        value = next((t.split(":", 1)[1] for t in info.tags or [] if t.startswith("license:")), None)
    return value


def _locked_file(hub: _Hub, repo: str, commit: str, sibling) -> LockedFile:
    lfs = sibling.lfs
    size = sibling.size if sibling.size is not None else (lfs.size if lfs else None)
    if size is None:
        raise UserError(f"{hub.endpoint}: the Hub gave no size for {repo}@{commit}/{sibling.rfilename}")
    return LockedFile(path=sibling.rfilename, size=size, sha256=lfs.sha256 if lfs else None,
                      blob=sibling.blob_id, evidence=f"{hub.endpoint}/{repo}/blob/{commit}/{sibling.rfilename}")


def _resolve_one(hub: _Hub, matrix: Matrix, model: str, quant: str, source: ModelSource,
                 previous: LockedSource | None, today: str) -> LockedSource:
    at = where(matrix, model, quant)
    info = hub.info(at, source.repo, source.revision)
    siblings = {s.rfilename: s for s in info.siblings or []}
    names = sorted(siblings)
    ref = f"{source.repo}@{source.revision} (commit {info.sha[:12]})"
    if source.filename:
        parts = split_parts(source.filename)
        missing = [p for p in parts if p not in siblings]
        if missing:
            which = (f"{missing[0]}, part {parts.index(missing[0]) + 1} of the split GGUF,"
                     if len(parts) > 1 else repr(source.filename))
            raise _Failure(Problem(where=at, kind="missing-file", message=(
                f"filename = {source.filename!r}: {ref} has no {which.rstrip(',')}; nearest names there: "
                f"{_nearest(missing[0], names)}; fix `filename`")))
    chosen = wanted_files(names, source.filename, source.allow_patterns)
    if not chosen:
        raise _Failure(Problem(where=at, kind="missing-file", message=(
            f"allow_patterns = {source.allow_patterns!r}: no file of {ref} matches; it has "
            f"{', '.join(names[:8]) or 'no file'}; fix `allow_patterns`")))
    files = [_locked_file(hub, source.repo, info.sha, siblings[name]) for name in chosen]
    kept = {f.path: f for f in previous.files} if previous is not None else {}
    files = [f.model_copy(update={"note": kept[f.path].note, "size_note": kept[f.path].size_note})
             if f.path in kept else f for f in files]
    return LockedSource(model=model, quantization=quant, repo=source.repo, revision=source.revision,
                        commit=info.sha, filename=source.filename or "", allow_patterns=source.allow_patterns or [],
                        gated=bool(info.gated), license=_license(info), checked=today, checked_on="hub-api",
                        evidence=f"{hub.endpoint}/{source.repo}/commit/{info.sha}", files=files,
                        replaces=previous.replaces if previous is not None else None,
                        why=previous.why if previous is not None else None)


def _each(jobs: list[Callable[[], object]]) -> list[object]:
    """Run ``jobs`` a few at a time; each result, or the ``_Failure`` it raised, in order."""
    def run(job):
        try:
            return job()
        except _Failure as failure:
            return failure

    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(jobs)), thread_name_prefix="hub") as pool:
        return list(pool.map(run, jobs))


def resolve(matrix: Matrix, *, endpoint: str | None = None, token: str | None = None,
            today: datetime.date | None = None) -> Lock:
    """Resolve every Hugging Face source the cells use to its commit and files; a ``UserError`` with one line
    per source that does not resolve. What an earlier lock wrote by hand (replaces, why, notes) is kept."""
    hub = _Hub(endpoint, token)
    try:
        previous = load_lock(matrix)
    except UserError:
        previous = None  # a malformed lock is what this command replaces
    day = (today or datetime.date.today()).isoformat()

    def job(model, quant, source):
        entry = previous.entry(model, quant) if previous is not None else None
        kept = entry if entry is not None and not entry.differences(source) else None
        return lambda: _resolve_one(hub, matrix, model, quant, source, kept, day)

    sources = hub_sources(matrix)
    results = _each([job(*s) for s in sources])
    failures = [r.problem.line for r in results if isinstance(r, _Failure)]
    if failures:
        raise UserError("\n".join(failures))
    name = (matrix.path.name if matrix.path else f"{matrix.name}.toml")
    return Lock(matrix=name, sources=results)


def _check_entry(hub: _Hub, matrix: Matrix, entry: LockedSource) -> list[Problem]:
    at = where(matrix, entry.model, entry.quantization)
    redo = f"run `runner models lock {matrix.path or matrix.name}`"
    found: list[Problem] = []

    def problem(kind: ProblemKind, message: str) -> None:
        found.append(Problem(where=at, kind=kind, message=message))

    now = hub.info(at, entry.repo, entry.revision)
    locked = now
    if now.sha != entry.commit:
        problem("moved", f"revision = {entry.revision!r}: locked commit {entry.commit}, branch {entry.revision} "
                         f"now at {now.sha}; review the change, then {redo} (or pin revision = "
                         f"{entry.commit!r})")
        try:
            locked = hub.info(at, entry.repo, entry.commit)
        except _Failure as failure:
            if failure.problem.kind != "missing-revision":
                raise
            problem("missing-revision", f"the locked commit {entry.commit} is no longer in {entry.repo} "
                                        f"(its history was rewritten); {redo}")
            return found
    if bool(locked.gated) != entry.gated:
        problem("gated", f"the lock says gated = {str(entry.gated).lower()}, the Hub now "
                         f"{str(bool(locked.gated)).lower()}; {redo}")
    siblings = {s.rfilename: s for s in locked.siblings or []}
    for file in entry.files:
        sibling = siblings.get(file.path)
        if sibling is None:
            problem("missing-file", f"the locked file {file.path} is not in {entry.repo} at commit "
                                    f"{entry.commit[:12]}; nearest names there: {_nearest(file.path, sorted(siblings))}")
            continue
        size = sibling.size if sibling.size is not None else (sibling.lfs.size if sibling.lfs else None)
        sha256 = sibling.lfs.sha256 if sibling.lfs else None
        changes = []
        if size is not None and file.size is not None and size != file.size:
            changes.append(f"size {file.size} locked, {size} on the Hub")
        if file.sha256 and sha256 and sha256 != file.sha256:
            changes.append(f"sha256 {file.sha256} locked, {sha256} on the Hub")
        if file.blob and sibling.blob_id and sibling.blob_id != file.blob:
            changes.append(f"blob {file.blob} locked, {sibling.blob_id} on the Hub")
        if changes:
            problem("changed-file", f"{file.path} at commit {entry.commit[:12]}: {'; '.join(changes)}")
    selected = wanted_files(sorted(siblings), entry.filename or None, entry.allow_patterns or None)
    unlocked = sorted(set(selected) - {f.path for f in entry.files})
    if unlocked and not entry.complete:
        problem("incomplete", f"the lock lists {len(entry.files)} of the {len(selected)} files the selection takes "
                              f"at commit {entry.commit[:12]} (read by hand from the Hub's pages); {redo} to "
                              "complete it")
    elif unlocked:
        problem("changed-file", f"the matrix's selection picks {', '.join(unlocked[:5])} at commit "
                                f"{entry.commit[:12]}, which the lock lacks; {redo}")
    if entry.filename and len(split_parts(entry.filename)) != len(entry.files):
        problem("changed-file", f"filename = {entry.filename!r} is a split GGUF of {len(split_parts(entry.filename))} "
                                f"parts, the lock has {len(entry.files)} files; {redo}")
    return found


#: the small files that hold a checkpoint's quantization settings (AutoGPTQ's, and transformers')
QUANT_CONFIG_FILES = ("quantize_config.json", "config.json")


def gptq_problem(settings: dict) -> str | None:
    """What vLLM 0.32.0 refuses in a GPTQ checkpoint's settings (``normalize_and_validate_gptq_desc_act``):
    activation reordering (desc_act) with groups; None where it serves it."""
    if settings.get("quant_method", "gptq") != "gptq":
        return None
    desc_act, group = settings.get("desc_act"), settings.get("group_size", -1)
    if desc_act and group != -1:
        return (f"its GPTQ settings say desc_act = true with group_size = {group}, which vLLM 0.32.0 refuses "
                "(\"GPTQ group activation ordering (desc_act=True) is no longer supported\"); choose a GPTQ "
                "checkpoint with desc_act = false")
    return None


def _checkpoint_problems(hub: _Hub, matrix: Matrix, entry: LockedSource) -> list[Problem]:
    """The served checkpoint's own settings against the runtime that serves it, read from its small config
    files at the locked commit: a vLLM GPTQ cell whose checkpoint vLLM would refuse at start."""
    if not any((c.model, c.quantization, c.runtime) == (entry.model, entry.quantization, "vllm")
               and c.quantization == "gptq" for c in matrix.cells):
        return []
    from huggingface_hub import hf_hub_download

    at = where(matrix, entry.model, entry.quantization)
    names = {f.path for f in entry.files}
    for name in QUANT_CONFIG_FILES:
        if entry.complete and name not in names:
            continue
        try:
            path = hf_hub_download(entry.repo, name, revision=entry.commit, token=hub.token, endpoint=hub.endpoint,
                                   cache_dir=tempfile.mkdtemp(prefix="runner-lock-"))
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except hub.errors.EntryNotFoundError:
            continue
        except (hub.errors.HfHubHTTPError, OSError, ValueError) as exc:
            return [Problem(where=at, kind="unreachable", message=(
                f"cannot read {name} of {entry.repo}@{entry.commit[:12]} to check its GPTQ settings "
                f"({type(exc).__name__}: {_one_line(exc)[:200]})"))]
        settings = data.get("quantization_config", data) if name == "config.json" else data
        why = gptq_problem(settings)
        if why:
            return [Problem(where=at, kind="checkpoint", message=f"{name} of {entry.repo}@{entry.commit[:12]}: {why}")]
        if name == "quantize_config.json" or "quantization_config" in data:
            return []
    return []


def check(matrix: Matrix, lock: Lock | None, *, endpoint: str | None = None,
          token: str | None = None) -> list[Problem]:
    """Compare ``lock`` with the Hub (a branch's commit now, each file's presence, size and sha256) and with
    ``matrix`` (an entry per source, each equal to its source); one problem per finding, metadata only."""
    hub = _Hub(endpoint, token)
    problems = matrix_problems(matrix, lock)
    day = datetime.date.today().isoformat()
    jobs: list[Callable[[], object]] = []
    for model, quant, source in hub_sources(matrix):
        entry = lock.entry(model, quant) if lock is not None else None
        if entry is not None and not entry.differences(source):
            jobs.append(lambda e=entry: _check_entry(hub, matrix, e) + _checkpoint_problems(hub, matrix, e))
        else:  # said above; whether the source resolves at all is said here
            jobs.append(lambda m=model, q=quant, s=source: _resolve_one(hub, matrix, m, q, s, None, day) and [])
    for result in _each(jobs):
        problems += [result.problem] if isinstance(result, _Failure) else result
    return problems


__all__ = ["check", "hub_endpoint", "hub_token", "lock_path", "resolve"]
