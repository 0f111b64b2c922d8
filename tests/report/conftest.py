"""Run directories for the report tests: one real small run (``small_run``), and runs built through
``RunStore`` the way ``runner reproduce`` writes them.

Two machines (an H100 host and a 2× A100 host), a Llama-3-70B matrix with a BF16 baseline, an
FP8 quantization, an n-gram speculative-decoding technique, a failed llama.cpp cell with error
samples, on the real starter benchmark's tasks (so categories resolve).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner.benchmarks import load_benchmark
from runner.measuring.noise import REPEAT
from runner.report import ReportPaths, render
from runner.running.run import RunOutcome
from runner.records import Cascade, CascadeVerdict, Cell, Outcome, Sample, ServerTimings, Stage
from runner.store import CellResult, Fingerprint, Manifest, ModelRecord, RunStore, SweepPoint
from tests.conftest import SHARED_CACHE

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)

BASELINE = Cell(model="llama3-70b", runtime="vllm", quantization="bf16", label="baseline")
FP8 = Cell(model="llama3-70b", runtime="vllm", quantization="fp8", label="baseline")
SPEC = Cell(model="llama3-70b", runtime="vllm", quantization="bf16", techniques={"spec": "ngram"}, label="ngram-spec")
GGUF = Cell(model="llama3-70b", runtime="llamacpp", quantization="q4_k_m", label="baseline")

H100 = Fingerprint(hostname="gpu-a", gpus=[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559,
                                            "driver": "550.54.15", "cuda": "12.4", "uuid": "GPU-aaaa"}],
                   cpu="AMD EPYC 9454 48-Core Processor", cpu_count=96, ram_gib=754.9,
                   os="Ubuntu 22.04.4 LTS (kernel 5.15.0-105-generic)", python="3.11.9",
                   packages={"runner": "0.1.0", "vllm": "0.6.3", "torch": "2.4.0", "numpy": "2.4.6"},
                   runner_version="0.1.0", git_commit="a21a915f00d1c0ffee", git_dirty=False)
A100 = Fingerprint(hostname="gpu-b", gpus=[{"index": i, "name": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920,
                                            "driver": "535.161.08", "cuda": "12.2", "uuid": f"GPU-b{i}"}
                                           for i in range(2)],
                   cpu="Intel(R) Xeon(R) Platinum 8358", cpu_count=128, ram_gib=1007.7,
                   os="Debian GNU/Linux 12 (bookworm) (kernel 6.1.0-18-amd64)", python="3.11.2",
                   packages={"runner": "0.1.0", "vllm": "0.6.3", "torch": "2.4.0"},
                   runner_version="0.1.0", git_commit="a21a915f00d1c0ffee", git_dirty=True)

# per cell: pass probability, e2e median (s), TTFT median (s)
PROFILE = {BASELINE.id: (0.62, 4.0, 0.30), FP8.id: (0.60, 2.6, 0.22), SPEC.id: (0.62, 2.2, 0.31),
           GGUF.id: (0.50, 6.0, 0.9)}


def prompt_sha(style: str, task_id: str) -> str:
    return hashlib.sha256(f"{style}\0{task_id}".encode()).hexdigest()


def make_sample(cell: Cell, task_id: str, phase: str, rng: random.Random, speed: float = 1.0,
                outcome: Outcome | None = None) -> Sample:
    p_pass, e2e_median, ttft_median = PROFILE[cell.id]
    if outcome is None and phase == "accuracy":
        # a task's difficulty is shared by every cell (greedy answers mostly agree); 10% of verdicts flip
        difficulty = random.Random(task_id).random()
        passes = (difficulty < p_pass) != (rng.random() < 0.1)
        outcome = Outcome.passed if passes else rng.choice(
            [Outcome.fail, Outcome.compile_error, Outcome.runtime_error, Outcome.fail])
    e2e = e2e_median * rng.lognormvariate(0, 0.25) / speed
    ttft = min(e2e / 3, ttft_median * rng.lognormvariate(0, 0.2) / speed)
    tokens = rng.randint(20, 200)
    gaps = [(e2e - ttft) / (tokens - 1)] * min(tokens - 1, 8)
    stage = None
    if outcome == Outcome.passed:
        stage = rng.choice([Stage.cleaned, Stage.cleaned, Stage.trimmed, Stage.reindented])
    cleaned = outcome if stage in (None, Stage.cleaned) else Outcome.fail
    started = T0 + timedelta(seconds=rng.randint(0, 3600))
    both = {}
    if phase == "accuracy" and outcome is not None:
        # upstream's verdict is the headline; ours differs on about one task in five (own generator,
        # so the other figures stay as they were)
        flip = random.Random(f"{cell.id}/{task_id}").random() < 0.2
        ours = (Outcome.fail if outcome == Outcome.passed else Outcome.passed) if flip else outcome
        both = {"cascade": Cascade.upstream,
                "upstream": CascadeVerdict(cascade=Cascade.upstream, outcome=outcome, stage=stage, cleaned_outcome=cleaned),
                "runner": CascadeVerdict(cascade=Cascade.runner, outcome=ours, cleaned_outcome=ours)}
    return Sample(**both, task_id=task_id, cell_id=cell.id, phase=phase, prompt_style=cell.prompt_style,
                  prompt_sha256=prompt_sha(cell.prompt_style, task_id),
                  raw_text="```python\n    total += weight[i] * value[i]  # <script>alert(1)</script>\n```",
                  code="    total += weight[i] * value[i]", stage=stage, finish_reason="stop",
                  prompt_tokens=rng.randint(300, 3000), completion_tokens=tokens, ttft_s=ttft, e2e_s=e2e,
                  itl_s=gaps, tpot_s=(e2e - ttft) / (tokens - 1),
                  server_timings=ServerTimings(prompt_n=500, prompt_ms=ttft * 900, predicted_n=tokens,
                                               predicted_ms=(e2e - ttft) * 1000),
                  system_fingerprint="vllm-0.6.3" if cell.runtime == "vllm" else "b4500-abcdef0",
                  outcome=outcome if phase == "accuracy" else None,
                  cleaned_outcome=cleaned if phase == "accuracy" else None,
                  stderr_tail="Traceback (most recent call last):\nAssertionError: expected 3" if outcome not in
                  (None, Outcome.passed) else "", started_at=started, finished_at=started + timedelta(seconds=e2e))


#: the judged sweep's SLO (as a manifest keeps it: null for inf): an e2e bound the higher loads break
SWEEP_SLO = {"ttft_s": 30.0, "ttft_percentile": 95.0, "itl_ms": None, "itl_percentile": 99.0, "tpot_ms": None,
             "e2e_s": 8.0, "attainment": 0.9}
#: the judged sweep's loads: concurrency and Poisson rates, with how much each slows a request down
SWEEP_LOADS = ((1, None, 1.0), (4, None, 1.3), (16, None, 2.4), (None, 0.5, 1.0), (None, 2.0, 1.9))
SWEEP_TASKS = 16
SWEEP_ERROR = "RemoteProtocolError: the server dropped the connection at c16"
#: per cell and load, the sweep tasks (by index in the sample) whose answer text differs from the
#: accuracy answer, and those whose verdict flips with it; the baseline's repetition changed 1 of 12
SWEEP_CHANGES = {BASELINE.id: {"c1": (set(), set()), "c4": ({3}, set()), "c16": (set(range(9)), {0, 1, 2}),
                               "r0.5": (set(), set()), "r2": ({5, 6}, {5})},
                 FP8.id: {"c4": ({2}, {2}), "c16": ({1, 2}, {2})}}


def judged_sweep(store: RunStore, cell: Cell, tasks: list[str], rng: random.Random, speed: float) -> list[SweepPoint]:
    """Sweep samples (phase ``sweep``, ``load`` the point's label) judged like the accuracy phase's: most
    answers the accuracy answer again, some changed (``SWEEP_CHANGES``); the last request of c16 fails."""
    accuracy = {s.task_id: s for s in store.latest_samples(cell) if s.phase == "accuracy" and s.error is None}
    sample = [t for t in tasks if t in accuracy][::2][:SWEEP_TASKS]
    points = []
    for concurrency, rate, slower in SWEEP_LOADS:
        label = f"c{concurrency}" if rate is None else f"r{rate:g}"
        changed, flipped = SWEEP_CHANGES.get(cell.id, {}).get(label, (set(), set()))
        tokens = 0
        for i, task_id in enumerate(sample):
            if label == "c16" and i == len(sample) - 1:
                store.append_sample(cell, Sample(task_id=task_id, cell_id=cell.id, phase="sweep", load=label,
                                                 prompt_style=cell.prompt_style,
                                                 prompt_sha256=prompt_sha(cell.prompt_style, task_id),
                                                 outcome=Outcome.error, error=SWEEP_ERROR, finished_at=T0))
                continue
            before = accuracy[task_id]
            timed = make_sample(cell, task_id, "sweep", rng, speed / slower)
            outcome = before.outcome
            if i in flipped:
                outcome = Outcome.fail if outcome == Outcome.passed else Outcome.passed
            tokens += timed.completion_tokens or 0
            store.append_sample(cell, timed.model_copy(update={
                "load": label, "outcome": outcome, "cleaned_outcome": outcome,
                "raw_text": before.raw_text + (f"\n# changed at {label}" if i in changed else "")}))
        # closed loop: the batch's pace; open loop: the arrivals' pace, unless the server falls behind it
        busy = SWEEP_TASKS * PROFILE[cell.id][1] * slower / (speed * (concurrency or 4))
        seconds = busy if rate is None else max(SWEEP_TASKS / rate, busy)
        answered = SWEEP_TASKS - (label == "c16")
        points.append(SweepPoint(concurrency=concurrency, rate=rate, requests=answered, seconds=seconds,
                                 requests_per_s=answered / seconds, output_tokens_per_s=tokens / seconds,
                                 errors=SWEEP_TASKS - answered, tasks=SWEEP_TASKS))
    return points


def write_run(root: Path, name: str, fingerprint: Fingerprint, cells: list[Cell], *, speed: float, seed: int,
              failed: Cell | None = None, benchmark: str = "starter", judged: bool = False) -> RunStore:
    """A finished run directory: manifest, cell records with sweeps, accuracy and latency samples.
    ``judged``: its sweep judged its answers (``judged_sweep``: concurrency and rate points, an SLO, and
    the baseline's noise floor), as runs do since issue 29; else a throughput-only sweep."""
    tasks = [t.id for t in load_benchmark("starter").tasks]
    rng = random.Random(seed)
    store = RunStore(root / name)
    matrix = {"name": name, "benchmark": benchmark, "backend": "docker",
              "tasks": {"languages": [], "modes": [], "programs": [], "limit": None},
              "settings": {"max_tokens": 200, "temperature": 0.0, "seed": 0, "concurrency": 8, "sweep": [1, 4, 16]}}
    if judged:
        matrix["settings"].update(sweep_rates=[0.5, 2.0], sweep_requests=SWEEP_TASKS, repeat_tasks=12)
        matrix["slo"] = SWEEP_SLO
    store.write_manifest(Manifest(
        name=name, matrix_path="matrices/paper.toml", matrix=matrix, cells=cells, fingerprint=fingerprint,
        models=[ModelRecord(key="llama3-70b", path="/models/Meta-Llama-3-70B-Instruct",
                            source="hf:meta-llama/Meta-Llama-3-70B-Instruct@7129260",
                            revision="7129260dd854a80eb10ace5f61c20324b472b31c", sha256="9" * 64)],
        images={"vllm": "sha256:" + "1" * 64}, runtime_versions={"vllm": "0.6.3"},
        prompt_set_sha256={"instruct": hashlib.sha256("\n".join(tasks).encode()).hexdigest()},
        started_at=T0, finished_at=T0 + timedelta(hours=3)))
    latency_tasks = random.Random(0).sample(tasks, 12)
    for cell in cells:
        if cell == failed:
            # the server died after a few answers: some verdicts, then request errors
            for task_id in tasks[:6]:
                store.append_sample(cell, make_sample(cell, task_id, "accuracy", rng, speed))
            for task_id in tasks[6:9]:
                store.append_sample(cell, Sample(task_id=task_id, cell_id=cell.id, prompt_style=cell.prompt_style,
                                                 prompt_sha256=prompt_sha(cell.prompt_style, task_id),
                                                 outcome=Outcome.error, error="server disconnected: ConnectError",
                                                 finished_at=T0))
            store.write_cell(CellResult(cell=cell, status="failed", backend="docker", load_seconds=312.0,
                                        reason="server died during the cell (CUDA error: out of memory); "
                                               "log runs/x/server.log"))
            continue
        for task_id in tasks[:-1]:
            store.append_sample(cell, make_sample(cell, task_id, "accuracy", rng, speed))
        # the last task's request timed out: an error sample in a finished cell
        store.append_sample(cell, Sample(task_id=tasks[-1], cell_id=cell.id, prompt_style=cell.prompt_style,
                                         prompt_sha256=prompt_sha(cell.prompt_style, tasks[-1]),
                                         outcome=Outcome.error, error="ReadTimeout after 300 s", finished_at=T0))
        # the first latency request failed once and was retried: the retry supersedes the error
        store.append_sample(cell, Sample(task_id=latency_tasks[0], cell_id=cell.id, phase="latency",
                                         prompt_style=cell.prompt_style,
                                         prompt_sha256=prompt_sha(cell.prompt_style, latency_tasks[0]),
                                         outcome=Outcome.error, error="RemoteProtocolError (superseded)",
                                         finished_at=T0))
        for task_id in latency_tasks:
            store.append_sample(cell, make_sample(cell, task_id, "latency", rng, speed))
        _, e2e, _ = PROFILE[cell.id]
        sweep = [SweepPoint(concurrency=c, requests=32, seconds=32 * e2e / (speed * c ** 0.8),
                            requests_per_s=speed * c ** 0.8 / e2e, output_tokens_per_s=200 * speed * c ** 0.8 / e2e)
                 for c in (1, 4, 16)]
        if judged:
            if cell == BASELINE:  # its noise floor: 12 tasks asked again at concurrency 8, one answer changed
                for k, task_id in enumerate(latency_tasks):
                    again = make_sample(cell, task_id, "accuracy", rng, speed)
                    store.append_sample(cell, again.model_copy(update={
                        "phase": REPEAT, "raw_text": again.raw_text + ("\n# repeated" if k == 0 else "")}))
            sweep = judged_sweep(store, cell, tasks, rng, speed)
        store.write_cell(CellResult(cell=cell, status="done", backend="docker", load_seconds=180.0 / speed,
                                    server_version="0.6.3", image_digest="sha256:" + "1" * 64, sweep=sweep,
                                    peak_gpu_memory_mib=76000.0, energy_joules=250.0 * len(tasks) / speed,
                                    started_at=T0, finished_at=T0 + timedelta(hours=1)))
    return store


@pytest.fixture
def two_machine_runs(tmp_path) -> list[Path]:
    """An H100 run with four cells (one failed) whose sweep judged its answers, and an A100 run of two of
    the same cells with a throughput-only sweep (a run from before judged sweeps)."""
    runs = tmp_path / "runs"
    h100 = write_run(runs, "paper-h100", H100, [BASELINE, FP8, SPEC, GGUF], speed=1.0, seed=1, failed=GGUF,
                     judged=True)
    a100 = write_run(runs, "paper-a100", A100, [BASELINE, FP8], speed=0.6, seed=2)
    return [h100.root, a100.root]


def small_matrix(folder: Path) -> Path:
    """Two llama.cpp cells (a baseline and n-gram speculation) of Gemma 3 270M on 4 starter tasks."""
    from tests.llama_server import gemma_gguf

    path = folder / "report-demo.toml"
    path.write_text(f"""
name = "report-demo"
benchmark = "starter"
[tasks]
languages = ["python"]
programs = ["lu_solver", "shortest_paths"]
limit = 4
[settings]
max_tokens = 24
concurrency = 2
latency_tasks = 2
warmup_requests = 1
sweep = [1, 2]
sweep_requests = 2
request_timeout_s = 120
health_timeout_s = 300
threads = 2           # one server at a time: both cores (1 took 1.6x as long on the 2-core CI host)
[models.gemma3-report]
name = "Gemma 3 270M"
chat = false
prompt_styles = ["instruct"]
[models.gemma3-report.quantizations.q4_k_m]
kind = "path"
path = "{gemma_gguf()}"
[[cells]]
model = "gemma3-report"
runtime = "llamacpp"
quantization = "q4_k_m"
techniques = {{ parallel = 2 }}
variants = [{{ label = "ngram-spec", techniques = {{ spec = "ngram" }} }}]
""")
    return path


@dataclass
class SmallRun:
    """A finished real run and its rendered report."""

    outcome: RunOutcome
    paths: ReportPaths


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> SmallRun:
    """The real small run (llama.cpp, Gemma 3 270M, evaluated for real), made once per session and rendered."""
    from runner.matrix import load_matrix
    from runner.running.run import RunOptions, reproduce

    root = tmp_path_factory.mktemp("small-run")
    # session-scoped, so the per-test isolated_home is not active yet: isolate the same way here
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RUNNER_HOME", str(root / "home"))
        env.setenv("RUNNER_CACHE", str(SHARED_CACHE))
        outcome = reproduce(load_matrix(small_matrix(root)), RunOptions(runs_dir=root / "runs"))
        assert [r.status for r in outcome.results] == ["done", "done"], [r.reason for r in outcome.results]
        paths = render([outcome.run_dir], root / "report")
    return SmallRun(outcome=outcome, paths=paths)
