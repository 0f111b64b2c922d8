"""Reading run directories into what the report compares: runs, machines and cells with their samples."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import UserError
from runner.measuring.noise import NoiseFloor, noise_floor
from runner.measuring.passrate import counted
from runner.records import Cell, Outcome, Sample, Task
from runner.store import CellResult, Fingerprint, Manifest, RunStore

log = logging.getLogger(__name__)

#: SimCoPilot's languages and modes, in the order upstream's tables use
LANGUAGE_MODES: tuple[tuple[str, str], ...] = (
    ("python", "infill"), ("python", "completion"), ("java", "infill"), ("java", "completion"),
)


def machine_label(fp: Fingerprint) -> str:
    """A short, readable name for where a run happened: its GPUs, else its CPU, and the host."""
    if fp.gpus:
        names: dict[str, int] = {}
        for gpu in fp.gpus:
            name = str(gpu.get("name", "GPU"))
            names[name] = names.get(name, 0) + 1
        hardware = " + ".join(f"{n}× {name}" if n > 1 else name for name, n in names.items())
    else:
        hardware = f"CPU {fp.cpu}" if fp.cpu else "CPU"
    return f"{hardware} ({fp.hostname})" if fp.hostname else hardware


def machine_short(fp: Fingerprint) -> str:
    """The hardware alone, vendor prefix dropped, for cell labels: ``2× A100-SXM4-80GB``."""
    return machine_label(fp.model_copy(update={"hostname": ""})).replace("NVIDIA ", "")


def machine_key(fp: Fingerprint) -> tuple:
    """What makes two fingerprints the same machine: host, GPUs (by uuid or name) and CPU."""
    gpus = tuple(sorted(str(g.get("uuid") or g.get("name")) for g in fp.gpus))
    return (fp.hostname, gpus, fp.cpu)


def split_task_id(task_id: str) -> tuple[str, str]:
    """``python/infill/prog/3-4`` -> ``("python", "infill")``."""
    parts = task_id.split("/")
    return (parts[0], parts[1]) if len(parts) >= 2 else ("?", "?")


#: latency sources in order of preference; each names its cache state
LATENCY_SOURCES = ("latency/warm", "latency/cold", "latency", "accuracy")


@dataclass
class CellData:
    """One cell of one run with its latest samples, split by phase."""

    run: "RunData"
    result: CellResult
    samples: list[Sample]
    label: str = ""  # unique within the report; set by ``Report``

    @property
    def cell(self) -> Cell:
        return self.result.cell

    @property
    def accuracy(self) -> list[Sample]:
        """The samples the pass rate counts (``runner.measuring.passrate``: a request error counts as not passing)."""
        return counted(self.samples)

    def accuracy_by_task(self) -> dict[str, Sample]:
        return {s.task_id: s for s in self.accuracy}

    @property
    def noise(self) -> NoiseFloor | None:
        """Its noise floor, where it repeated tasks (``settings.repeat_tasks``)."""
        return noise_floor(self.cell.id, self.samples, self.run.concurrency)

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if s.outcome == Outcome.error]

    def timed(self, source: str) -> list[Sample]:
        """Samples of ``source`` that returned text in time (no request error). ``source`` is a phase
        with its cache state (``latency/warm``, ``latency/cold``, ``replay/replay``) or a bare phase
        (``accuracy``; ``latency`` for runs made before cache states were recorded)."""
        return [s for s in self.samples if (s.phase_key == source or (s.phase == source and s.cache_state is None))
                and s.outcome != Outcome.error and s.e2e_s is not None]

    @property
    def latency_source(self) -> str:
        """Where the cell's latency figures come from, the first that has samples: one request at a
        time with a warm cache (the copilot case), with a cold one, without a recorded state, else
        the accuracy phase (queued requests)."""
        return next((source for source in LATENCY_SOURCES if self.timed(source)), "accuracy")

    @property
    def latency_samples(self) -> list[Sample]:
        return self.timed(self.latency_source)


def shared_latency_source(cells: list[CellData]) -> str:
    """The first latency source every one of ``cells`` has samples of (``accuracy`` at worst), so
    that cells drawn on one axis are timed the same way."""
    return next(s for s in LATENCY_SOURCES if s == "accuracy" or all(c.timed(s) for c in cells))


@dataclass
class RunData:
    """One run directory: its manifest and its cells."""

    path: Path
    manifest: Manifest
    cells: list[CellData] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.manifest.name or self.path.name

    @property
    def machine(self) -> str:
        return machine_label(self.manifest.fingerprint)

    @property
    def concurrency(self) -> int:
        """The accuracy phase's requests in flight (``settings.concurrency``)."""
        from runner.matrix import RunSettings

        settings = self.manifest.matrix.get("settings") or {}
        return int(settings.get("concurrency", RunSettings().concurrency))

    @property
    def benchmark(self) -> str | None:
        name = self.manifest.matrix.get("benchmark")
        return str(name) if name else None

    @property
    def edition_label(self) -> str:
        """What the run was judged on, for the header: ``SimCoPilot 2025 (mj33rice/Sim-CoPilot@096d1c4)``."""
        if self.manifest.edition is not None:
            return f"SimCoPilot {self.manifest.edition.label}"
        if self.benchmark == "simcopilot":  # only 2024's existed before runs recorded their edition
            from runner.benchmarks.editions import edition_ref

            return f"SimCoPilot {edition_ref('2024').label}, assumed: the run predates editions"
        return "the starter set" if self.benchmark == "starter" else (self.benchmark or "an unnamed benchmark")


def load_run(path: Path) -> RunData:
    """Read one run directory (a ``UserError`` when it is not one)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory; give the folder `runner reproduce` wrote (runs/<name>)")
    store = RunStore(path)
    manifest = store.read_manifest()
    run = RunData(path=path, manifest=manifest)
    for result in store.cell_results():
        run.cells.append(CellData(run=run, result=result, samples=store.latest_samples(result.cell)))
    return run


def load_runs(paths: list[Path], notes: list[str] | None = None) -> list[RunData]:
    """Read every run directory once and give each cell a label unique across them. A run given
    twice (the same folder, or a copy of it: the same manifest) is read once, and ``notes`` says so."""
    if not paths:
        raise UserError("give at least one run directory (runs/<name>)")
    runs: list[RunData] = []
    seen: dict[tuple, Path] = {}
    for path in paths:
        folder = Path(path).resolve()
        if ("path", folder) in seen:
            (notes if notes is not None else []).append(f"{path}: given twice, counted once")
            continue
        run = load_run(Path(path))
        m = run.manifest
        identity = ("manifest", m.name, m.started_at, machine_key(m.fingerprint))
        if identity in seen:
            (notes if notes is not None else []).append(
                f"{path}: the same run as {seen[identity]} (same name, start time and machine), counted once")
            continue
        seen[("path", folder)] = seen[identity] = Path(path)
        runs.append(run)
    ids: dict[str, list[CellData]] = {}
    for run in runs:
        for cell in run.cells:
            ids.setdefault(cell.cell.id, []).append(cell)
    # the hardware names a machine in a label when it tells the machines apart, else the host does
    keys = {machine_key(r.manifest.fingerprint) for r in runs}
    shorts = {machine_short(r.manifest.fingerprint) for r in runs}
    for same in ids.values():
        machines = {machine_key(c.run.manifest.fingerprint) for c in same}
        for cell in same:
            fp = cell.run.manifest.fingerprint
            if len(same) == 1:
                cell.label = cell.cell.id
            elif len(machines) == len(same):
                where = machine_short(fp) if len(shorts) == len(keys) else f"{machine_short(fp)}, {fp.hostname}"
                cell.label = f"{cell.cell.id} @ {where}"
            else:
                cell.label = f"{cell.cell.id} @ {cell.run.name}"
    return runs


@dataclass
class TaskCatalogue:
    """The tasks behind the sample ids (categories), or a note on why they are not available."""

    tasks: dict[str, Task] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_tasks(runs: list[RunData]) -> TaskCatalogue:
    """Load each run's benchmark for the task categories; a missing benchmark becomes a note."""
    catalogue = TaskCatalogue()
    names = sorted({r.benchmark for r in runs if r.benchmark})
    if not names:
        catalogue.notes.append("the manifests name no benchmark, so task categories are not shown")
    for name in names:
        try:
            from runner.benchmarks import load_benchmark

            benchmark = load_benchmark(name)
        except (UserError, ImportError, OSError, ValueError) as exc:
            catalogue.notes.append(f"benchmark {name!r} is not available here ({exc}); categories are not shown")
            continue
        for task in benchmark.tasks:
            catalogue.tasks[task.id] = task
    return catalogue
