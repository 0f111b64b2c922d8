"""The Docker backend against the real engine, with the CPU image of Dockerfile.llamacpp.

The CPU image is built through compose.yaml's build section with the variables of
``tests.docker_images.LLAMACPP_CPU_ENV`` (FROM the local debootstrap base): the GPU image
differs by its base and its CMake flags only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from runner.backends import get_backend
from runner.backends.base import ServerStartError
from runner.backends.docker import MANAGED, DockerBackend, docker_client
from runner.cli import main
from runner.errors import UserError
from runner.infra.compose import load_compose
from runner.matrix import load_matrix
from runner.records import Cell
from runner.running.run import RunOptions, reproduce
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from runner.store import RunStore
from tests.docker_images import LLAMACPP_CPU_ENV, base_image, engine, llamacpp_cpu_image
from tests.llama_server import gemma_gguf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
MODEL_KEY = "gemma3-h7docker"


@pytest.fixture(scope="module")
def client():
    return engine()


@pytest.fixture(scope="module")
def image(client):
    return llamacpp_cpu_image(client)


@pytest.fixture
def cpu_variant(monkeypatch):
    """Make compose.yaml (hence the runner) choose the CPU image, as a user would with variables."""
    for key, value in LLAMACPP_CPU_ENV.items():
        monkeypatch.setenv(key, value)


def containers(client, **labels: str) -> list:
    wanted = [f"{MANAGED}=true"] + [f"{k}={v}" for k, v in labels.items()]
    return client.containers.list(all=True, filters={"label": wanted})


def gemma_spec(model: Path | None = None):
    cell = Cell(model="gemma3-270m", runtime="llamacpp", quantization="q4_k_m", techniques={"parallel": "1"})
    files = ModelFiles(path=model or gemma_gguf(), served_name="gemma3-270m", context_length=1024)
    return get_runtime("llamacpp").server_spec(cell, files, threads=1)


def write_matrix(folder: Path, backend: str) -> Path:
    path = folder / f"{backend}.toml"
    path.write_text(f"""
name = "parity-{backend}"
benchmark = "starter"
backend = "{backend}"
[tasks]
languages = ["python"]
programs = ["lu_solver", "shortest_paths"]
limit = 3
[settings]
max_tokens = 24
temperature = 0.0
concurrency = 1
latency_tasks = 0
warmup_requests = 0
sweep = []
sweep_requests = 0
request_timeout_s = 120
health_timeout_s = 300
threads = 2           # one server at a time: both cores (1 took 1.6x as long on the 2-core CI host)
[models.{MODEL_KEY}]
name = "Gemma 3 270M"
chat = false
prompt_styles = ["instruct"]
[models.{MODEL_KEY}.quantizations.q4_k_m]
kind = "path"
path = "{gemma_gguf()}"
[[cells]]
model = "{MODEL_KEY}"
runtime = "llamacpp"
quantization = "q4_k_m"
techniques = {{ parallel = 1 }}
label = "baseline"
""")
    return path


def test_no_engine_is_one_line_saying_what_to_do(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(UserError, match=r"^no Docker engine answers at unix:///nonexistent/docker.sock: start it"):
        docker_client()
    # clean has no --backend: without an engine it cleans the local servers and says the containers went unchecked
    result = CliRunner().invoke(main, ["clean"])
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("containers not checked: no Docker engine answers") and "--backend" not in line
    assert line.endswith("and rerun `runner clean`")
    result = CliRunner().invoke(main, ["clean", "--images"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "no Docker engine answers" in line and line.endswith("and rerun `runner clean --images`")


def test_a_cell_runs_in_a_labelled_container_that_matches_compose_and_is_removed(client, image, tmp_path):
    backend = DockerBackend(env=LLAMACPP_CPU_ENV, run_name="h7-labels")
    spec = gemma_spec()
    log_path = tmp_path / "server.log"  # the labels come from the caller, not from where the log goes
    service = load_compose(env=LLAMACPP_CPU_ENV).service("llamacpp")
    with backend.serve(spec, log_path, health_timeout=300, gpus=[], cell="gemma__baseline") as server:
        (container,) = containers(client, **{"runner.run": "h7-labels"})
        assert container.labels["runner.cell"] == "gemma__baseline"
        assert container.image.id == image.id == server.image_digest
        assert container.attrs["Config"]["Healthcheck"]["Test"] == service.healthcheck.test
        (binding,) = container.attrs["HostConfig"]["PortBindings"][f"{server.base_url.rsplit(':', 1)[1]}/tcp"]
        assert binding["HostIp"] == "127.0.0.1"
        mount = next(m for m in container.attrs["Mounts"] if m["Destination"].startswith("/models/"))
        assert mount["RW"] is False
        assert container.attrs["HostConfig"].get("DeviceRequests") in (None, [])
        assert container.attrs["Config"]["User"] in ("", "llama")  # the image's non-root user
        top = container.top(ps_args="-o pid,user,comm")["Processes"]
        users = [row[1] for row in top if "llama-server" in row[2]]  # host names for uid 1000 vary
        assert len(users) == 1 and users != ["root"]
        answer = httpx.post(f"{server.base_url}/completion", timeout=120,
                            json={"prompt": "def add(a, b):", "n_predict": 4, "temperature": 0}).json()
        assert answer["tokens_predicted"] == 4
        assert backend.alive(server)
    assert containers(client, **{"runner.run": "h7-labels"}) == []
    assert not backend.alive(server)
    assert "llama_server" in log_path.read_text() or "main: server is listening" in log_path.read_text()


def test_a_server_that_dies_at_start_is_reported_with_its_log_and_removed(client, image, tmp_path):
    not_a_model = tmp_path / "broken.gguf"
    not_a_model.write_bytes(b"this is not a GGUF file")
    backend = DockerBackend(env=LLAMACPP_CPU_ENV, run_name="h7-broken")
    log_path = tmp_path / "cells" / "broken" / "server.log"
    with pytest.raises(ServerStartError, match=r"container exited with code 1 before it was healthy .*failed to load"):
        backend.start(gemma_spec(not_a_model), log_path, health_timeout=120, gpus=[])
    assert containers(client, **{"runner.run": "h7-broken"}) == []


def test_docker_cells_answer_exactly_as_local_cells(client, image, cpu_variant, tmp_path):
    # Same llama.cpp source and build script, same model, greedy decoding: same answers.
    local = reproduce(load_matrix(write_matrix(tmp_path, "local")), RunOptions(runs_dir=tmp_path / "runs"))
    docker = reproduce(load_matrix(write_matrix(tmp_path, "docker")), RunOptions(runs_dir=tmp_path / "runs"))
    (local_cell,), (docker_cell,) = local.results, docker.results
    assert local_cell.status == docker_cell.status == "done"
    assert docker_cell.image_digest == image.id and local_cell.image_digest is None
    assert RunStore(docker.run_dir).read_manifest().images["llamacpp"] == image.id
    answers = {}
    for outcome, result in ((local, local_cell), (docker, docker_cell)):
        samples = RunStore(outcome.run_dir).samples(result.cell)
        answers[outcome.run_dir.name] = {s.task_id: s.raw_text for s in samples if s.phase == "accuracy"}
    assert len(answers["parity-local"]) == 3
    assert answers["parity-local"] == answers["parity-docker"]
    assert all(answers["parity-docker"].values())
    assert containers(client, **{"runner.run": "parity-docker"}) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_a_docker_run_mid_cell_leaves_no_container(client, image, tmp_path, signum):
    path = write_matrix(tmp_path, "docker")
    path.write_text(path.read_text().replace("limit = 3", "limit = 6").replace("max_tokens = 24", "max_tokens = 120"))
    runs = tmp_path / "runs"
    env = {**os.environ, **LLAMACPP_CPU_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "reproduce", str(path), "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 600
        samples = runs / "parity-docker" / "cells" / f"{MODEL_KEY}__llamacpp__q4_k_m__baseline" / "samples.jsonl"
        while not (samples.is_file() and samples.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert [c.status for c in containers(client, **{"runner.run": "parity-docker"})] == ["running"]
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "interrupted" in err
    assert containers(client, **{"runner.run": "parity-docker"}) == []


def test_clean_removes_what_a_dead_run_left_and_keeps_a_live_runs_containers(client):
    """On a shared engine: a container whose runner died goes, one whose runner still runs (here,
    this test process: another run in progress) stays and is named, others' containers stay."""
    import socket
    import subprocess

    from runner.infra.docker_engine import OWNER, owner_label
    from runner.infra.lifetime import boot_id as _boot_id, process_start_ticks as _start_ticks

    base = base_image(client)
    gone = subprocess.Popen(["sleep", "0.1"])
    dead_owner = f"{socket.gethostname()}:{_boot_id()}:{gone.pid}:{_start_ticks(gone.pid) or 1}"
    gone.wait()
    started = []

    def start(labels):
        started.append(client.containers.run(base, ["sleep", "300"], detach=True, labels=labels))
        return started[-1]

    crashed = start({MANAGED: "true", "runner.run": "h7-crashed", OWNER: dead_owner})
    unowned = start({MANAGED: "true", "runner.run": "before-owners"})  # made before containers named their runner
    live = start({MANAGED: "true", "runner.run": "still-going", **owner_label()})
    theirs = start({"owner": "someone-else"})
    try:
        result = CliRunner().invoke(main, ["clean"])
        assert result.exit_code == 0, result.output
        assert f"removed container {crashed.name}" in result.output
        assert f"removed container {unowned.name}" in result.output
        assert f"kept container {live.name}: its runner (pid {os.getpid()}) is still running" in result.output
        names = {c.name for c in client.containers.list(all=True)}
        assert crashed.name not in names and unowned.name not in names
        assert live.name in names and theirs.name in names
    finally:
        for container in started:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - removed by the clean under test
                pass


def test_backend_is_registered_and_takes_compose_variables():
    backend = get_backend("docker", env={"LLAMACPP_TAG": "x-cpu"})
    assert isinstance(backend, DockerBackend)
    assert backend.compose.service("llamacpp").image == "runner-llamacpp:x-cpu"
