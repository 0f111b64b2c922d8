"""How long a run will take: the hours the plan gives each cell for generation and for judging.

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
  warm-up), the sweep (a concurrency's requests at its gain; a rate's sent over ``sweep_requests / rate``
  seconds, or as fast as the highest concurrency serves them where that is slower, plus one answer), the
  model load (``LOAD_GIBPS`` plus ``STARTUP_S``) and ``CELL_OVERHEAD_S``.
  Answers are ``OUTPUT_FRACTION`` of ``max_tokens``; prompts are measured from the loaded tasks
  (``CHARS_PER_TOKEN``, capped at the context), else ``SIMCOPILOT_PROMPT_TOKENS``. Downloads are
  not included. The CPU figures are fitted to the demo as measured (``tests/test_plan.py`` keeps the
  demo's plan within ``DEMO_BAND`` of it; ``bench/plan_accuracy.py`` compares a plan with a run).
- **evaluation**, else: the per-task ``seconds`` that the reference oracle recorded
  (``bench/results/oracle-simcopilot-2024-upstream.jsonl``, in a checkout; its per-language mean for
  a task it lacks), else ``EVAL_SECONDS``; run on one worker per core, beside generation. A
  technique cell's (``runner.planning.baselines.technique_baseline``) is cut by the share of its answers expected to repeat its
  baseline's, whose verdicts the verdict cache hands over (``settings.reuse_verdicts``): as earlier
  runs in the runs folder measured it (``verdict_reuse``, any hardware), else ``TECHNIQUE_REUSE``.
- **the run**: ``simulate`` places the cells on the node's GPUs (``settings.parallel_cells`` at most)
  or a cluster's nodes as the executors do, each generation split where the node's timing lock
  splits it (``GenerationTime``: the load; the untimed phases, shared; the timed ones, alone); the
  run ends with the schedule or with the evaluation pool's work, whichever is later.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
from pathlib import Path

from pydantic import BaseModel, Field

from runner.errors import UserError
from runner.matrix import Matrix, ModelSource
from runner.paths import PACKAGE_DIR
from runner.planning.baselines import technique_baseline
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


# -- earlier runs on this hardware ------------------------------------------------------------------
#: the settings that decide how long a cell's requests take and how many there are besides its tasks:
#: an earlier cell is reused only where they are the same (task counts are scaled)
SETTINGS_THAT_TIME = ("max_tokens", "temperature", "concurrency", "threads", "cache_states", "warmup_requests",
                      "sweep", "sweep_requests", "sweep_rates", "find_max_rate")
#: what a manifest written before a setting existed meant by leaving it out, so that its runs still count
_SETTINGS_BEFORE = {"sweep_rates": [], "find_max_rate": 0}


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
    """``hardware_class`` of a probed ``runner.planning.doctor.Host`` (its CPU looked up here if the probe lacks it)."""
    from runner.measuring.fingerprint import cpu_model

    return hardware_class([g.name for g in host.gpus], host.cpu or cpu_model(), host.cpu_count or os.cpu_count() or 0)


class GenerationTime(BaseModel):
    """A cell's generation in the parts the node's timing lock (``runner.measuring.activity``) treats apart: the
    load, which takes no lock; the untimed phases (warm-up, accuracy), which share the node with other
    cells; the timed phases (latency, sweep), which hold the node alone."""

    load_s: float
    untimed_s: float
    timed_s: float

    @property
    def total_s(self) -> float:
        return self.load_s + self.untimed_s + self.timed_s


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

    def generation(self, accuracy: int, latency: int, overhead: float) -> "GenerationTime | None":
        """Its time for ``accuracy`` answers and ``latency`` timed tasks; None where it measured none to scale."""
        if (accuracy and not self.accuracy_n) or (latency and not self.latency_n):
            return None
        return GenerationTime(load_s=self.load_s + overhead, untimed_s=self.accuracy_s * accuracy,
                              timed_s=self.latency_s * latency + self.sweep_s)


class EarlierRuns(BaseModel):
    """What the runs folder holds that was measured on this hardware."""

    hardware: str
    cells: dict[str, MeasuredCell] = Field(default_factory=dict)  # by ``timing_key``
    #: benchmark -> task id -> the seconds its answers' verdicts took, and the runs they come from
    judged: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    judged_runs: dict[str, dict[str, int]] = Field(default_factory=dict)  # benchmark -> run -> answers


def timing_key(benchmark: str, models: dict, settings: dict, cell: Cell) -> str | None:
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
                       {k: settings.get(k, _SETTINGS_BEFORE.get(k)) for k in SETTINGS_THAT_TIME}],
                      sort_keys=True, default=str)


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


def _runs_in(runs_dir: Path | None):
    """Each run directory of ``runs_dir`` with its manifest; a folder that is not a readable run is
    passed over (the plan writes nothing and refuses nothing for it)."""
    from runner.store import RunStore

    if runs_dir is None or not Path(runs_dir).is_dir():
        return
    for folder in sorted(Path(runs_dir).iterdir()):
        store = RunStore(folder, notice=lambda _: None)
        if not store.exists():
            continue
        try:
            manifest = store.read_manifest()
        except (UserError, OSError, ValueError):
            continue
        yield store, manifest


def earlier_runs(runs_dir: Path | None, hardware: str) -> EarlierRuns:
    """Every finished cell and judged answer in ``runs_dir`` whose run's fingerprint is of ``hardware``
    (``hardware_class``); a folder that is not a readable run is passed over (the plan writes nothing)."""
    found = EarlierRuns(hardware=hardware)
    for store, manifest in _runs_in(runs_dir):
        folder = store.root
        try:
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
                key = timing_key(benchmark, models, settings, result.cell)
                measured = _measure(store, manifest, result) if key else None
                if measured and (key not in found.cells or found.cells[key].started_at < measured.started_at):
                    found.cells[key] = measured
        except (UserError, OSError, ValueError):
            continue  # a damaged or foreign folder: its figures are not worth a refusal
    return found


# -- tasks and timings ------------------------------------------------------------------------------
@functools.cache
def oracle_seconds() -> dict[str, tuple[str, float]]:
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


def eval_seconds(benchmark: str) -> tuple[dict[str, float], str]:
    """Seconds per answer by language, and where they come from."""
    timings = oracle_seconds() if benchmark == "simcopilot" else {}
    if timings:
        by_language: dict[str, list[float]] = {}
        for language, seconds in timings.values():
            by_language.setdefault(language, []).append(seconds)
        means = {language: sum(v) / len(v) for language, v in by_language.items()}
        return means, f"the reference oracle's {len(timings):,} per-task timings ({ORACLE_TIMINGS.name})"
    return EVAL_SECONDS.get(benchmark, EVAL_SECONDS["starter"]), "assumed seconds per answer (runner/planning/estimates.py EVAL_SECONDS)"


class CellWork(BaseModel):
    """What the plan knows of a cell's tasks: how many per language, their prompts and judging time."""

    by_language: dict[str, int]
    prompt_tokens: float
    eval_seconds: float
    latency: int  # tasks timed one at a time
    eval_measured: int = 0  # answers whose judging time comes from an earlier run here


class JudgingTimes(BaseModel):
    """Judging seconds measured on this hardware: per task id, and per language over those tasks."""

    by_task: dict[str, float] = Field(default_factory=dict)
    by_language: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(cls, earlier: "EarlierRuns | None", benchmark: str, languages: dict[str, str]) -> "JudgingTimes":
        """From ``earlier``'s answers of ``benchmark``; ``languages``: task id -> language, for the means."""
        timings = (earlier.judged.get(benchmark) if earlier else None) or {}
        by_task = {task: sum(v) / len(v) for task, v in timings.items() if v}
        pooled: dict[str, list[float]] = {}
        for task, seconds in by_task.items():
            if task in languages:
                pooled.setdefault(languages[task], []).append(seconds)
        return cls(by_task=by_task, by_language={lang: sum(v) / len(v) for lang, v in pooled.items()})


def cell_work(matrix: Matrix, benchmark, selected, latency, cell: Cell, judged: JudgingTimes | None = None) -> CellWork:
    """The cell's tasks from the loaded benchmark (``selected``), or counted from the matrix without it;
    judging seconds as ``judged`` measured them here where it did, else the oracle's or the table's."""
    from runner.planning.selection import cell_latency_tasks, cell_tasks

    judged = judged or JudgingTimes()
    means, _ = eval_seconds(matrix.benchmark)
    context = matrix.model(cell).context_length - matrix.settings.max_tokens
    limits = matrix.limits.get(cell.id)
    if selected is not None:
        tasks = cell_tasks(matrix, benchmark, selected, cell)
        timings = oracle_seconds() if matrix.benchmark == "simcopilot" else {}
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
        return CellWork(by_language=counts, prompt_tokens=sum(tokens) / len(tokens) if tokens else 0.0,
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
    return CellWork(by_language=counts, prompt_tokens=min(SIMCOPILOT_PROMPT_TOKENS, context),
                  eval_seconds=sum(n * judged.by_language.get(language, means.get(language, 0.0))
                                   for language, n in counts.items()),
                  latency=latency_n, eval_measured=sum(n for lang, n in counts.items() if lang in judged.by_language))


# -- generation -------------------------------------------------------------------------------------
def gpu_bandwidth(name: str) -> tuple[str, float]:
    upper = name.upper()
    for match, gbps in GPU_BANDWIDTH_GBPS:
        if match in upper:
            return name, gbps
    return name, UNKNOWN_GPU_GBPS


def served_gib(source: ModelSource) -> float | None:
    """The weights the server reads per token, GiB: the smallest of the files, the weights in GPU memory
    (``weights_gib``: FP8 made from 16-bit files) and the GPU memory's weight share."""
    disk = source.disk_gib / 2 if source.disk_gib and source.kind == "dequantize" else source.disk_gib
    # (a dequantized folder is float32 on disk; servers load it as bf16)
    known = [v for v in (disk, source.weights_gib,
                         source.gpu_memory_gib and source.gpu_memory_gib * WEIGHTS_SHARE_OF_GPU_MEMORY) if v]
    return min(known) if known else None


def generation_time(matrix: Matrix, cell: Cell, tasks: CellWork, device: str, gbps: float,
                    threads: int = CPU_FIT_THREADS, measured_gib: float | None = None) -> GenerationTime | None:
    """The cell's serving time under the module's assumptions (None: the weights' size is unknown);
    ``measured_gib``: the served weights' size measured on disk here, used where the matrix gives none."""
    from runner.runtimes import get_runtime

    served = served_gib(matrix.source(cell)) or measured_gib
    if not served:  # unknown, or a folder measured empty here: no figure to time it by
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
    latency = tasks.latency * per_task
    warmup = settings.warmup_requests * request(prompt, 16)
    # the sweep asks a sample of the cell's tasks with the accuracy phase's sampling: answers of its length
    from runner.planning.selection import cell_sweep_requests

    count = min(cell_sweep_requests(matrix, cell), sum(tasks.by_language.values()))
    answer = request(prompt, output)
    sweep = sum(count * answer / gain(level) for level in settings.sweep)
    # an open-loop point sends for sweep_requests / rate seconds, or longer where the server answers slower
    # than the rate (taken to answer no faster than at the most requests in flight the matrix runs), then
    # waits for the last answer
    capacity = gain(max([*settings.sweep, settings.concurrency])) / answer
    sweep += sum(count / min(rate, capacity) + answer for rate in settings.sweep_rates)
    # the rate search's probes lie between the rates, or below the lowest: timed at the rates' median
    if settings.find_max_rate:
        probe = statistics.median(settings.sweep_rates)
        sweep += settings.find_max_rate * (count / min(probe, capacity) + answer)
    if not count:
        sweep = 0.0
    # the noise floor's tasks, asked again at the accuracy phase's concurrency and one at a time
    from runner.planning.selection import cell_repeats

    again = min(settings.repeat_tasks, sum(tasks.by_language.values())) if cell_repeats(matrix, cell) else 0
    repeat = again * request(prompt * ACCURACY_PREFILL_SHARE[device], output) * (1 / gain(settings.concurrency) + 1)
    load = served / LOAD_GIBPS + STARTUP_S[device].get(cell.runtime, 30.0)
    return GenerationTime(load_s=load + CELL_OVERHEAD_S[device], untimed_s=warmup + accuracy + repeat, timed_s=latency + sweep)


# -- verdicts reused ----------------------------------------------------------------------------------
#: the share of a technique cell's answers assumed to repeat its baseline's (so its verdicts come from
#: the verdict cache, ``settings.reuse_verdicts``) where no earlier run in the runs folder measured it.
#: A demo run on the 2-core VM reused 24 of its 3 technique cells' 24 verdicts and 158 of 248 over all
#: ten cells (the quantization rungs and vLLM repeating the Q4_K_M rung's answers); 0.6 stays below the
#: techniques' own 100%: eight answers each of a 0.5B model are a thin basis, and a quantized KV cache
#: or speculation under batching can change a token. Other cells (new weights, runtime or prompt
#: style) are assumed to reuse none: their answers are the quantity measured.
TECHNIQUE_REUSE = 0.6


class VerdictReuse(BaseModel):
    """Technique cells' judged answers in earlier runs, and how many of them repeated an answer of their
    baseline's group in the same run (its verdict taken from the cache)."""

    answers: int = 0
    reused: int = 0
    runs: dict[str, int] = Field(default_factory=dict)  # run -> technique answers counted

    @property
    def share(self) -> float | None:
        return min(self.reused / self.answers, 1.0) if self.answers else None


def verdict_reuse(runs_dir: Path | None, model: str | None = None) -> VerdictReuse:
    """``VerdictReuse`` over every run in ``runs_dir`` that reused verdicts, whatever its hardware (which
    answers repeat is the models' doing, not the machine's). A reuse counts where the verdict came from
    a cell of the same group (the technique cells and their baselines) of the same run, in either
    direction: cells running at once may judge a technique's answer first and reuse it for the baseline,
    the pair judging one verdict either way. Verdicts of an earlier run of the same matrix are left out:
    a rerun reusing them all says nothing of what a technique changes. ``model``: that model's cells only."""
    from runner.records import Outcome

    found = VerdictReuse()
    for store, manifest in _runs_in(runs_dir):
        folder = store.root
        try:
            # a run made before the verdict cache has no such setting, and judged every answer
            if (manifest.matrix.get("settings") or {}).get("reuse_verdicts") is not True:
                continue
            # only cells that have a record: the store's readers would make a missing cell's folder
            started = [c for c in manifest.cells if (folder / "cells" / c.slug / "cell.json").is_file()
                       and (model is None or c.model == model)]
            groups: dict[str, set[str]] = {}  # baseline id -> the ids of it and its technique cells
            technique: dict[str, str] = {}  # technique cell id -> its baseline's
            for cell in started:
                base = technique_baseline(cell, started)
                if base is not None:
                    technique[cell.id] = base.id
                    groups.setdefault(base.id, {base.id}).add(cell.id)
            if not technique:
                continue
            answers = reused = 0
            for cell in started:
                group = groups.get(technique.get(cell.id, cell.id))
                if group is None:
                    continue
                for sample in store.latest_samples(cell):
                    if sample.phase != "accuracy" or sample.outcome in (None, Outcome.error) or sample.error:
                        continue
                    answers += cell.id in technique
                    run, _, source = (sample.verdict_from or "").partition("/")
                    reused += run == manifest.name and source in group
        except (UserError, OSError, ValueError):
            continue  # a damaged or foreign folder: its figures are not worth a refusal
        if answers:
            found.answers += answers
            found.reused += min(reused, answers)
            found.runs[manifest.name] = found.runs.get(manifest.name, 0) + answers
    return found
