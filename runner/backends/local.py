"""The local backend: a server as a child process on a loopback port (the CPU default).

Each server runs in its own process group so that stopping it also stops anything it spawned.
Every live server is kept in a module registry: ``stop_all()`` stops them, and it runs at
interpreter exit too; the orchestrator calls it from its SIGTERM / SIGINT handler.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

import httpx

from runner.backends import register_backend
from runner.backends.base import Backend, LiveServers, RunningServer, ServerStartError, free_port, log_tail
from runner.runtimes.base import ServerSpec

log = logging.getLogger(__name__)

_LIVE: LiveServers[subprocess.Popen] = LiveServers()


def _stop_process(proc: subprocess.Popen, grace_s: float) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("server pid %d ignored SIGTERM for %.0fs; killing it", proc.pid, grace_s)
    # the leader may be gone while children of the group linger: kill the group regardless
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def stop_all(grace_s: float = 10.0) -> int:
    """Stop every server this process started and has not stopped yet; returns how many."""
    return _LIVE.stop_all(lambda proc: _stop_process(proc, grace_s))


atexit.register(stop_all)


@register_backend
class LocalBackend(Backend):
    """Runs the server's argv as a subprocess on this machine."""

    name: ClassVar[str] = "local"

    def __init__(self, host: str = "127.0.0.1", grace_s: float = 10.0, poll_s: float = 0.25):
        self.host = host
        self.grace_s = grace_s
        self.poll_s = poll_s

    def start(self, spec: ServerSpec, log_path: Path, *, health_timeout: float, gpus: list[int] | None = None,
              run: str | None = None, cell: str | None = None) -> RunningServer:
        """Launch ``spec`` on a free port of ``host``, restricted to ``gpus`` when given; return once healthy."""
        port = free_port(self.host)
        spec = spec.bind(self.host, port)
        env = dict(spec.env)
        if gpus is not None:  # the ids the executor assigned; "" hides every GPU
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        for path, content in spec.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(log_path, "ab") as log_file:
            try:
                proc = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                        stderr=subprocess.STDOUT, env={**os.environ, **env},
                                        start_new_session=True)
            except OSError as exc:
                raise ServerStartError(f"{spec.runtime}: cannot launch {spec.argv[0]}: {exc.strerror}") from None
        _LIVE.add(str(proc.pid), proc)
        server = RunningServer(base_url=f"http://{self.host}:{port}", load_seconds=0.0, ident=str(proc.pid))
        try:
            self._wait_healthy(proc, spec, server, log_path, started + health_timeout, health_timeout)
        except BaseException:  # dead, too slow, or Ctrl-C during a long model load: never leave it running
            self.stop(server)
            raise
        server.load_seconds = time.monotonic() - started
        log.info("%s healthy at %s after %.1fs (pid %d)", spec.runtime, server.base_url, server.load_seconds, proc.pid)
        return server

    def _wait_healthy(self, proc: subprocess.Popen, spec: ServerSpec, server: RunningServer, log_path: Path,
                      deadline: float, health_timeout: float) -> None:
        url = f"{server.base_url}{spec.health_path}"
        with httpx.Client(timeout=min(5.0, max(health_timeout, 0.5))) as http:
            while True:
                code = proc.poll()
                if code is not None:
                    raise ServerStartError(f"{spec.runtime} server exited with code {code} before it was "
                                           f"healthy (log {log_path}): {log_tail(log_path)}")
                try:
                    if http.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{spec.runtime} server not healthy at {url} after "
                                           f"{health_timeout:.0f}s; stopped it (log {log_path}): "
                                           f"{log_tail(log_path)}")
                time.sleep(self.poll_s)

    def stop(self, server: RunningServer) -> None:
        """SIGTERM to the server's process group, SIGKILL after the grace period; idempotent."""
        proc = _LIVE.pop(server.ident)
        if proc is not None:
            _stop_process(proc, self.grace_s)

    def alive(self, server: RunningServer) -> bool:
        """Whether the server process still runs."""
        proc = _LIVE.get(server.ident)
        return proc is not None and proc.poll() is None
