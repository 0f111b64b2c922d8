"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1 (the real Hub cannot be reached from the tests).

It answers what huggingface_hub asks, as the Hub answers it: a repository at a revision with its files'
sizes, LFS sha256 and git blob ids (``/api/models/{repo}/revision/{rev}?blobs=true``), its branches and tags
(``/api/models/{repo}/refs``), a search of repositories (``/api/models?author=&search=``) and a file's bytes
(``HEAD``/``GET /{repo}/resolve/{rev}/{path}``, with the ETag, X-Repo-Commit and Content-Length that
``hf_hub_download`` needs). Its errors are the Hub's: 401 ``RepoNotFound`` for a repository it lacks (the Hub
does not say whether a private one exists), 404 ``RevisionNotFound`` and ``EntryNotFound``, and for a gated
repository's files 401 ``GatedRepo`` without a token and 403 ``GatedRepo`` with one that has no access; a
gated repository's metadata is public, as on the Hub. Point huggingface_hub at it with ``HF_ENDPOINT``
(or ``endpoint=``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")


def git_blob_id(content: bytes) -> str:
    """Git's object id of a blob: sha1 over ``blob <size>\\0`` and the content."""
    return hashlib.sha1(b"blob %d\x00" % len(content) + content).hexdigest()


def lfs_pointer(content: bytes) -> bytes:
    """The LFS pointer git stores in place of a large file."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(content).hexdigest()}\n"
            f"size {len(content)}\n").encode()


@dataclass
class Repo:
    """One repository: its commits (each a whole tree of files), branches, tags, gating and licence."""

    id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    gated: str | bool = False  # "manual", "auto" or False
    license: str | None = "apache-2.0"
    readers: set[str] = field(default_factory=set)  # tokens with access to a gated repository's files
    #: serve this content for these paths instead of the commit's (a corrupt mirror, a replaced blob)
    served: dict[str, bytes] = field(default_factory=dict)
    #: refuse even the metadata of a gated repository (the Hub does not; a mirror might)
    private_metadata: bool = False

    def commit(self, files: dict[str, bytes], branch: str = "main") -> str:
        """Add a commit holding ``files`` on ``branch``; returns its id."""
        digest = hashlib.sha1(json.dumps({k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())})
                              .encode() + self.id.encode() + str(len(self.commits)).encode()).hexdigest()
        self.commits[digest] = dict(files)
        self.branches[branch] = digest
        return digest

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        return revision if revision in self.commits else None


class Hub:
    """The stand-in's state: repositories, and every request it answered (method, path)."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    def repo(self, repo_id: str, **kwargs) -> Repo:
        self.repos[repo_id] = Repo(id=repo_id, **kwargs)
        return self.repos[repo_id]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "Hub":
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="hub-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def downloads(self) -> list[str]:
        """The paths of every file request (HEAD or GET on /resolve/)."""
        return [path for _, path in self.requests if "/resolve/" in path]


class _Handler(BaseHTTPRequestHandler):
    state: Hub

    def log_message(self, *args):  # noqa: D401 - quiet
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
               content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._reply(status, body, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})})

    def _token(self) -> str | None:
        value = self.headers.get("Authorization") or ""
        return value.removeprefix("Bearer ").strip() or None

    def do_HEAD(self):  # noqa: N802
        self._route()

    def do_GET(self):  # noqa: N802
        self._route()

    def _route(self) -> None:
        parts = urlsplit(self.path)
        self.state.requests.append((self.command, parts.path))
        path = parts.path
        if path == "/api/models":
            return self._search(parse_qs(parts.query))
        if path.startswith("/api/models/"):
            rest = path.removeprefix("/api/models/")
            if rest.endswith("/refs"):
                return self._refs(unquote(rest.removesuffix("/refs")))
            repo_id, _, revision = rest.partition("/revision/")
            return self._info(unquote(repo_id), unquote(revision) or "main")
        segments = path.lstrip("/").split("/")
        if len(segments) >= 5 and segments[2] == "resolve":
            return self._file("/".join(segments[:2]), unquote(segments[3]), unquote("/".join(segments[4:])))
        return self._error(404, "NotFound", f"no route {path}")

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            # the Hub answers 401 to an anonymous caller: a private repository looks the same
            self._error(401, "RepoNotFound", "Repository not found")
        return repo

    def _info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if repo.gated and repo.private_metadata and self._token() not in repo.readers:
            return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted.")
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        siblings = []
        for name, content in sorted(repo.commits[commit].items()):
            entry = {"rfilename": name, "size": len(content)}
            if name.endswith(LFS_SUFFIXES):
                pointer = lfs_pointer(content)
                entry.update(blobId=git_blob_id(pointer),
                             lfs={"sha256": hashlib.sha256(content).hexdigest(), "size": len(content),
                                  "pointerSize": len(pointer)})
            else:
                entry["blobId"] = git_blob_id(content)
            siblings.append(entry)
        body = {"_id": "x" * 24, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": commit,
                "private": False, "disabled": False, "gated": repo.gated, "downloads": 0, "likes": 0,
                "tags": [f"license:{repo.license}"] if repo.license else [],
                "cardData": {"license": repo.license} if repo.license else {}, "siblings": siblings}
        self._reply(200, json.dumps(body).encode())

    def _refs(self, repo_id: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return

        def refs(names: dict[str, str], kind: str) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c} for n, c in sorted(names.items())]

        body = {"branches": refs(repo.branches, "heads"), "tags": refs(repo.tags, "tags"), "converts": []}
        self._reply(200, json.dumps(body).encode())

    def _search(self, query: dict[str, list[str]]) -> None:
        author = (query.get("author") or [""])[0]
        search = (query.get("search") or [""])[0].lower()
        found = [{"_id": "x" * 24, "id": repo_id, "modelId": repo_id} for repo_id in sorted(self.state.repos)
                 if (not author or repo_id.split("/")[0] == author) and search in repo_id.lower()]
        self._reply(200, json.dumps(found).encode())

    def _file(self, repo_id: str, revision: str, name: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if repo.gated:
            token = self._token()
            if token is None:
                return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have "
                                                     "access to it and be authenticated to access it. Please log in.")
            if token not in repo.readers:
                return self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in "
                                                     "the authorized list.")
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = repo.commits[commit]
        if name not in files:
            return self._error(404, "EntryNotFound", f"{name} does not exist on \"{revision}\"",
                               {"X-Repo-Commit": commit})
        content = repo.served.get(name, files[name])
        real = files[name]
        etag = hashlib.sha256(real).hexdigest() if name.endswith(LFS_SUFFIXES) else git_blob_id(real)
        self._reply(200, content, {"ETag": f'"{etag}"', "X-Repo-Commit": commit, "Content-Length": str(len(content)),
                                   "Accept-Ranges": "bytes"}, content_type="application/octet-stream")
