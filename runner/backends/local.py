"""The local backend: a server as a child process on a loopback port (the CPU default).

Each server runs in its own process group so that stopping it also stops anything it spawned.
Every live server is kept in a module registry: ``stop_all()`` stops them, and it runs at
interpreter exit too; the orchestrator calls it from its SIGTERM / SIGINT handler.

A runner killed with ``kill -9`` runs none of that, so two more guards keep a server from
outliving it: the kernel sends the server SIGTERM when the runner dies (``PR_SET_PDEATHSIG``),
and each server is recorded under ``<runner home>/servers/`` (pid, start time, command line,
the runner's pid) so that ``runner clean`` finds one that ignored the signal, checks that the
pid is still that very process, and stops it.
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

from pydantic import BaseModel, ValidationError

import httpx

from runner.backends import register_backend
from runner.backends.base import Backend, LiveServers, RunningServer, ServerStartError, free_port, log_tail
from runner.infra.lifetime import boot_id, is_process, process_cmdline, process_start_ticks, tied
from runner.runtimes.base import ServerSpec

log = logging.getLogger(__name__)

_LIVE: LiveServers[subprocess.Popen] = LiveServers()


def listeners(port: int) -> set[int]:
    """Pids of the processes holding a listening TCP socket on ``port`` (IPv4 or IPv6), from
    ``/proc/net/tcp*`` (socket inode) and ``/proc/<pid>/fd`` (who holds that inode)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local address "0100007F:1F90", state "0A" = LISTEN, inode in column 10
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return set()
    pids: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                if os.readlink(fd.path) in inodes:
                    pids.add(int(entry.name))
                    break
        except OSError:  # gone, or not ours to inspect
            continue
    return pids


def session_pids(leader: int) -> set[int]:
    """The pids a server started as ``leader`` consists of: its session (a server runs in its own,
    children included) and its descendants (a child may have started a session of its own)."""
    session: set[int] = set()
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 3:
            pid = int(entry.name)
            children.setdefault(int(fields[1]), []).append(pid)  # field 4 of stat: the parent
            if int(fields[3]) == leader:  # field 6: the session id
                session.add(pid)
    tree, todo = {leader}, [leader]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return session | tree


def describe(pids: set[int]) -> str:
    """``pid 123 (python3 -m http.server)`` for each pid, or that the owner is not visible."""
    if not pids:
        return "a process this user cannot see"
    out = []
    for pid in sorted(pids):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            command = " ".join(a.decode(errors="replace") for a in argv if a)[:120]
        except OSError:
            command = "?"
        out.append(f"pid {pid} ({command})")
    return ", ".join(out)


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
    _forget(proc.pid)


class ServerRecord(BaseModel):
    """A local server as ``runner clean`` needs to know it: enough to prove a pid is still that process."""

    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: differs for any later process with the same pid
    cmdline: list[str]
    boot_id: str
    runner_pid: int
    runner_start_ticks: int
    runtime: str
    log: str


def _servers_dir() -> Path:
    from runner.paths import runner_home

    return runner_home() / "servers"


def _record(proc: subprocess.Popen, runtime: str, log_path: Path) -> None:
    ticks, cmdline = process_start_ticks(proc.pid), process_cmdline(proc.pid)
    if ticks is None or cmdline is None:
        return  # already gone
    record = ServerRecord(pid=proc.pid, start_ticks=ticks, cmdline=cmdline, boot_id=boot_id(), runner_pid=os.getpid(),
                          runner_start_ticks=process_start_ticks(os.getpid()) or 0, runtime=runtime, log=str(log_path))
    folder = _servers_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{proc.pid}.json.tmp"
    tmp.write_text(record.model_dump_json(), encoding="utf-8")
    os.replace(tmp, folder / f"{proc.pid}.json")


def _forget(pid: int) -> None:
    (_servers_dir() / f"{pid}.json").unlink(missing_ok=True)


class CleanedServer(BaseModel):
    """What ``clean_orphans`` did with one recorded server."""

    pid: int
    runtime: str
    action: str  # "stopped" | "kept" (its run is still alive) | "gone" (record dropped)


def clean_orphans(grace_s: float = 10.0) -> list[CleanedServer]:
    """Stop the local servers whose runner died without stopping them (from the records under
    the runner home). A pid is signalled only if its start time and command line are still the
    recorded ones, and only once the runner that started it is gone."""
    folder = _servers_dir()
    done: list[CleanedServer] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = ServerRecord.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError):
            log.warning("%s: not a server record; removed", path)
            path.unlink(missing_ok=True)
            continue
        same_boot = record.boot_id == boot_id()
        if not same_boot or not is_process(record.pid, record.start_ticks, record.cmdline):
            path.unlink(missing_ok=True)
            done.append(CleanedServer(pid=record.pid, runtime=record.runtime, action="gone"))
            continue
        if is_process(record.runner_pid, record.runner_start_ticks):
            done.append(CleanedServer(pid=record.pid, runtime=record.runtime, action="kept"))
            continue
        _stop_group(record.pid, record.start_ticks, grace_s)
        path.unlink(missing_ok=True)
        done.append(CleanedServer(pid=record.pid, runtime=record.runtime, action="stopped"))
    return done


def _stop_group(pid: int, start_ticks: int, grace_s: float) -> None:
    """SIGTERM, then SIGKILL, to the process group of a server that is not our child."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and is_process(pid, start_ticks):
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)  # the leader may be gone while children of the group linger
    except ProcessLookupError:
        pass


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
                                        start_new_session=True, preexec_fn=tied(signal.SIGTERM))
            except OSError as exc:
                raise ServerStartError(f"{spec.runtime}: cannot launch {spec.argv[0]}: {exc.strerror}") from None
        _LIVE.add(str(proc.pid), proc)
        _record(proc, spec.runtime, log_path)
        server = RunningServer(base_url=f"http://{self.host}:{port}", load_seconds=0.0, ident=str(proc.pid),
                               log_path=log_path)
        try:
            self._wait_healthy(proc, spec, port, server, log_path, started + health_timeout, health_timeout)
        except BaseException:  # dead, too slow, or Ctrl-C during a long model load: never leave it running
            self.stop(server)
            raise
        server.load_seconds = time.monotonic() - started
        log.info("%s healthy at %s after %.1fs (pid %d)", spec.runtime, server.base_url, server.load_seconds, proc.pid)
        return server

    def _wait_healthy(self, proc: subprocess.Popen, spec: ServerSpec, port: int, server: RunningServer,
                      log_path: Path, deadline: float, health_timeout: float) -> None:
        url = f"{server.base_url}{spec.health_path}"
        with httpx.Client(timeout=min(5.0, max(health_timeout, 0.5))) as http:
            while True:
                code = proc.poll()
                if code is not None:
                    raise ServerStartError(f"{spec.runtime} server exited with code {code} before it was "
                                           f"healthy (log {log_path}): {log_tail(log_path)}")
                try:
                    healthy = http.get(url).status_code == 200
                except httpx.HTTPError:
                    healthy = False  # not listening yet
                if healthy:
                    # the port was free when it was picked, but anyone may bind it before a slow
                    # server does (vLLM binds only after loading): measure only our own server
                    owners = listeners(port)
                    if owners & session_pids(proc.pid):
                        return
                    if owners or proc.poll() is not None or time.monotonic() > deadline:
                        raise ServerStartError(
                            f"{spec.runtime}: {url} is answered by another process ({describe(owners)}), "
                            f"not by the server this cell started (pid {proc.pid}); stopped ours, measured nothing; "
                            "stop that process or rerun (a new port is picked)")
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
