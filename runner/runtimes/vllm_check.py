"""Check ``vllm serve`` command lines with vLLM's own code, as vLLM would check them on a CUDA GPU.

Run by the vLLM virtual environment's Python (it imports nothing of the runner):

    <vllm venv>/bin/python vllm_check.py < request.json

The request is ``{"capability": [9, 0], "device_name": ..., "device_memory_gib": ...,
"launches": [{"id": ..., "argv": ["serve", MODEL, ...], "gpus": N}]}``; one JSON line per launch
comes back on stdout: ``{"id", "ok", "error", "quantization", "dtype", "tensor_parallel_size",
"supported_act_dtypes", "kernels", "log_lines"}`` (``log_lines``: what a server started with that
config logs about it, in vLLM's own words: the engine-config line and the kernel choices).

Per launch, what ``vllm serve`` itself does before it starts an engine, in the same order:
``vllm.entrypoints.cli.main`` builds its ``FlexibleArgumentParser`` and the ``serve`` subparser
(``make_arg_parser``), parses, runs ``ServeSubcommand.validate``; the API server then makes
``AsyncEngineArgs.from_cli_args`` and ``create_engine_config()`` (``ModelConfig`` with
``_verify_quantization``, ``ParallelConfig`` with its GPU count check, ``VllmConfig`` with
``_get_quantization_config``: minimum capability and the method's ``get_supported_act_dtypes``,
``verify_with_parallel_config``: heads divisible by the tensor-parallel size, and the platform's
``check_and_update_config``).

The CPU wheel runs these on its CPU platform; a GPU host runs them on ``CudaPlatform``. So the
check swaps in vLLM's own CUDA platform class (``vllm.platforms.cuda.NonNvmlCudaPlatform``), with
only what needs a GPU answered by the request instead of by the driver: the compute capability,
the device name and memory, and the device count (the cell's GPUs, as its container sees them).
What is patched, and only that: ``vllm.platforms.current_platform`` (and every loaded vLLM module's
binding of it) becomes that posed platform; ``vllm._C_stable_libtorch``, the compiled CUDA extension
``vllm.platforms.cuda`` imports (kernel registrations, absent from the CPU wheel), is an empty module;
and the modules that choose compiled kernels when imported (flash-attention, CUDA ops) are imported
before the swap, under the CPU platform, since the CPU wheel has no CUDA kernels to load. No kernel
runs in config validation.

The kernels: vLLM picks a linear kernel when it builds each layer (``create_weights`` calls
``choose_mp_linear_kernel`` for AWQ and GPTQ, ``init_fp8_linear_kernel`` for FP8). The check
builds the quantized method of each of the model's linear layer shapes (one rank's share under
tensor parallelism) on the ``meta`` device, in a one-process tensor-parallel group, with vLLM's own
``quant_config.get_quant_method`` and ``create_weights``, and reports the kernel class each chose.
A choice that asks a compiled CUDA op (FP8 asks ``cutlass_scaled_mm_supports_fp8``) is reported
as unknown, with the reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import traceback
import types

# run as a script, its folder leads sys.path, where runner's vllm.py would shadow the vllm package
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def _pose_as_cuda(capability: tuple[int, int], name: str, memory_gib: float, gpus: int):
    """Make ``vllm.platforms.current_platform`` vLLM's CUDA platform with the given device facts."""
    sys.modules.setdefault("vllm._C_stable_libtorch", types.ModuleType("vllm._C_stable_libtorch"))
    from vllm import platforms
    from vllm.platforms.cuda import NonNvmlCudaPlatform
    from vllm.platforms.interface import DeviceCapability

    class PosedCudaPlatform(NonNvmlCudaPlatform):
        @classmethod
        def get_device_capability(cls, device_id: int = 0):
            return DeviceCapability(major=capability[0], minor=capability[1])

        @classmethod
        def get_device_name(cls, device_id: int = 0) -> str:
            return name

        @classmethod
        def get_device_total_memory(cls, device_id: int = 0) -> int:
            return int(memory_gib * 2**30)

        @classmethod
        def device_count(cls) -> int:
            return gpus

        @classmethod
        def is_fully_connected(cls, physical_device_ids) -> bool:
            return True  # NVLink, as on an SXM H100 node

    posed = PosedCudaPlatform()
    platforms.current_platform = posed
    platforms._current_platform = posed
    return posed


def _rebind(posed) -> None:
    """Point every loaded module's ``current_platform`` at ``posed`` (modules bind it at import)."""
    from vllm.platforms.interface import Platform

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("vllm") and isinstance(
                getattr(module, "current_platform", None), Platform):
            module.current_platform = posed


def _parser():
    """``vllm``'s top-level parser with the ``serve`` subcommand, as ``vllm.entrypoints.cli.main`` builds it."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    serve = ServeSubcommand()
    serve.subparser_init(subparsers).set_defaults(dispatch_function=serve.cmd)
    return parser, serve


def _linear_shapes(hf_config, tp: int) -> list[tuple[str, int, list[int], int]]:
    """(prefix, input size per partition, output sizes per partition, full input size) of each
    linear layer of a Llama/Mistral decoder layer, split for tensor parallelism as vLLM splits them."""
    hidden = hf_config.hidden_size
    heads = hf_config.num_attention_heads
    kv = getattr(hf_config, "num_key_value_heads", heads)
    head_dim = getattr(hf_config, "head_dim", None) or hidden // heads
    inter = hf_config.intermediate_size
    kv_part = max(kv // tp, 1)  # KV heads are replicated when fewer than the ranks
    return [
        ("model.layers.0.self_attn.qkv_proj", hidden, [heads // tp * head_dim, kv_part * head_dim,
                                                        kv_part * head_dim], hidden),
        ("model.layers.0.self_attn.o_proj", heads * head_dim // tp, [hidden], heads * head_dim),
        ("model.layers.0.mlp.gate_up_proj", hidden, [inter // tp, inter // tp], hidden),
        ("model.layers.0.mlp.down_proj", inter // tp, [hidden], inter),
    ]


def _one_rank_group() -> None:
    """A tensor-parallel group of this one process (gloo), which vLLM's weight parameters ask for
    their rank; the layer shapes given to ``create_weights`` are already one rank's share."""
    from vllm.distributed import parallel_state

    if parallel_state._TP is not None:
        return
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    parallel_state.init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                                distributed_init_method=f"tcp://127.0.0.1:{port}")
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=1, backend="gloo")


def _kernels(vllm_config) -> dict[str, str]:
    """The linear kernel vLLM's quantized method picks for each linear layer shape (``meta`` device)."""
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.linear import LinearBase

    with set_current_vllm_config(vllm_config):
        _one_rank_group()

    quant_config = vllm_config.quant_config
    if quant_config is None:
        return {}
    model_config = vllm_config.model_config
    tp = vllm_config.parallel_config.tensor_parallel_size
    kernels: dict[str, str] = {}
    for prefix, in_part, out_parts, in_full in _linear_shapes(model_config.hf_text_config, tp):
        layer = LinearBase.__new__(LinearBase)
        torch.nn.Module.__init__(layer)
        layer.input_size, layer.output_size = in_full, sum(out_parts) * tp
        layer.input_size_per_partition, layer.output_size_per_partition = in_part, sum(out_parts)
        layer.output_partition_sizes, layer.params_dtype = out_parts, model_config.dtype
        layer.prefix, layer.tp_size, layer.tp_rank = prefix, tp, 0
        try:
            with set_current_vllm_config(vllm_config), torch.device("meta"):
                method = quant_config.get_quant_method(layer, prefix)
                method.create_weights(layer, in_part, out_parts, in_full, sum(out_parts) * tp,
                                      model_config.dtype, weight_loader=lambda *a, **k: None)
            chosen = getattr(method, "kernel", None) or getattr(method, "fp8_linear", None)
            kernels[prefix.rsplit(".", 1)[1]] = (f"{type(method).__name__}: {type(chosen).__name__}"
                                                 if chosen is not None else type(method).__name__)
        except Exception as exc:  # noqa: BLE001 - a choice needing a CUDA op is unknown here, not a refusal
            kernels[prefix.rsplit(".", 1)[1]] = f"unknown ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    return kernels


class _Captured(logging.Handler):
    """vLLM's log records, as its own formatter would print their messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _fresh_kernel_logs() -> None:
    """Forget which kernels were logged, as a fresh server process has (each linear method logs a
    kernel the first time it picks it: ``_kernel_backends_being_used``)."""
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("vllm.model_executor"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and isinstance(value.__dict__.get("_kernel_backends_being_used"), set):
                value._kernel_backends_being_used = set()


def check(parser, serve, posed, launch: dict, captured: _Captured) -> dict:
    """One launch through ``vllm serve``'s parsing and engine-config validation."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext

    result = {"id": launch["id"], "ok": False, "error": None, "quantization": None, "dtype": None,
              "tensor_parallel_size": None, "supported_act_dtypes": None, "kernels": {}}
    type(posed).device_count = classmethod(lambda cls: int(launch["gpus"]))
    stage = "parse"
    try:
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                args = parser.parse_args(launch["argv"])
        except SystemExit as exc:  # argparse prints its usage and the error, then exits
            message = [line for line in said.getvalue().splitlines() if "error:" in line]
            raise ValueError(message[-1].strip() if message else f"exit {exc.code}") from None
        stage = "validate"
        serve.validate(args)
        if getattr(args, "model_tag", None) is not None:
            args.model = args.model_tag  # ServeSubcommand.cmd does this first
        stage = "engine config"
        engine_args = AsyncEngineArgs.from_cli_args(args)
        vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
    except Exception as exc:  # noqa: BLE001 - vLLM's refusal is the answer
        result["error"] = f"{stage}: {type(exc).__name__}: {exc}".strip()
        result["traceback"] = traceback.format_exc(limit=-4)
        return result
    model_config = vllm_config.model_config
    result.update(ok=True, quantization=model_config.quantization, dtype=str(model_config.dtype),
                  tensor_parallel_size=vllm_config.parallel_config.tensor_parallel_size,
                  max_model_len=model_config.max_model_len,
                  kv_cache_dtype=str(vllm_config.cache_config.cache_dtype),
                  # set by the platform's check_and_update_config: the CUDA platform's, not the CPU one's
                  worker_cls=vllm_config.parallel_config.worker_cls,
                  device=str(vllm_config.device_config.device_type))
    # the lines a server started with this config logs (vllm/v1/engine/core.py, then the layers')
    import vllm

    captured.lines = [f"Initializing a V1 LLM engine (v{vllm.__version__}) with config: {vllm_config}"]
    if vllm_config.quant_config is not None:
        result["quant_config"] = type(vllm_config.quant_config).__name__
        result["supported_act_dtypes"] = [str(d) for d in vllm_config.quant_config.get_supported_act_dtypes()]
        _fresh_kernel_logs()
        result["kernels"] = _kernels(vllm_config)
    result["log_lines"] = list(captured.lines)
    return result


def main() -> int:
    request = json.load(sys.stdin)
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["VLLM_CONFIGURE_LOGGING"] = "0"  # stdout carries the verdicts
    captured = _Captured()
    vllm_logger = logging.getLogger("vllm")  # VLLM_CONFIGURE_LOGGING=0: vLLM adds no handler of its own
    vllm_logger.setLevel(logging.INFO)
    vllm_logger.addHandler(captured)
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    vllm_logger.addHandler(warnings)
    # import what the checks use while the platform is still the CPU one: kernel modules decide at
    # import which compiled kernels to load (flash-attention, CUDA ops), and the CPU wheel has none;
    # the configuration code they hold is the same on every platform
    import vllm.engine.arg_utils  # noqa: F401
    import vllm.model_executor.layers.linear  # noqa: F401
    import vllm.model_executor.layers.quantization as quantization
    from vllm.entrypoints.cli import serve as _serve  # noqa: F401

    for name in ("fp8", "awq", "gptq"):
        quantization.get_quantization_config(name)
    posed = _pose_as_cuda(tuple(request.get("capability", (9, 0))), request.get("device_name", "NVIDIA H100 80GB HBM3"),
                          float(request.get("device_memory_gib", 79.6)), 1)
    _rebind(posed)  # the modules above bound the CPU platform when they were imported
    parser, serve = _parser()
    for launch in request["launches"]:
        print(json.dumps(check(parser, serve, posed, launch, captured)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
