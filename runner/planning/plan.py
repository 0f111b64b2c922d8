"""The plan of a run: per cell, can it run here and what it needs (GPUs, GPU memory, disk); for the run,
total disk and estimated hours, each estimate with its basis.

``make_plan`` is the one planning function behind ``runner doctor``, ``runner reproduce --plan`` and
``runner reproduce`` (which refuses or skips cells from it before any run directory exists), so that
they cannot disagree. It validates the whole matrix first (a ``UserError``), then plans; it writes
nothing. ``Plan.lines()`` is its text, whole: the callers print it, never cut.

Its hours come from ``runner.planning.estimates``: a run already made on this hardware where there is one,
else a model whose every assumption is in that module's tables.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, computed_field

from runner.errors import UserError
from runner.matrix import Matrix
from runner.paths import cache_dir
from runner.planning import gpu_memory
from runner.planning.baselines import technique_baseline
from runner.planning.checks import DataCheck, TokenCheck, data_check, token_check
from runner.planning.estimates import (CELL_OVERHEAD_S, CPU_GBPS_MAX, CPU_GBPS_PER_THREAD, OUTPUT_FRACTION,
                                       REFERENCE_GPU, SIMCOPILOT_PROMPT_TOKENS, TECHNIQUE_REUSE,
                                       TENSOR_PARALLEL_EFFICIENCY, EarlierRuns, GenerationTime, JudgingTimes,
                                       MeasuredCell, VerdictReuse, cell_work, earlier_runs, eval_seconds,
                                       generation_time, gpu_bandwidth, host_hardware, oracle_seconds, timing_key,
                                       verdict_reuse)
from runner.planning.schedule import Schedule, ScheduleItem, ScheduleNode, simulate
from runner.planning.weights import cached_weights, file_key, needed_weights, served_weights_gib
from runner.records import Cell
from runner.serving.lock import lock_path, lock_status

# -- records ----------------------------------------------------------------------------------------
class Estimate(BaseModel):
    """Hours for a part of the run (None: unknown) and what the figure rests on."""

    hours: float | None  # with ``unknown`` cells, the known cells' alone: a lower bound
    basis: str
    #: cells whose hours are unknown, and the matrix keys that would make them known
    unknown: list[str] = Field(default_factory=list)
    fix: list[str] = Field(default_factory=list)

    def text(self) -> str:
        """``2.1 h``, ``≥ 2.1 h + 3 cells unknown (set ...)``; minutes under an hour."""
        if not self.unknown:
            return _duration(self.hours)
        fix = f" (set disk_gib or weights_gib in {', '.join(self.fix)})" if self.fix else ""
        if self.hours is None:
            return f"unknown: all {len(self.unknown)} cells' time unknown{fix}"
        return f"≥ {_duration(self.hours)} + {len(self.unknown)} cells unknown{fix}"


class PlannedCell(BaseModel):
    """One cell: can it run where asked, what it needs, and its estimates."""

    id: str
    cell: Cell
    runnable: bool
    device: str  # "gpu" or "cpu": where it would run here
    reason: str | None = None
    gpus: int  # GPUs it needs (tensor parallel; 0 on a CPU)
    gpu_memory_gib: float | None  # all its GPUs together (runner.planning.gpu_memory; None: its weights' size is unknown)
    gpu_memory_basis: str = ""  # what that figure rests on
    gpu_memory_here_gib: float | None  # the largest ``gpus`` GPUs here together (None: not probed)
    weights: str  # provenance of its weights
    disk_gib: float | None  # its weights on disk (None: unknown)
    cached: bool | None  # whether its weights are already in the cache (None: cannot tell)
    tasks: int | None  # accuracy tasks it answers
    estimated_on: str  # the hardware class its hours assume
    generation_hours: float | None
    #: of ``generation_hours``: the model's load (no lock), and the timed phases, which hold the node alone
    load_hours: float | None = None
    timed_hours: float | None = None
    evaluation_hours: float | None  # with the verdicts expected from the cache taken off
    #: what its generation hours rest on: "table", or "run <name>" (its cell measured on this hardware)
    generation_basis: str = "table"
    #: of its answers, how many are judged in the time an earlier run here measured (per task or language)
    evaluation_measured: int = 0
    #: a technique cell's baseline (``runner.planning.baselines.technique_baseline``), and the share of its answers
    #: expected to repeat the baseline's, their verdicts reused rather than judged
    baseline: str | None = None
    reuse: float = 0.0
    evaluation_reused_hours: float = 0.0  # what judging the reused verdicts afresh would take
    #: its weights' Hub source in the matrix's lock: "locked <commit>", "not locked"; "" when not from the Hub
    lock: str = ""
    #: why the plan could not check that its weights exist (a Hub source the lock does not pin); None: checked
    unchecked: str | None = None
    #: where its hours are unknown: the matrix key that would give its weights' size
    size_key: str | None = None

    @computed_field
    @property
    def cell_id(self) -> str:
        """The cell's id under the name every other output gives it (``id`` is kept for older readers)."""
        return self.id

    @property
    def verdict(self) -> str:
        """The plan's column: "yes", "no", or "not checked" (runnable as far as the plan could look)."""
        return "no" if not self.runnable else "not checked" if self.unchecked else "yes"


class Reason(BaseModel):
    """Why some cells cannot run: said once, with the cells it applies to."""

    reason: str
    cells: list[str]


class DiskTotal(BaseModel):
    """The weights the run needs on disk, files shared by cells counted once."""

    total_gib: float  # every known size
    cached_gib: float  # of which already in the cache
    needed_gib: float  # still to download or make
    unknown: list[str] = Field(default_factory=list)  # weights of unknown size (matrix key paths)
    free_gib: float | None
    where: str
    short_gib: float | None = None  # missing free space, when it is short


class Plan(BaseModel):
    """The plan of one run: what is wrong for every cell, each cell, the totals."""

    matrix: str
    name: str
    backend: str
    where: str  # "on this host", "on the Ray cluster at ..."
    cpus: int = 0  # the cores judging runs on, one worker each
    cpus_basis: str = ""  # whose cores: this host's, or assumed
    benchmark: str
    edition: str | None
    data: list[DataCheck]
    token: TokenCheck
    problems: list[str]  # what stops every cell (missing data)
    cells: list[PlannedCell]
    reasons: list[Reason]
    disk: DiskTotal
    generation: Estimate  # the cells' generation, one after another
    evaluation: Estimate
    run: Estimate  # the schedule's: cells at once where the node allows, evaluation beside generation
    schedule: Schedule | None = None  # None: no cell's hours are known
    #: the run skips the cells that cannot run (--skip-unrunnable) rather than refusing
    skip_unrunnable: bool = False

    @property
    def unrunnable(self) -> list[PlannedCell]:
        return [c for c in self.cells if not c.runnable]

    @property
    def unchecked(self) -> list[PlannedCell]:
        return [c for c in self.cells if c.runnable and c.unchecked]

    @property
    def exit_code(self) -> int:
        """The one rule of doctor, --plan and --dry-run: 1 when something stops the run or some cell cannot run,
        0 when every cell can (a cell not checked counts as runnable: the run checks it on download), or
        when --skip-unrunnable leaves at least one that can."""
        if self.problems or len(self.unrunnable) == len(self.cells):
            return 1
        return 1 if self.unrunnable and not self.skip_unrunnable else 0

    @property
    def complete(self) -> bool:
        """Every cell can run and nothing stops the run."""
        return not self.problems and not self.unrunnable

    @property
    def startable(self) -> bool:
        """Some cell can run and nothing stops the run."""
        return not self.problems and len(self.unrunnable) < len(self.cells)

    def refusal(self) -> str:
        """The one line that says why the run cannot go as asked and what to do; empty when it can."""
        if self.problems:
            return f"cannot start: {self.problems[0]}"
        return self._advice()

    def _advice(self) -> str:
        """What to do about the cells that cannot run ("" when none, or when the run skips them)."""
        if self.unrunnable and len(self.unrunnable) == len(self.cells):
            return f"no cell can run {self.where} (backend {self.backend}); run the matrix on a host that can"
        if self.unrunnable and not self.skip_unrunnable:
            return (f"{len(self.unrunnable)} of {len(self.cells)} cells cannot run {self.where} (backend "
                    f"{self.backend}); run them on a host that can, or pass --skip-unrunnable")
        return ""

    def reason_lines(self) -> list[str]:
        """Each reason once: ``id: reason`` for one cell, the reason then its cells for several."""
        lines = []
        for group in self.reasons:
            if len(group.cells) == 1:
                lines.append(f"  {group.cells[0]}: {group.reason}")
            else:
                lines.append(f"  {len(group.cells)} cells: {group.reason}")
                lines += [f"    {cell}" for cell in group.cells]
        return lines

    def lines(self, refusal: bool = True) -> list[str]:
        """The whole plan as text, the refusal (if any, and asked for) last."""
        out = [f"plan for {self.matrix}: run {self.name!r}, backend {self.backend}, {self.where}",
               f"CPU cores: {self.cpus} ({self.cpus_basis}): judging runs one worker per core"]
        for data in self.data:
            which = f" {data.edition}" if data.edition else ""
            out.append(f"data: {data.benchmark}{which}: {'present in ' if data.present else 'missing: '}{data.detail}")
        if self.token.gated:
            out.append(f"HF_TOKEN: {'set' if self.token.set else 'not set'}; gated repositories: "
                       f"{', '.join(self.token.gated)}"
                       + ("" if self.token.set else " (accept each licence on its Hugging Face page, then "
                                                    "set HF_TOKEN to a token of that account)"))
        width = max((len(c.id) for c in self.cells), default=4)
        out.append("")
        out.append(f"{'cell':<{width}}  runs         GPUs  GPU memory (here)   disk       cached  time gen + eval"
                   + ("  lock" if any(c.lock for c in self.cells) else ""))
        for c in self.cells:
            memory = "-" if c.gpu_memory_gib is None else f"{round(c.gpu_memory_gib, 1):g} GiB"
            here = "" if c.gpu_memory_here_gib is None else f" ({c.gpu_memory_here_gib:.0f})"
            cached = {True: "yes", False: "no", None: "?"}[c.cached]
            out.append(f"{c.id:<{width}}  {c.verdict:<11}  {c.gpus:<4}  "
                       f"{memory + here:<18}  {_gib(c.disk_gib):<9}  {cached:<6}  "
                       f"{_duration(c.generation_hours)} + {_duration(c.evaluation_hours)}" + _lock_column(c))
        if self.reasons:
            out.append("")
            out.append("why not (each reason once, with its cells):")
            out += self.reason_lines()
        if self.unchecked:
            out.append("")
            out.append("not checked (runnable as far as the plan can tell; the run checks them on download):")
            for why in dict.fromkeys(c.unchecked for c in self.unchecked):
                ids = [c.id for c in self.unchecked if c.unchecked == why]
                out.append(f"  {ids[0]}: {why}" if len(ids) == 1 else f"  {len(ids)} cells: {why}")
                out += [f"    {cell}" for cell in ids] if len(ids) > 1 else []
        d = self.disk
        out.append("")
        free = "" if d.free_gib is None else f"; {d.free_gib:.1f} GiB free in {d.where}"
        short = f": {d.short_gib:.1f} GiB short" if d.short_gib else ""
        out.append(f"disk: {d.total_gib:.1f} GiB of weights (files shared by cells once), {d.cached_gib:.1f} GiB "
                   f"cached, {d.needed_gib:.1f} GiB to get{free}{short}")
        if d.unknown:
            out.append(f"  size unknown (no disk_gib in the matrix): {', '.join(d.unknown)}")
        for label, estimate in (("generation", self.generation), ("evaluation", self.evaluation)):
            out.append(f"{label}: {estimate.text()} ({estimate.basis})")
        s = self.schedule
        if s is not None and s.at_once > 1:
            out.append(f"whole run: {self.run.text()} with up to {s.at_once} cells at once "
                       f"(sequential: {_duration(s.sequential_h)}; {self.run.basis})")
        else:
            out.append(f"whole run: {self.run.text()} ({self.run.basis})")
        out.append("")
        for problem in self.problems:
            out.append(f"cannot start: {problem}")
        unchecked = f" ({len(self.unchecked)} of them not checked)" if self.unchecked else ""
        out.append(f"{len(self.cells) - len(self.unrunnable)} of {len(self.cells)} cells can run {self.where}{unchecked}")
        if self.unrunnable and self.skip_unrunnable and len(self.unrunnable) < len(self.cells):
            out.append(f"--skip-unrunnable: the run skips the {len(self.unrunnable)} cells that cannot run")
        if refusal and self._advice():
            out.append(self._advice())
        return out


def _lock_column(cell: PlannedCell) -> str:
    """The row's last column: its Hub source's locked commit, or "not locked" (nothing for other sources)."""
    return f"  {cell.lock}" if cell.lock else ""


def _gib(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} GiB"


def _duration(hours: float | None) -> str:
    """``2.1 h``, ``16 min`` under an hour, ``unknown``."""
    if hours is None:
        return "unknown"
    if hours >= 0.95:
        return f"{hours:.1f} h"
    return f"{hours * 60:.0f} min" if hours * 60 >= 0.5 else "< 1 min"


# -- validation -------------------------------------------------------------------------------------
def _backend_problem(backend: str | None) -> str | None:
    from runner.backends import backend_names

    if backend is None or backend in backend_names():
        return None
    return f"--backend {backend!r}: unknown backend; known backends: {', '.join(backend_names())}"


def validate_backend(backend: str | None) -> None:
    """A ``UserError`` for a ``--backend`` that names no backend."""
    problem = _backend_problem(backend)
    if problem:
        raise UserError(problem)


def validate(matrix: Matrix, backend: str | None = None) -> None:
    """What ``load_matrix`` cannot check alone (the backend asked for, the benchmark): one ``UserError``."""
    from runner.benchmarks import BENCHMARKS

    where = matrix.path or matrix.name
    problems = [p for p in (_backend_problem(backend),) if p]
    if matrix.benchmark not in BENCHMARKS:
        problems.append(f"{where}: benchmark = {matrix.benchmark!r}: unknown benchmark; known benchmarks: "
                        f"{', '.join(BENCHMARKS)}")
    if problems:
        raise UserError("\n".join(problems))


# -- the plan ---------------------------------------------------------------------------------------
def make_plan(matrix: Matrix, *, backend: str | None = None, executor=None, host=None, benchmark=None,
              name: str | None = None, limit: int | None = None, runs_dir: Path | None = None,
              skip_unrunnable: bool = False) -> Plan:
    """Validate ``matrix`` (a ``UserError``), then plan it on ``executor`` (default: this host, ``host``
    if given) for ``backend`` (default: the matrix's); ``benchmark``: the run's, already loaded;
    ``runs_dir``: where earlier runs are, whose cells measured on this hardware the estimates reuse;
    ``skip_unrunnable``: the run skips cells that cannot run (the exit code and the advice follow)."""
    from runner.planning.doctor import plan_cells, probe_host

    validate(matrix, backend)
    backend = backend or matrix.backend
    if limit is not None:
        matrix = matrix.model_copy(update={"tasks": matrix.tasks.model_copy(update={"limit": limit})})
    in_process = executor is None or executor.name == "inprocess"
    if in_process:
        host = host or probe_host()
        verdicts = plan_cells(matrix, host, backend=backend)
        where = f"on an assumed host: {host.assumed}" if host.assumed else "on this host"
    else:
        verdicts = executor.plan(matrix, backend)
        where = executor.where

    data = [data_check(matrix.benchmark, matrix.edition)]
    data += [data_check(matrix.benchmark, e) for e in matrix.compare_editions]
    problems = [d.detail for d in data if not d.present and benchmark is None]
    locks = lock_status(matrix)  # a stale lock stops the run: its cells would fetch what it no longer pins
    problems += locks.problems
    selected = latency = None
    if benchmark is None and data[0].present:
        from runner.benchmarks import load_benchmark

        benchmark = load_benchmark(matrix.benchmark, matrix.edition)
    if benchmark is not None:
        from runner.planning.selection import latency_subset, select_tasks

        selected = select_tasks(benchmark, matrix.tasks)
        if not selected:
            raise UserError(f"{matrix.path or matrix.name}: [tasks] selects no available task of benchmark "
                            f"{matrix.benchmark}; widen languages/modes/programs")
        everything = matrix.tasks.model_copy(update={"limit": None})
        latency = latency_subset(selected, matrix.settings, select_tasks(benchmark, everything))

    workers = (host.cpu_count if in_process else 0) or os.cpu_count() or 1
    if in_process and host.assumed and "--assume-cpus" in host.assumed:
        cpus_basis = "assumed by --assume-cpus"
    elif in_process:
        cpus_basis = "this host's; --assume-cpus N plans for another count"
    else:
        cpus_basis = "this host's, where the judging runs"
    cpu_gbps = min(CPU_GBPS_PER_THREAD * (matrix.settings.threads or workers), CPU_GBPS_MAX)
    # a cluster's nodes are not this host: only a plan made here reuses runs made here
    earlier = earlier_runs(runs_dir, host_hardware(host)) if in_process else None
    languages = {t.id: t.language.value for t in benchmark.tasks} if benchmark is not None else {
        task: language for task, (language, _) in oracle_seconds().items()}
    judged = JudgingTimes.of(earlier, matrix.benchmark, languages)
    # which answers repeat is the models' doing, not the hardware's: any run in the folder tells
    # only the same model's runs: how often a technique repeats its baseline is the model's trait (a 0.5B
    # model's share says nothing of a 70B's)
    reuse = ({model: verdict_reuse(runs_dir, model) for model in dict.fromkeys(c.model for c in matrix.cells)}
             if matrix.settings.reuse_verdicts else None)

    def share(model: str) -> float:
        found = reuse[model].share if reuse is not None else 0.0
        return TECHNIQUE_REUSE if found is None else found
    dumped = matrix.resolved()
    used: dict[str, list[MeasuredCell]] = {}
    classes: dict[str, int] = {}
    cells: list[PlannedCell] = []
    for verdict in verdicts:
        cell = verdict.cell
        source = matrix.source(cell)
        gpus_needed = matrix.request(cell).gpus
        memory = gpu_memory.cell_memory(matrix, cell)
        here = None  # a cluster's GPUs are the executor's to weigh
        if in_process:
            here = sum(sorted((g.memory_gib for g in host.gpus), reverse=True)[:gpus_needed])
        on_this_host = in_process
        if in_process and host.gpus:
            label, gbps = gpu_bandwidth(host.gpus[0].name)
            device = "gpu"
        elif _cpu_cell(matrix, cell, host) if in_process else gpus_needed == 0:
            label, gbps, device = f"this CPU ({matrix.settings.threads or workers} threads)", cpu_gbps, "cpu"
        else:
            wanted = matrix.request(cell).gpu_type or REFERENCE_GPU
            label, gbps = gpu_bandwidth(wanted)
            label, device = f"{label} (assumed{': no GPU here' if in_process else ''})", "gpu"
            on_this_host = False
        if device == "gpu":
            gpus = max(gpus_needed, 1)
            gbps = gbps * (1 + (gpus - 1) * TENSOR_PARALLEL_EFFICIENCY)
        there, measured = cached_weights(matrix, cell.model, cell.quantization)
        tasks = cell_work(matrix, benchmark, selected, latency, cell, judged if on_this_host else None)
        time: GenerationTime | None = None
        basis = "table"
        key = timing_key(matrix.benchmark, dumped["models"], dumped["settings"], cell) if on_this_host else None
        if earlier is not None and key in earlier.cells:
            match = earlier.cells[key]
            time = match.generation(sum(tasks.by_language.values()), tasks.latency, CELL_OVERHEAD_S[device])
            if time is not None:
                basis = f"run {match.run}"
                used.setdefault(match.run, []).append(match)
        if time is None:
            time = generation_time(matrix, cell, tasks, device, gbps, matrix.settings.threads or workers,
                                   measured_gib=served_weights_gib(matrix, cell.model, cell.quantization))
            classes[label] = classes.get(label, 0) + 1
        baseline = technique_baseline(cell, matrix.cells)
        reused = share(cell.model) if baseline is not None else 0.0
        lock = locks.label(matrix, cell.model, cell.quantization)
        # the plan never asks the Hub: only a lock entry says the repository and revision existed
        unchecked = (f"not checked: its Hugging Face source is not in {lock_path(matrix).name} and the plan does "
                     f"not ask the Hub; `runner models lock {matrix.path or matrix.name}` checks it"
                     if lock == "not locked" else None)
        cells.append(PlannedCell(
            id=cell.id, cell=cell, runnable=verdict.runnable, device=verdict.device, reason=verdict.reason,
            gpus=gpus_needed if device == "gpu" else 0, gpu_memory_gib=memory.total_gib,
            gpu_memory_basis=memory.basis(),
            gpu_memory_here_gib=here, weights=source.describe(),
            disk_gib=measured if measured is not None else source.disk_gib, cached=there, tasks=sum(tasks.by_language.values()),
            estimated_on=label, generation_hours=None if time is None else time.total_s / 3600,
            load_hours=None if time is None else time.load_s / 3600,
            timed_hours=None if time is None else time.timed_s / 3600,
            evaluation_hours=tasks.eval_seconds * (1 - reused) / workers / 3600, generation_basis=basis,
            evaluation_measured=tasks.eval_measured if on_this_host else 0,
            baseline=baseline.id if baseline is not None else None, reuse=reused,
            evaluation_reused_hours=tasks.eval_seconds * reused / workers / 3600,
            lock=lock, unchecked=unchecked,
            size_key=None if time is not None else f"models.{cell.model}.quantizations.{cell.quantization}"))

    reasons: dict[str, list[str]] = {}
    for c in cells:
        if not c.runnable:
            reasons.setdefault(c.reason or "cannot run", []).append(c.id)
    return Plan(matrix=str(matrix.path or matrix.name), name=name or matrix.name, backend=backend, where=where,
                cpus=workers, cpus_basis=cpus_basis,
                benchmark=matrix.benchmark, edition=matrix.edition if matrix.benchmark == "simcopilot" else None,
                data=data, token=token_check(matrix), problems=problems, cells=cells, skip_unrunnable=skip_unrunnable,
                reasons=[Reason(reason=r, cells=ids) for r, ids in reasons.items()],
                disk=_disk(matrix, host.free_disk_gib if in_process else None),
                **_totals(matrix, cells, classes, selected is not None, workers, earlier, used, reuse,
                          _nodes(matrix, host, executor if not in_process else None)))


def _nodes(matrix: Matrix, host, executor) -> list[ScheduleNode]:
    """Where the cells run at once: this host (``host``), or the nodes of ``executor``'s cluster."""
    at_once = matrix.settings.parallel_cells
    if executor is None:  # as runner.executors.inprocess: one cell per GPU, one at a time without GPUs
        return [ScheduleNode(name="this host", gpus=len(host.gpus), cells_at_once=at_once or max(1, len(host.gpus)))]
    listing = getattr(executor, "nodes", None)
    try:
        found = listing() if listing is not None else []
    except Exception:  # noqa: BLE001 - the nodes only shape an estimate; executor.plan has already spoken
        found = []
    # a cell without GPUs asks Ray for its threads' CPUs (runner.executors.ray_cluster)
    threads = matrix.settings.threads or 1
    nodes = [ScheduleNode(name=n.host, gpus=int(n.gpus), cpu_cells=int(n.cpus) // threads)
             for n in found if int(n.gpus) or int(n.cpus) >= threads]
    return nodes or [ScheduleNode(name="the cluster (its nodes unknown)", gpus=0, cells_at_once=1)]


def _cpu_cell(matrix: Matrix, cell: Cell, host) -> bool:
    """Whether a GPU-less host would serve ``cell`` on its CPU (else it is estimated on ``REFERENCE_GPU``)."""
    from runner.runtimes import get_runtime

    memory = gpu_memory.cell_memory(matrix, cell).host_gib
    return not get_runtime(cell.runtime).needs_gpu(cell) and not (memory and memory > 0.8 * host.ram_gib)


def _disk(matrix: Matrix, free_gib: float | None) -> DiskTotal:
    files: dict[str, tuple[float | None, bool | None, str]] = {}
    for key, quant in needed_weights(matrix):
        source = matrix.models[key].quantizations[quant]
        there, measured = cached_weights(matrix, key, quant)
        size = measured if measured is not None else (0.0 if source.kind == "path" else source.disk_gib)
        files.setdefault(file_key(key, quant, source), (size, there, f"models.{key}.quantizations.{quant}"))
    total = sum(size for size, _, _ in files.values() if size)
    cached = sum(size for size, there, _ in files.values() if size and there)
    needed = total - cached
    unknown = [where for size, there, where in files.values() if size is None and not there]
    short = needed - free_gib if free_gib is not None and needed > free_gib else None
    return DiskTotal(total_gib=total, cached_gib=cached, needed_gib=needed, unknown=unknown, free_gib=free_gib,
                     where=str(cache_dir()), short_gib=short)


def _totals(matrix: Matrix, cells: list[PlannedCell], classes: dict[str, int], measured_prompts: bool,
            workers: int, earlier: EarlierRuns | None = None, used: dict[str, list[MeasuredCell]] | None = None,
            reuse: dict[str, VerdictReuse] | None = None, nodes: list[ScheduleNode] | None = None) -> dict:
    gen = [c.generation_hours for c in cells]
    evals = [c.evaluation_hours for c in cells]
    unknown = [c.id for c in cells if c.generation_hours is None]
    parts = [f"measured in run {run} on {earlier.hardware}: {len(found)} cells, {sum(m.samples for m in found)} "
             f"samples, scaled to the planned task counts" for run, found in (used or {}).items() if earlier]
    if classes:
        on = ", ".join(f"{n} cells as on {label}" for label, n in classes.items())
        prompts = ("prompts measured from the tasks" if measured_prompts
                   else f"prompts ~{SIMCOPILOT_PROMPT_TOKENS:,} tokens (assumed: no data here)")
        no_run = "" if used else "; no earlier run on this hardware has these cells"
        parts.append(f"runner/planning/estimates.py's table per runtime and GPU class: {on}; {prompts}, answers "
                     f"{OUTPUT_FRACTION:.0%} of max_tokens; model loads included, downloads not{no_run}")
    gen_basis = "; ".join(parts)
    fix = list(dict.fromkeys(c.size_key for c in cells if c.size_key))
    _, source = eval_seconds(matrix.benchmark)
    runnable = [c for c in cells if c.runnable]
    if runnable and len(runnable) < len(cells):
        gen_basis += (f"; the {len(runnable)} runnable cells alone: "
                      f"{_duration(sum(c.generation_hours or 0 for c in runnable))}")
    eval_basis = f"{source}, on {workers} workers (one per core)"
    measured = sum(c.evaluation_measured for c in cells)
    if measured and earlier is not None:
        runs = earlier.judged_runs.get(matrix.benchmark, {})
        named = ", ".join(f"run {run} ({n} answers)" for run, n in runs.items())
        total = sum(c.tasks or 0 for c in cells)
        eval_basis = (f"{measured} of {total} answers at the judging time measured on {earlier.hardware} in {named} "
                      f"(per task, else per language)" + (f"; the rest: {eval_basis}" if measured < total
                                                         else f", on {workers} workers (one per core)"))
    eval_basis += _reuse_basis(cells, reuse)
    known = [g for g in gen if g is not None]
    schedule = None
    if known:
        items = [ScheduleItem(id=c.id, gpus=matrix.request(c.cell).gpus, load_h=c.load_hours or 0.0,
                              untimed_h=(c.generation_hours or 0.0) - (c.load_hours or 0.0) - (c.timed_hours or 0.0),
                              timed_h=c.timed_hours or 0.0, eval_h=c.evaluation_hours or 0.0) for c in cells]
        schedule = simulate(items, nodes or [ScheduleNode(name="this host", gpus=0, cells_at_once=1)])
    return {
        "generation": Estimate(hours=sum(known) if known else None, basis=gen_basis, unknown=unknown, fix=fix),
        "evaluation": Estimate(hours=sum(evals), basis=eval_basis),
        "run": Estimate(hours=schedule.hours if schedule else None,
                        basis=_run_basis(matrix, schedule, workers) if schedule else
                        "no cell's generation time is known", unknown=unknown, fix=fix),
        "schedule": schedule,
    }


def _reuse_basis(cells: list[PlannedCell], reuse: dict[str, VerdictReuse] | None) -> str:
    """What the evaluation figure takes off for verdicts the cache hands over, and on what basis, per model."""
    techniques = [c for c in cells if c.baseline is not None]
    if not techniques:
        return ""
    if reuse is None:
        return (f"; no verdict reused (settings.reuse_verdicts = false): the {len(techniques)} technique cells "
                "judged afresh")
    saved = sum(c.evaluation_reused_hours for c in techniques)
    parts = []
    for model in dict.fromkeys(c.cell.model for c in techniques):
        mine = [c for c in techniques if c.cell.model == model]
        found = reuse.get(model)
        if found is not None and found.share is not None:
            runs = ", ".join(f"run {run}" for run in found.runs)
            why = f"measured in {runs}: {found.reused} of {found.answers} technique answers of {model}"
        else:
            why = f"assumed: runner/planning/estimates.py TECHNIQUE_REUSE; no earlier run here of {model} measured it"
        parts.append(f"{mine[0].reuse:.0%} of the {len(mine)} technique cells' answers of {model} ({why})")
    return (f"; reuse: their baseline's verdict taken for {'; '.join(parts)}, {_duration(saved)} less; "
            "other cells: none assumed")


def _run_basis(matrix: Matrix, schedule: Schedule, workers: int) -> str:
    at_once = matrix.settings.parallel_cells
    nodes = schedule.nodes
    if len(nodes) == 1 and nodes[0].name == "this host":
        gpus = nodes[0].gpus
        if gpus == 1 and not at_once:
            where = "one cell at a time on this host's GPU (one per GPU)"
        elif gpus and at_once == 1:
            where = f"one cell at a time on this host's {gpus} GPUs (settings.parallel_cells = 1)"
        elif gpus:
            limit = f"{at_once} at most (settings.parallel_cells)" if at_once else "one per GPU at most"
            where = f"cells in matrix order on this host's {gpus} GPUs as their GPUs free up, {limit}"
        elif (at_once or 1) > 1:
            where = f"{at_once} cells at once on this host's CPU (settings.parallel_cells)"
        else:
            where = "one cell at a time: this host has no GPU (settings.parallel_cells = N runs N at once)"
    elif nodes[0].name.startswith("the cluster"):
        where = "one cell at a time: the cluster's nodes could not be listed"
    else:
        where = (f"cells over the cluster's {len(nodes)} nodes ({sum(n.gpus for n in nodes)} GPUs) as their "
                 "GPUs free up")
    basis = where + ("; timed phases (latency, sweep) alone on their node" if schedule.at_once > 1 else "")
    basis += "; each cell's answers judged while it generates, the cell done when the longer of the two ends"
    if schedule.judging_h > schedule.makespan_h:
        basis += (f"; the evaluation pool ends the run: {_duration(schedule.judging_h)} of judging on {workers} "
                  f"workers, the cells' schedule {_duration(schedule.makespan_h)}")
    return basis
