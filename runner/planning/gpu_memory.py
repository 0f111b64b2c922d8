"""GPU memory true to real cards: what each kind of GPU offers, what a cell needs, whether it fits.

A cell's need (``cell_memory``) is three parts:

- **its weights** as they sit in GPU memory: the source's ``weights_gib``, else its ``disk_gib``
  (a dequantized folder is float32 on disk and served as bf16: half of it). A lock's file sizes,
  where a matrix has one, are the same input: the sum of the locked files, in GiB.
- **its KV cache**: the server's sequences (``parallel``, else the runtime's default of 8: llama.cpp's
  ``--parallel`` slots, vLLM's ``--max-num-seqs``, ExLlamaV2's ``max_batch_size``) each at the model's
  full context, times the bytes per token, 2 (K and V) x layers x kv_heads x head_dim x the bytes
  of one element of the cell's KV dtype (``KV_BYTES``). Llama-3-70B in 16 bits: 2 x 80 x 8 x 128 x 2
  = 327,680 bytes a token, 10 GiB for 8 x 4,096 tokens. Without ``[models.X.architecture]`` the
  plan counts the weights alone and says so.
- **the runtime's overhead on each GPU** (``RUNTIME_OVERHEAD``): CUDA context, activations, CUDA
  graphs, scratch buffers; a stated constant per runtime with its basis.

On ``g`` GPUs each holds 1/g of the weights and of the KV cache (vLLM splits the KV heads by its
tensor-parallel degree but never one head: ``ceil(kv_heads / g)`` heads a GPU) plus the overhead.
A cell fits when that is at most what a GPU offers: NVML's total (``GPU_KINDS`` for a GPU that is
not here), and for vLLM only ``--gpu-memory-utilization`` of it (``runner.runtimes.vllm``). A
``gpu_memory_gib`` in the matrix is a measured need, all GPUs together: it is trusted over the model.
The criterion is stricter than a server's start: vLLM starts with room for one full sequence and
preempts the rest; a cell that fits here holds every sequence at full context at once.
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, ConfigDict

from runner.errors import UserError
from runner.matrix import Matrix, ModelSource
from runner.records import Cell


class GpuKind(BaseModel):
    """One GPU model as NVML reports it (``nvmlDeviceGetMemoryInfo().total``, nvidia-smi's memory.total)."""

    model_config = ConfigDict(frozen=True)

    key: str  # what --assume-gpus names
    name: str  # nvmlDeviceGetName
    memory_mib: int  # NVML's total
    seen: str  # where that total was read

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


#: the totals NVML reports, read from nvidia-smi output published with each card (an "80 GB" card is
#: 80 GB decimal less what the driver keeps: 81,559 MiB = 79.6 GiB on an H100). CUDA itself offers a
#: little less (cudaMemGetInfo: 81,106 MiB on an H100, thamada/nvidia-smi nvsim/H100SXMx8_deviceQuery.py;
#: vLLM logs "total_gpu_memory (79.19GiB)", generative-computing/mellea#416): RUNTIME_OVERHEAD counts it
GPU_KINDS: tuple[GpuKind, ...] = (
    GpuKind(key="h100-80gb", name="NVIDIA H100 80GB HBM3", memory_mib=81559,
            seen="nvidia-smi in NVIDIA/nccl#1264 and wilicc/gpu-burn#114; modal-labs/modal-client#2797"),
    GpuKind(key="h100-pcie-80gb", name="NVIDIA H100 PCIe", memory_mib=81559,
            seen="nvidia-smi --query-gpu=name,memory.total in public run reports ('NVIDIA H100 PCIe, 81559 MiB')"),
    GpuKind(key="h200-141gb", name="NVIDIA H200", memory_mib=143771,
            seen="nvidia-smi of 8x H200 nodes in public repositories ('0MiB / 143771MiB', driver 570.158.01)"),
    GpuKind(key="a100-80gb", name="NVIDIA A100-SXM4-80GB", memory_mib=81920,
            seen="modal-labs/modal-client#2797; dexmal/dexbotic#41 (A800-SXM4-80GB, the same memory)"),
    GpuKind(key="a100-40gb", name="NVIDIA A100-SXM4-40GB", memory_mib=40960, seen="modal-labs/modal-client#2797"),
    GpuKind(key="l40s-48gb", name="NVIDIA L40S", memory_mib=46068,
            seen="modal-labs/modal-client#2797; akash-network/provider-configs#99"),
    GpuKind(key="rtx4090-24gb", name="NVIDIA GeForce RTX 4090", memory_mib=24564, seen="RLinf/RLinf#255"),
)


class Overhead(BaseModel):
    """What a runtime's server holds on each GPU besides weights and KV cache, and what the figure rests on."""

    gib: float
    basis: str


#: per GPU, GiB: stated estimates, not measured here (no GPU); each includes the ~0.45-0.7 GiB that
#: NVML counts and CUDA never hands out (81,559 - 81,106 MiB on an H100) and the CUDA context
RUNTIME_OVERHEAD: dict[str, Overhead] = {
    "vllm": Overhead(gib=3.5, basis=(
        "vLLM's own profile logs: non-torch memory (CUDA context, NCCL buffers under tensor parallel) 0.2-2.0 GiB "
        "and the profile run's activation peak 1.0-3.0 GiB (vllm-project/vllm#11743, #10909, #14452), CUDA "
        "graphs 0.1-1 GiB ('Graph capturing finished ... took 0.13 GiB', generative-computing/mellea#416)")),
    "llamacpp": Overhead(gib=2.0, basis=(
        "llama.cpp's compute buffers, ~0.7 GiB a GPU at n_ubatch 512 with pipeline-parallel copies "
        "('CUDA0 compute buffer size = 672.01 MiB', ggml-org/llama.cpp#6122), and the CUDA context; its "
        "token embeddings stay in host memory, so a GGUF's file size overstates the GPU's share")),
    "exllama": Overhead(gib=2.0, basis=(
        "ExLlamaV2's autosplit reserve (192 MiB on the first GPU, 64 on the others, plus a 256 MiB floor: "
        "exllamav2/model.py load_autosplit_gen), its fixed scratch for a 2,048-token chunk, the Q cache's fp16 "
        "staging layer, and the CUDA context; its embeddings stay in host memory")),
}

#: bytes per KV element by the cell's KV dtype (its ``kv_cache`` technique; each runtime's default is
#: 16-bit). llama.cpp's q8_0 and q4_0 store 32 values in 34 and 18 bytes (ggml block layout);
#: ExLlamaV2's Q8/Q6/Q4 caches store K and V at 8/8, 8/4 and 4/4 bits plus an fp16 scale per 32
#: values (exllamav2/cache.py: ExLlamaV2Cache_Q8/Q6/Q4, ``shape_s`` = head_dim // 32)
KV_BYTES: dict[str, float] = {
    "auto": 2.0, "f16": 2.0, "fp16": 2.0, "bf16": 2.0, "f32": 4.0,
    "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0,
    "q8_0": 34 / 32, "q4_0": 18 / 32,
    "q8": 1.0 + 2 / 32, "q6": 0.75 + 2 / 32, "q4": 0.5 + 2 / 32,
}


class CellMemory(BaseModel):
    """What one cell's server needs, per GPU and in all, and what each figure rests on."""

    gpus: int  # the GPUs its server is given
    shards: int  # over how many the weights and KV are split (vLLM: its tensor-parallel degree)
    weights_gib: float | None  # None: the matrix gives no size
    weights_from: str  # the matrix key the weights' size comes from
    kv_gib: float | None  # all sequences at full context; None: the model has no [architecture]
    kv_bytes_per_token: float | None
    sequences: int
    context: int
    kv_dtype: str
    overhead_gib: float  # per GPU
    kv_share: float = 1.0  # of the KV cache, what each GPU holds
    measured_gib: float | None = None  # the matrix's gpu_memory_gib: trusted over the model

    @property
    def per_gpu_gib(self) -> float | None:
        """What each of its GPUs must hold (None: the weights' size is unknown)."""
        if self.measured_gib is not None:
            return self.measured_gib / self.shards
        if self.weights_gib is None:
            return None
        return self.weights_gib / self.shards + (self.kv_gib or 0.0) * self.kv_share + self.overhead_gib

    @property
    def total_gib(self) -> float | None:
        """All its GPUs together."""
        per = self.per_gpu_gib
        return None if per is None else per * self.shards

    @property
    def host_gib(self) -> float | None:
        """What it needs in memory on a CPU, no GPU overhead: weights and KV cache."""
        if self.measured_gib is not None:
            return self.measured_gib
        if self.weights_gib is None:
            return None
        return self.weights_gib + (self.kv_gib or 0.0)

    def basis(self) -> str:
        """The arithmetic behind ``per_gpu_gib``, in words."""
        if self.measured_gib is not None:
            return f"gpu_memory_gib = {self.measured_gib:g} (measured) over {self.shards} GPU(s)"
        if self.weights_gib is None:
            return "weights of unknown size (no disk_gib or weights_gib in the matrix)"
        kv = ("no KV cache counted: the model has no [architecture]" if self.kv_gib is None else
              f"KV {self.kv_gib:.1f} GiB ({self.sequences} x {self.context:,} tokens x "
              f"{self.kv_bytes_per_token:,.0f} bytes, {self.kv_dtype})")
        return (f"weights {self.weights_gib:.1f} GiB ({self.weights_from}) + {kv}, over {self.shards} GPU(s), "
                f"+ {self.overhead_gib:g} GiB overhead a GPU")


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, element_bytes: float) -> float:
    """K and V of one token over every layer: 2 x layers x kv_heads x head_dim x bytes per element."""
    return 2 * layers * kv_heads * head_dim * element_bytes


def weights(source: ModelSource) -> tuple[float | None, str]:
    """The weights' size in GPU memory (GiB) and the matrix key it comes from."""
    if source.weights_gib is not None:
        return source.weights_gib, "weights_gib"
    if source.disk_gib is not None:
        # a dequantized folder is float32 on disk; servers load it as bf16
        return (source.disk_gib / 2, "disk_gib / 2, float32 files served as bf16") if source.kind == "dequantize" \
            else (source.disk_gib, "disk_gib")
    return None, "no size"


def _sequences(cell: Cell) -> int:
    from runner.runtimes.exllama import DEFAULT_SLOTS as EXLLAMA_SLOTS
    from runner.runtimes.llamacpp import DEFAULT_SLOTS as LLAMACPP_SLOTS
    from runner.runtimes.vllm import DEFAULT_SEQS

    default = {"vllm": DEFAULT_SEQS, "llamacpp": LLAMACPP_SLOTS, "exllama": EXLLAMA_SLOTS}.get(cell.runtime, 8)
    return int(cell.techniques.get("parallel", default))


def kv_dtype(cell: Cell) -> str:
    """The cell's KV dtype as its runtime names it: its ``kv_cache`` technique, else 16-bit (fp32 weights: 32)."""
    chosen = cell.techniques.get("kv_cache")
    if chosen:
        return chosen
    if cell.runtime == "vllm":
        return "f32" if cell.quantization == "fp32" else "auto"
    return "fp16" if cell.runtime == "exllama" else "f16"


def shards(cell: Cell, gpus: int) -> int:
    """Over how many GPUs a server on ``gpus`` GPUs splits the model: vLLM's ``tensor_parallel``, else all."""
    if cell.runtime == "vllm" and "tensor_parallel" in cell.techniques:
        return max(1, int(cell.techniques["tensor_parallel"]))
    return max(1, gpus)


def cell_memory(matrix: Matrix, cell: Cell, gpus: int | None = None) -> CellMemory:
    """What ``cell`` needs on ``gpus`` GPUs (default: the GPUs the matrix gives it)."""
    source, spec = matrix.source(cell), matrix.model(cell)
    gpus = matrix.request(cell).gpus if gpus is None else gpus
    split = shards(cell, gpus)
    size, key = weights(source)
    dtype = kv_dtype(cell)
    sequences, context = _sequences(cell), spec.context_length
    per_token = kv = None
    share = 1.0 / split
    if spec.architecture is not None:
        arch = spec.architecture
        per_token = kv_bytes_per_token(arch.layers, arch.kv_heads, arch.head_dim, KV_BYTES.get(dtype, 2.0))
        kv = per_token * sequences * context / 2**30
        if cell.runtime == "vllm":  # a KV head is never split: past kv_heads GPUs they are replicated
            share = math.ceil(arch.kv_heads / split) / arch.kv_heads
    overhead = RUNTIME_OVERHEAD.get(cell.runtime, Overhead(gib=2.0, basis="assumed")).gib
    memory = CellMemory(gpus=gpus, shards=split, weights_gib=size, weights_from=key, kv_gib=kv,
                        kv_bytes_per_token=per_token, sequences=sequences, context=context, kv_dtype=dtype,
                        overhead_gib=overhead, kv_share=share, measured_gib=source.gpu_memory_gib)
    return memory


def usable_gib(runtime: str, capacity_gib: float) -> float:
    """What a server of ``runtime`` may use of a GPU of ``capacity_gib``: vLLM its utilization share, others all."""
    if runtime == "vllm":
        from runner.runtimes.vllm import GPU_MEMORY_UTILIZATION

        return capacity_gib * GPU_MEMORY_UTILIZATION
    return capacity_gib


def gpus_key(matrix: Matrix, cell: Cell) -> str:
    """The matrix key that sets how many GPUs ``cell`` is given."""
    if matrix.request(cell).gpus != matrix.source(cell).gpus:
        return "gpus of its [[cells]] group"
    quant = cell.quantization if re.fullmatch(r"[A-Za-z0-9_-]+", cell.quantization) else f'"{cell.quantization}"'
    return f"models.{cell.model}.quantizations.{quant}.gpus"


def refusal(matrix: Matrix, cell: Cell, capacities: list[float], name: str = "GPU") -> str | None:
    """Why ``cell`` cannot fit its GPUs among GPUs of ``capacities`` GiB (named ``name``), or None when it fits."""
    memory = cell_memory(matrix, cell)
    per = memory.per_gpu_gib
    if per is None or not capacities:
        return None
    chosen = sorted(capacities, reverse=True)[:memory.shards]
    offered = usable_gib(cell.runtime, min(chosen))
    if per <= offered:
        return None
    share = "" if cell.runtime != "vllm" else (
        f" (--gpu-memory-utilization {usable_gib('vllm', 1.0):g} of {min(chosen):.1f} GiB)")
    return (f"needs {per:.1f} GiB on each of {memory.shards} GPU(s) ({memory.basis()}) and each {name} here offers "
            f"{offered:.1f} GiB{share}; {_fix(matrix, cell, capacities)}")


def _fix(matrix: Matrix, cell: Cell, capacities: list[float]) -> str:
    """What to set so that ``cell`` fits GPUs of ``capacities``: the smallest count that does."""
    key = gpus_key(matrix, cell)
    tp = cell.runtime == "vllm"
    # vLLM splits attention heads evenly: powers of two divide every model here
    counts = [n for n in range(1, len(capacities) + 1) if not tp or n & (n - 1) == 0]
    for n in counts:
        probe = cell.model_copy(update={"techniques": {k: v for k, v in cell.techniques.items()
                                                       if k != "tensor_parallel"}})
        memory = cell_memory(matrix, probe, n)
        chosen = sorted(capacities, reverse=True)[:n]
        if memory.per_gpu_gib is not None and memory.per_gpu_gib <= usable_gib(cell.runtime, min(chosen)):
            also = " and its cells' techniques.tensor_parallel" if "tensor_parallel" in cell.techniques else ""
            return f"set {key}{also} = {n} (then {memory.per_gpu_gib:.1f} GiB on each)"
    return (f"no {key} up to the {len(capacities)} GPUs here holds it: use larger GPUs (--assume-gpus to plan "
            "for them), a smaller quantization, fewer sequences (techniques.parallel) or a quantized KV cache")


# -- --assume-gpus ----------------------------------------------------------------------------------
def known_kinds() -> str:
    """The kinds ``--assume-gpus`` knows, one phrase each."""
    return ", ".join(f"{k.key} ({k.name}, {k.memory_gib:.1f} GiB)" for k in GPU_KINDS)


def parse_assume_gpus(text: str) -> tuple[GpuKind, int]:
    """``KIND``, ``NxKIND`` or ``KINDxN`` (``8xh100-80gb``, ``h100-80gb`` = one) as a kind and a count."""
    value = text.strip().lower()
    count = 1
    if match := re.fullmatch(r"(\d+)\s*[x*]\s*(.+)", value):
        count, value = int(match[1]), match[2]
    elif match := re.fullmatch(r"(.+?)\s*[x*]\s*(\d+)", value):
        value, count = match[1], int(match[2])
    kind = next((k for k in GPU_KINDS if k.key == value), None)
    if kind is None:
        raise UserError(f"--assume-gpus {text}: unknown GPU kind {value!r}; known kinds: {known_kinds()}")
    if count < 1:
        raise UserError(f"--assume-gpus {text}: a host has at least one GPU; write e.g. 8x{kind.key}")
    return kind, count
