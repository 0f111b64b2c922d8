"""The typed records that pass between stages: tasks, verdicts, cells, samples.

Every stage takes and returns these; none passes dicts of dicts. A sample is one line of
``samples.jsonl`` and is the unit of resumption.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, computed_field


class Language(str, enum.Enum):
    python = "python"
    java = "java"


class Mode(str, enum.Enum):
    infill = "infill"
    completion = "completion"


class Outcome(str, enum.Enum):
    """Verdict of one piece of generated code, or ``error`` when no code was generated."""

    passed = "pass"
    fail = "fail"
    compile_error = "compile_error"
    runtime_error = "runtime_error"
    timeout = "timeout"
    error = "error"
    #: no answer could pass here: the task's own reference fails in this environment (a data file
    #: or library missing, the sandbox unable to run the program). Never the model's failure: the
    #: headline pass rate leaves it out; the paper's denominator counts it as a failure.
    unscoreable = "unscoreable"


class ExpectedOutputs(str, enum.Enum):
    """Which expected outputs judged a Python program's answers."""

    upstream = "upstream"  # the benchmark's recorded outputs
    re_recorded = "re-recorded"  # the reference's outputs re-recorded in this environment (float drift)


class Stage(str, enum.Enum):
    """Post-processing cascade stage, in the order upstream tries them."""

    cleaned = "cleaned"
    trimmed = "trimmed"
    reindented = "reindented"  # Python
    balanced = "balanced"  # Java


class TestCase(BaseModel):
    """One Python test case: code appended to the program and its expected stdout."""

    model_config = ConfigDict(frozen=True)

    code: str
    expected_output: str


class Program(BaseModel):
    """One benchmark program: a source file, its data folder and how it is checked."""

    model_config = ConfigDict(frozen=True)

    name: str  # upstream Task_Name, e.g. "simplex_method" or "CounterTester"
    language: Language
    source: Path  # the .py or .java file
    data_dir: Path  # the folder copied into the sandbox (data files, jars)
    output_to_check: str = "final_output"  # "final_output" | "all_output" (Python only)
    test_cases: tuple[TestCase, ...] = ()  # Python only; Java runs its JUnit tester
    tests_json: Path | None = None  # the test file upstream's scoring reads (a re-baselined copy wins)
    tester_class: str | None = None  # Java: the TestCase class the console launcher selects
    jars: tuple[Path, ...] = ()  # Java: extra class-path entries shipped with the program
    available: bool = True
    reason: str | None = None  # why it is unavailable


class Task(BaseModel):
    """One infill or completion task cut out of a program."""

    model_config = ConfigDict(frozen=True)

    id: str  # e.g. "python/infill/simplex_method/20-21"
    benchmark: str
    language: Language
    mode: Mode
    program: str
    span: tuple[int, int]  # 1-indexed, inclusive
    before: str
    reference: str
    after: str  # always run; hidden from the prompt in completion mode
    categories: tuple[str, ...] = ()
    available: bool = True
    reason: str | None = None


class Cascade(str, enum.Enum):
    """Which post-processing cascade and test harness judged an answer."""

    upstream = "upstream"  # SimCoPilot's own functions, loaded from the fetched copy (the paper's scoring)
    runner = "runner"  # this project's stricter, fence-aware cascade and checks


class CascadeVerdict(BaseModel):
    """One cascade's verdict on one answer."""

    cascade: Cascade
    outcome: Outcome
    stage: Stage | None = None  # the cascade stage whose code produced ``outcome``
    cleaned_outcome: Outcome  # the verdict on the cleaned-only code
    code: str = ""  # the post-processed code that was finally judged
    stderr_tail: str = ""
    pass_ratio: str | None = None  # upstream's "k/n" of test cases (upstream cascade only)
    unscoreable_reason: str | None = None  # for outcome == unscoreable: why no answer can pass here


class Verdict(BaseModel):
    """Result of evaluating one answer: the headline cascade's verdict, and each cascade's own."""

    outcome: Outcome
    stage: Stage | None = None  # the cascade stage whose code produced ``outcome``
    cleaned_outcome: Outcome  # the verdict on the cleaned-only code
    code: str  # the post-processed code that was finally judged
    stderr_tail: str = ""
    seconds: float = 0.0
    cascade: Cascade = Cascade.runner  # which of the two gives the headline fields above
    upstream: CascadeVerdict | None = None  # None where upstream's code or test file is not there
    runner: CascadeVerdict | None = None
    unscoreable_reason: str | None = None  # for outcome == unscoreable: why no answer can pass here
    expected_outputs: ExpectedOutputs | None = None  # Python programs: which expected outputs judged it


class EditionRef(BaseModel):
    """A SimCoPilot edition as a run records it: its name and the pinned repository and commit."""

    model_config = ConfigDict(frozen=True)

    name: str  # "2024" | "2025" (runner.benchmarks.editions, whose ``edition_ref`` makes this record)
    repository: str  # GitHub owner/name, e.g. "mj33rice/Sim-CoPilot"
    commit: str  # the full pinned sha

    @property
    def label(self) -> str:
        """``2025 (mj33rice/Sim-CoPilot@096d1c4)``."""
        return f"{self.name} ({self.repository}@{self.commit[:7]})"


class EditionVerdict(BaseModel):
    """One answer's headline verdict under another SimCoPilot edition's scoring code.

    ``runner score --edition 2024 --edition 2025`` keeps one per edition after the first (the
    headline, whose verdict is the answer's own fields); a run's ``compare_editions`` the same.
    """

    edition: str  # "2024" | "2025"
    outcome: Outcome
    stage: Stage | None = None
    cleaned_outcome: Outcome | None = None
    cascade: Cascade | None = None  # the headline cascade under that edition
    unscoreable_reason: str | None = None  # for outcome == unscoreable: why no answer can pass there
    expected_outputs: ExpectedOutputs | None = None
    error: str | None = None  # for outcome == error: why that edition's check could not judge it

    @classmethod
    def of(cls, edition: str, verdict: "Verdict") -> "EditionVerdict":
        """The headline fields of ``verdict``, judged under ``edition``."""
        return cls(edition=edition, outcome=verdict.outcome, stage=verdict.stage,
                   cleaned_outcome=verdict.cleaned_outcome, cascade=verdict.cascade,
                   unscoreable_reason=verdict.unscoreable_reason, expected_outputs=verdict.expected_outputs)


class Cell(BaseModel):
    """One point of the matrix: model x runtime x quantization x technique switches."""

    model_config = ConfigDict(frozen=True)

    model: str  # short model key, e.g. "llama3-70b"
    runtime: str  # registered runtime name, e.g. "llamacpp"
    quantization: str  # e.g. "q4_k_m", "bf16", "fp8"
    techniques: dict[str, str] = Field(default_factory=dict)  # e.g. {"spec": "ngram"}
    prompt_style: str = "instruct"
    label: str | None = None  # readable technique label, e.g. "ngram-spec"

    @property
    def id(self) -> str:
        """Readable, stable id such as ``llama3-70b/vllm/fp8/ngram-spec``."""
        tail = self.label or (
            "-".join(f"{k}={v}" for k, v in sorted(self.techniques.items())) or "baseline"
        )
        return f"{self.model}/{self.runtime}/{self.quantization}/{tail}"

    @property
    def slug(self) -> str:
        """The id as one path component, for run-directory folders."""
        return self.id.replace("/", "__")


class ServerTimings(BaseModel):
    """What a server reports about its own work on one request (llama.cpp ``timings``)."""

    prompt_n: int | None = None
    prompt_ms: float | None = None
    cache_n: int | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    draft_n: int | None = None
    draft_n_accepted: int | None = None


class ServerQuantization(BaseModel):
    """How a server says it runs the cell's weights, read from its own startup output (``cell.json``)."""

    method: str | None = None  # the quantization method it resolved (vLLM: auto_awq, auto_gptq, fp8); None: none
    dtype: str | None = None  # the activation dtype it runs, e.g. torch.float16
    #: the linear kernels it picked for the quantized layers, e.g. ["MacheteLinearKernel"], in the order logged
    kernels: list[str] = Field(default_factory=list)
    #: the lines it was read from, as the server wrote them
    evidence: list[str] = Field(default_factory=list)

    @computed_field  # written to cell.json beside ``kernels``
    @property
    def kernel(self) -> str | None:
        """The kernel of the quantized layers, where they share one (else None: see ``kernels``)."""
        return self.kernels[0] if len(self.kernels) == 1 else None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Sample(BaseModel):
    """One answered (or failed) request: one line of ``samples.jsonl``."""

    task_id: str
    cell_id: str
    #: "accuracy" | "repeat" | "repeat-serial" (the noise floor: runner.measuring.noise) | "latency" | "replay" | "sweep"
    phase: str = "accuracy"
    #: the server's cache when the request was sent (latency phases): ``cold`` (no reusable prefix:
    #: reset by the runtime's own means), ``warm`` (the previous task of the same program was just
    #: served: a shared prefix, never the same prompt), ``replay`` (the identical prompt was just served)
    cache_state: str | None = None
    #: prompt tokens the server reused from its cache, by its own count (llama.cpp ``timings.cache_n``,
    #: vLLM ``usage.prompt_tokens_details.cached_tokens``); None when the server does not say
    cached_tokens: int | None = None
    #: the sweep point a ``sweep`` sample was asked at (``runner.store.load_label``): ``c4``, four
    #: requests in flight, or ``r0.5``, Poisson arrivals at 0.5 requests per second
    load: str | None = None
    prompt_style: str
    prompt_sha256: str
    raw_text: str = ""
    code: str | None = None
    stage: Stage | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None  # time to the first non-empty text
    e2e_s: float | None = None
    itl_s: list[float] = Field(default_factory=list)  # gaps between streamed chunks after the first
    tpot_s: float | None = None  # (e2e - ttft) / (completion_tokens - 1)
    server_timings: ServerTimings | None = None
    system_fingerprint: str | None = None  # the server build that answered (llama.cpp b<build>-<commit>)
    chat_template_sha256: str | None = None  # the chat template the server applied (chat prompts)
    outcome: Outcome | None = None  # None until evaluated (the headline cascade's verdict)
    cleaned_outcome: Outcome | None = None
    cascade: Cascade | None = None  # the headline cascade
    upstream: CascadeVerdict | None = None  # both verdicts are kept on every evaluated sample
    runner: CascadeVerdict | None = None
    stderr_tail: str = ""
    error: str | None = None  # why the request failed, for outcome == error
    unscoreable_reason: str | None = None  # for outcome == unscoreable: why no answer can pass here
    expected_outputs: ExpectedOutputs | None = None  # Python programs: which expected outputs judged it
    #: seconds its headline verdict took to reach (every cascade stage and test run; the plan's
    #: estimate of judging time on this hardware reads it back); None until evaluated. For a
    #: verdict reused from the verdict cache (``verdict_from``), the lookup's own time (milliseconds)
    eval_seconds: float | None = None
    #: where the verdict was first judged when it was reused from the verdict cache
    #: (``runner.evaluation.verdicts``): ``<run>/<cell id>`` of the sample it was judged for (the cell
    #: id alone where that run is not known); None when it was judged for this sample
    verdict_from: str | None = None
    #: the same answer under each of the run's ``compare_editions`` (the headline edition's verdict is above)
    editions: list[EditionVerdict] = Field(default_factory=list)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None

    @property
    def phase_key(self) -> str:
        """The phase with the cache state or sweep point, e.g. ``latency/cold``, ``sweep@c4``: one
        sample per task and key."""
        if self.load:
            return f"{self.phase}@{self.load}"
        return f"{self.phase}/{self.cache_state}" if self.cache_state else self.phase
