"""compose.yaml read as compose reads it, and the runner's containers agreeing with it."""

from __future__ import annotations

from pathlib import Path

import pytest

import yaml

from runner.backends.docker import DockerBackend, container_paths
from runner.errors import UserError
from runner.infra.compose import interpolate, load_compose, parse_duration
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles, ServerSpec

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_SERVICES = {"llamacpp": "llamacpp", "vllm": "vllm", "exllama": "exllama"}


def test_interpolation_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${UNSET:-d}", env) == "x d d"
    assert interpolate("${EMPTY-d}|${UNSET-d}", env) == "|d"  # without the colon, empty counts as set
    assert interpolate("$SET $$PORT ${SET:+alt}", env) == "x $PORT alt"
    assert interpolate("${UNSET:-a-b:c}", env) == "a-b:c"
    with pytest.raises(UserError, match="MODEL is required: name the model file"):
        interpolate("${MODEL:?name the model file}", env)
    with pytest.raises(UserError, match="invalid variable"):
        interpolate("${9bad}", env)


def test_durations():
    assert parse_duration("1m30s", "x") == 90 and parse_duration("500ms", "x") == 0.5
    with pytest.raises(UserError, match="not a duration"):
        parse_duration("ten seconds", "healthcheck.interval")


def test_every_runtime_has_a_gpu_service_with_a_health_check_and_a_pinned_build():
    compose = load_compose(env={})
    for runtime, name in RUNTIME_SERVICES.items():
        service = compose.service(name)
        assert service.profiles == [runtime]
        assert service.gpu is not None and service.gpu.count == -1 and service.gpu.driver == "nvidia"
        assert service.healthcheck is not None and service.healthcheck.start_period_s >= 600
        assert (ROOT / service.build.dockerfile).is_file()
        assert service.build.dockerfile == f"Dockerfile.{'exllama' if runtime == 'exllama' else runtime}"
        assert ":" in service.image and not service.image.endswith(":latest")
        assert "latest" not in service.build.args.get("BASE", "") and ":" in service.build.args["BASE"]
    assert compose.service("sandbox").gpu is None


def test_variables_choose_the_cpu_variant_for_runner_and_compose_alike():
    env = {"LLAMACPP_TAG": "t-cpu", "LLAMACPP_BASE": "runner-base:bookworm", "LLAMACPP_CMAKE_FLAGS": ""}
    service = load_compose(env=env).service("llamacpp")
    assert service.image == "runner-llamacpp:t-cpu"
    assert service.build.args["BASE"] == "runner-base:bookworm"
    assert service.build.args["CMAKE_FLAGS"] == ""  # set-but-empty is honoured (no colon in the file)
    assert "-DGGML_CUDA=ON" in load_compose(env={}).service("llamacpp").build.args["CMAKE_FLAGS"]


def test_an_unknown_service_names_the_file_and_the_services():
    with pytest.raises(UserError, match=r"compose.yaml: no service 'sglang'; services: llamacpp, vllm"):
        load_compose(env={}).service("sglang")


def test_the_backend_lays_the_cell_over_the_service(tmp_path):
    # The runner's container config takes entrypoint and health check from compose, and the
    # command, model mount and port from the cell: the two cannot disagree.
    model = tmp_path / "weights" / "m.gguf"
    model.parent.mkdir()
    model.write_bytes(b"GGUF")
    cell = Cell(model="m", runtime="llamacpp", quantization="q4_k_m", techniques={"spec": "ngram"})
    spec = get_runtime("llamacpp").server_spec(cell, ModelFiles(path=model, served_name="m"))
    backend = DockerBackend(env={})
    service = backend.service_for(spec)
    config = backend.container_config(spec, service, 8123)
    assert service.name == "llamacpp"
    assert config["entrypoint"] == service.entrypoint == ["llama-server"]
    assert config["healthcheck"]["test"] == service.healthcheck.test
    assert config["healthcheck"]["start_period"] == int(service.healthcheck.start_period_s * 1e9)
    assert config["ports"] == {"8123/tcp": ("127.0.0.1", 8123)}
    assert config["volumes"] == {str(model): {"bind": "/models/m.gguf", "mode": "ro"}}
    command = config["command"]
    assert command[command.index("--model") + 1] == "/models/m.gguf"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--spec-type") + 1] == "ngram-simple"
    assert config["environment"]["PORT"] == "8123"


def test_a_split_gguf_mounts_the_folder_holding_every_part(tmp_path):
    # llama.cpp opens parts 2..N from beside the first: mounting the first file alone hides them
    folder = tmp_path / "hub" / "acme--big-GGUF" / ("c" * 40) / "Q8_0"
    folder.mkdir(parents=True)
    parts = [folder / f"big-q8_0-0000{n}-of-00003.gguf" for n in (1, 2, 3)]
    for part in parts:
        part.write_bytes(b"GGUF")
    cell = Cell(model="big", runtime="llamacpp", quantization="q8_0")
    spec = get_runtime("llamacpp").server_spec(cell, ModelFiles(path=parts[0], served_name="big"))
    config = DockerBackend(env={}).container_config(spec, load_compose(env={}).service("llamacpp"), 8123)
    assert config["volumes"] == {str(folder): {"bind": "/models/Q8_0", "mode": "ro"}}
    command = config["command"]
    assert command[command.index("--model") + 1] == "/models/Q8_0/big-q8_0-00001-of-00003.gguf"
    # one file that merely looks numbered is still mounted alone
    single = tmp_path / "m-00002-of-00003.gguf"
    single.write_bytes(b"GGUF")
    spec = get_runtime("llamacpp").server_spec(cell, ModelFiles(path=single, served_name="m"))
    assert DockerBackend(env={}).container_config(spec, load_compose(env={}).service("llamacpp"), 8123)["volumes"] \
        == {str(single): {"bind": "/models/m-00002-of-00003.gguf", "mode": "ro"}}


def test_files_the_runtime_writes_are_mounted_and_renamed_in_arguments(tmp_path):
    config_file = tmp_path / "tabby" / "config.yml"
    spec = ServerSpec(runtime="exllama", argv=["python3", "/srv/tabbyAPI/main.py", "--config", str(config_file),
                                                "--port", "{port}"],
                      files={config_file: "network: {host: '{host}'}"})
    config = DockerBackend(env={}).container_config(spec, load_compose(env={}).service("exllama"), 5001)
    assert config["command"] == ["--config", "/models/tabby/config.yml", "--port", "5001"]
    assert config["volumes"] == {str(config_file.parent): {"bind": "/models/tabby", "mode": "ro"}}


def test_a_tabbyapi_config_names_the_model_where_the_container_sees_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "models" / "codestral-exl2-4.0"
    model.mkdir(parents=True)
    cell = Cell(model="codestral-22b", runtime="exllama", quantization="exl2-4.0")
    spec = get_runtime("exllama").server_spec(cell, ModelFiles(path=model, served_name="c")).bind("0.0.0.0", 5001)
    moved, rewrite = container_paths(spec)
    assert moved[str(model)] == "/models/codestral-exl2-4.0"
    (config_path, content), = spec.files.items()
    inside = yaml.safe_load(rewrite(content))
    assert inside["model"]["model_dir"] == "/models" and inside["model"]["model_name"] == "codestral-exl2-4.0"
    command = DockerBackend(env={}).container_config(spec, load_compose(env={}).service("exllama"), 5001)["command"]
    assert command == ["--config", f"/models/{config_path.parent.name}/{config_path.name}"]


def test_docker_compose_itself_reads_the_file_as_the_runner_does():
    import os
    import shutil
    import subprocess

    from tests.conftest import require
    from tests.docker_images import LLAMACPP_CPU_ENV

    binary = shutil.which("docker-compose")
    require(binary is not None, "docker-compose (Debian package docker-compose)")
    env = {**LLAMACPP_CPU_ENV, "MODEL": "m.gguf", "PORT": "18080"}
    done = subprocess.run([binary, "--profile", "llamacpp", "--profile", "vllm", "--profile", "exllama",
                           "--profile", "sandbox", "config"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)
    assert done.returncode == 0, done.stderr
    theirs = yaml.safe_load(done.stdout)["services"]
    ours = load_compose(env=env).services
    assert set(theirs) == set(ours)
    for name, service in ours.items():
        assert theirs[name]["image"] == service.image
        assert {k: str(v) for k, v in theirs[name]["build"]["args"].items()} == service.build.args
        assert theirs[name].get("entrypoint") == service.entrypoint
        assert theirs[name].get("command") == service.command
        if service.healthcheck:
            # compose keeps `$$` escaped in its output; the engine receives a single `$`
            assert [t.replace("$$", "$") for t in theirs[name]["healthcheck"]["test"]] == service.healthcheck.test
