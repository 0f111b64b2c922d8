"""Model files from the Hugging Face Hub, for ``runner.serving.models``: a locked source at its locked commit, every
locked file checked against its size and sha256 (``runner.serving.lock``); an unlocked one at its revision as it
is now, with a warning. A split GGUF comes whole: every part in one folder, beside the first.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from runner.errors import UserError
from runner.matrix import Matrix, ModelSource
from runner.serving.model_files import (_DOWNLOADED_MARK, _read_json, check_free_space, forget_sha256, models_dir,
                                        sha256_file)

log = logging.getLogger(__name__)


def _hub_errors():
    from huggingface_hub import errors

    return errors


def _hub_dest(source: ModelSource, commit: str | None = None) -> Path:
    # one folder per repo and revision (EXL2 repos keep each bpw on its own branch); a locked source's
    # folder is named by its commit, which never changes what it holds
    return models_dir() / "hub" / source.repo.replace("/", "--") / (commit or source.revision.replace("/", "--"))


def _hub_mark(source: ModelSource, dest: Path) -> tuple[dict, Path]:
    wanted = {"repo": source.repo, "revision": source.revision, "filename": source.filename,
              "allow_patterns": source.allow_patterns}
    return wanted, dest / f".{_DOWNLOADED_MARK}-{hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:12]}"


def hub_cached(matrix: Matrix, key: str, quant: str) -> tuple[Path | None, int | None]:
    """Where an ``hf`` source's download is when it is complete (its locked files at their locked sizes, or an
    unlocked download's marker), and the locked files' bytes; (None, None) when it is not there, and for a lock
    that no longer matches the matrix."""
    from runner.serving.lock import locked_entry

    source = matrix.models[key].quantizations[quant]
    try:
        entry = locked_entry(matrix, key, quant)
    except UserError:
        return None, None  # the plan says the lock is stale
    if entry is not None:
        dest = _hub_dest(source, entry.commit)
        entry = _completion(dest, entry) or entry
        whole = entry.complete and all((dest / f.path).is_file() and f.size is not None
                                       and (dest / f.path).stat().st_size == f.size for f in entry.files)
        path = dest / entry.filename if entry.filename else dest
        return (path, sum(f.size for f in entry.files)) if whole else (None, None)
    dest = _hub_dest(source)
    _, mark = _hub_mark(source, dest)
    return ((dest / source.filename if source.filename else dest) if mark.is_file() else None), None


def from_hub(matrix: Matrix, source: ModelSource, key: str, quant: str,
              where: str) -> tuple[Path, str, str | None]:
    """The source's files from the Hub: at its locked commit, each checked against the lock, where the matrix
    has a lock entry for it; else at its revision as it is now (a warning). (path, commit, locked commit)."""
    from runner.serving.lock import locked_entry

    entry = locked_entry(matrix, key, quant)
    if entry is not None:
        return _from_lock(matrix, source, entry, where), entry.commit, entry.commit
    log.warning("%s: not locked: %s@%s is downloaded at whatever commit it points to now; run `runner models "
                "lock %s` to pin it", where, source.repo, source.revision, matrix.path or matrix.name)
    path, commit = _from_hub_unlocked(source, where)
    return path, commit, None


def _hub_access() -> tuple[str | None, str]:
    from runner.serving.lock_hub import hub_endpoint, hub_token

    return hub_token(), hub_endpoint()


def _from_lock(matrix: Matrix, source: ModelSource, entry, where: str) -> Path:
    """Every locked file at the locked commit (never the branch) into ``models/hub/<repo>/<commit>``, all
    parts of a split GGUF in one folder (llama.cpp finds the rest beside the first), each file checked."""
    from huggingface_hub import hf_hub_download

    from runner.serving.lock import lock_path

    errors = _hub_errors()
    dest = _hub_dest(source, entry.commit)
    ref = f"{source.repo}@{entry.commit[:12]}"
    if not entry.complete or any(f.size is None for f in entry.files):
        entry = _completion(dest, entry) or _complete(entry, where, ref, dest, lock_path(matrix))
    missing = [f for f in entry.files
               if not ((dest / f.path).is_file() and (dest / f.path).stat().st_size == f.size)]
    if missing:
        token, endpoint = _hub_access()
        present = sum((dest / f.path).stat().st_size for f in missing if (dest / f.path).is_file())
        check_free_space(dest, max(sum(f.size or 0 for f in missing) - present, 0), what=f"{where} ({ref})")
        dest.mkdir(parents=True, exist_ok=True)
        log.info("downloading %d locked file(s) of %s into %s", len(missing), ref, dest)
        for file in missing:
            try:
                hf_hub_download(source.repo, file.path, revision=entry.commit, local_dir=dest, token=token,
                                endpoint=endpoint)
            except errors.GatedRepoError:
                raise UserError(_gated_message(where, ref, token)) from None
            except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError,
                    getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)) as exc:
                raise UserError(f"{where}: {ref}/{file.path}, locked in {lock_path(matrix)}, is not on the Hub at "
                                f"{endpoint} ({type(exc).__name__}); run `runner models lock "
                                f"{matrix.path or matrix.name} --check`") from None
            except errors.HTTPError as exc:
                raise UserError(f"{where}: downloading {ref}/{file.path} failed ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:300]}); rerun to resume") from None
    for file in entry.files:
        _check_locked(dest / file.path, file, f"{where}: {ref}/{file.path}", lock_path(matrix))
    return dest / entry.filename if entry.filename else dest


#: beside a hand-made lock entry's download: the entry as the Hub's metadata at the locked commit completed it
_COMPLETED_MARK = ".runner-lock-completed.json"


def _completion(dest: Path, entry):
    """The completion of ``entry`` recorded beside an earlier download of it (None: none yet)."""
    from runner.serving.lock import LockedSource

    recorded = _read_json(dest / _COMPLETED_MARK)
    if recorded.get("commit") != entry.commit or recorded.get("from") != entry.model_dump(mode="json"):
        return None
    return LockedSource.model_validate(recorded["entry"])


def _complete(entry, where: str, ref: str, dest: Path, lock: Path):
    """A lock entry read by hand from the Hub's pages (files missing, sizes rounded) completed from the Hub's
    metadata at the locked commit: a commit fixes every file's content (an LFS pointer holds its sha256), so
    the commit still decides what is downloaded; every sha256 the lock holds must equal the Hub's."""
    from huggingface_hub import HfApi

    from runner.serving.lock import LockedFile, wanted_files

    errors = _hub_errors()
    token, endpoint = _hub_access()
    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(entry.repo, revision=entry.commit,
                                                                files_metadata=True, timeout=30)
    except errors.GatedRepoError:
        raise UserError(_gated_message(where, ref, token)) from None
    except errors.HTTPError as exc:
        raise UserError(f"{where}: {ref} was locked from the Hub's pages and needs the Hub's metadata at that "
                        f"commit to complete its file list, which {endpoint} did not give ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}); check the network, or run `runner models lock`") from None
    siblings = {s.rfilename: s for s in info.siblings or []}
    locked = {f.path: f for f in entry.files}
    files = []
    for name in wanted_files(sorted(siblings), entry.filename or None, entry.allow_patterns or None):
        sibling = siblings[name]
        size = sibling.size if sibling.size is not None else (sibling.lfs.size if sibling.lfs else None)
        sha256 = sibling.lfs.sha256 if sibling.lfs else None
        mine = locked.pop(name, None)
        if mine is not None and mine.size is not None and size is not None and mine.size != size:
            raise UserError(f"{where}: {ref}/{name}: {lock} locks {mine.size} bytes, the Hub has {size} at the same "
                            "commit: the lock's evidence was wrong; run `runner models lock` and review the change")
        if mine is not None and mine.sha256 and sha256 and mine.sha256 != sha256:
            raise UserError(f"{where}: {ref}/{name}: {lock} locks sha256 {mine.sha256}, the Hub has {sha256} at the "
                            "same commit: the lock's evidence was wrong; run `runner models lock` and review the change")
        files.append(LockedFile(path=name, size=size, sha256=sha256 or (mine.sha256 if mine else None),
                                blob=sibling.blob_id, evidence=mine.evidence if mine else None))
    if locked:
        raise UserError(f"{where}: {ref}: {lock} locks {', '.join(sorted(locked)[:3])}, which the Hub does not "
                        "list at that commit; run `runner models lock --check`")
    completed = entry.model_copy(update={"files": files, "complete": True})
    dest.mkdir(parents=True, exist_ok=True)
    (dest / _COMPLETED_MARK).write_text(json.dumps({"commit": entry.commit, "from": entry.model_dump(mode="json"),
                                                    "entry": completed.model_dump(mode="json")}), encoding="utf-8")
    log.info("%s: completed %d locked file(s) to %d from the Hub's metadata at %s", where, len(entry.files),
             len(files), entry.commit[:12])
    return completed


def git_blob_id(path: Path) -> str:
    """Git's object id of the file as a blob (what the Hub lists as ``blobId`` for a non-LFS file)."""
    digest = hashlib.sha1(b"blob %d\x00" % path.stat().st_size)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_locked(path: Path, file, what: str, lock: Path) -> None:
    """``path`` against its lock entry: size, then sha256 (else, for a small non-LFS file, its git blob id);
    a file that differs is deleted, so that the next preparation downloads it afresh."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        found, expected = f"{size} bytes", f"{file.size} bytes"
    elif file.sha256 and (digest := sha256_file(path)) != file.sha256:
        found, expected = f"sha256 {digest}", f"sha256 {file.sha256}"
    elif not file.sha256 and file.blob and (blob := git_blob_id(path)) != file.blob:
        found, expected = f"git blob {blob}", f"git blob {file.blob}"
    else:
        return
    forget_sha256(path)
    path.unlink()
    raise UserError(f"{what}: the download ({path}) has {found}, but {lock} locks {expected}; it was deleted: "
                    "prepare again to download it afresh, and if it differs again the Hub's file changed "
                    "(`runner models lock --check` says)")


def _from_hub_unlocked(source: ModelSource, where: str) -> tuple[Path, str]:
    """Download a repo file (every part of a split GGUF) or folder at the revision as it is now, into
    ``models/hub/<repo>/<revision>``, resumably; (path, commit)."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    from runner.serving.lock import split_parts, wanted_files

    errors = _hub_errors()
    # a marker per file selection records a completed download so that a rerun needs no hub
    dest = _hub_dest(source)
    wanted, mark = _hub_mark(source, dest)
    done = _read_json(mark)
    if done.get("wanted") == wanted:  # already complete: no hub needed
        path = dest / source.filename if source.filename else dest
        return path, done["commit"]
    token, endpoint = _hub_access()
    ref = f"{source.repo}@{source.revision}"
    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(source.repo, revision=source.revision,
                                                                files_metadata=True, timeout=30)
    except errors.GatedRepoError:
        raise UserError(_gated_message(where, ref, token)) from None
    except errors.RevisionNotFoundError:
        raise UserError(f"{where}.revision = {source.revision!r}: {source.repo} has no such revision; "
                        "pin an existing commit or branch") from None
    except errors.RepositoryNotFoundError:
        raise UserError(f"{where}.repo = {source.repo!r}: no such repository at {endpoint} (or it is private: "
                        "set HF_TOKEN)") from None
    except errors.HTTPError as exc:
        raise UserError(f"{where}: cannot reach the Hugging Face hub at {endpoint} for {ref} "
                        f"({type(exc).__name__}: {exc}); check the network or HF_ENDPOINT, or download "
                        "the files yourself and use kind = 'path'") from None
    if info.gated and not token:
        raise UserError(_gated_message(where, ref, token))
    siblings = {s.rfilename: s for s in info.siblings or []}
    names = wanted_files(sorted(siblings), source.filename, source.allow_patterns)
    if not names or (source.filename and len(names) < len(split_parts(source.filename))):
        lacking = next((n for n in split_parts(source.filename) if n not in siblings), None) \
            if source.filename else None
        raise UserError(f"{where}: {ref} has no file matching "
                        f"{lacking or source.filename or source.allow_patterns}; fix `filename` or `allow_patterns`")
    files = [siblings[name] for name in names]
    present = sum((dest / s.rfilename).stat().st_size for s in files if (dest / s.rfilename).is_file())
    needed = max(sum(s.size or 0 for s in files) - present, 0)
    check_free_space(dest, needed, what=f"{where} ({ref})")
    dest.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (%.2f GiB) into %s", ref, needed / 1024**3, dest)
    try:
        if source.filename:  # every part of a split GGUF, beside the first
            for name in names:
                hf_hub_download(source.repo, name, revision=info.sha, local_dir=dest, token=token, endpoint=endpoint)
            path = dest / source.filename
        else:
            path = Path(snapshot_download(source.repo, revision=info.sha, local_dir=dest, token=token,
                                          allow_patterns=source.allow_patterns, endpoint=endpoint))
    except errors.GatedRepoError:
        raise UserError(_gated_message(where, ref, token)) from None
    except errors.HTTPError as exc:
        raise UserError(f"{where}: downloading {ref} failed ({type(exc).__name__}: {exc}); rerun to "
                        "resume") from None
    mark.write_text(json.dumps({"wanted": wanted, "commit": info.sha}), encoding="utf-8")
    return path, info.sha


def _gated_message(where: str, ref: str, token: str | None) -> str:
    if token:
        return (f"{where}: {ref} is gated and HF_TOKEN has no access; accept the model's license on "
                "its Hugging Face page with the token's account")
    return (f"{where}: {ref} is gated; accept its license on its Hugging Face page and set HF_TOKEN "
            "to a token of that account")
