"""The evaluation sandbox as containers: each run in a fresh container of the sandbox image.

The image (compose service ``sandbox``, ``Dockerfile.sandbox``) holds the pinned Python 3.10
stack, the JDK and the JUnit jars, so every run sees the same toolchain wherever the runner
is. Each run gets: no network (``network_mode=none``), a read-only root, a tmpfs ``/tmp``, the
run's directory as its only writable folder (``/work``; javac's classes must survive into the
java run of the same check), the memory limit both as an address-space rlimit and as a cgroup limit without swap,
the process limit as a pids limit, one CPU, the CPU-time and file-size limits as rlimits, no capabilities,
``no-new-privileges``, and the unprivileged uid 1000. Output is read from the attached
streams, capped; the container is killed at the wall-clock limit or past the cap, and removed,
by a reaper process (``docker_reaper``) if this one is killed first.

Commands are resolved inside the image: a ``python``-like ``argv[0]`` becomes ``python3``,
any other absolute ``argv[0]`` (``/usr/bin/javac``) its base name; the JUnit jars are at
Debian's paths in the image, the same ones ``runner.evaluation.java_check`` looks for.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from runner.errors import EnvironmentFailure
from runner.evaluation.sandbox import ExecResult, Limits, Sandbox
from runner.infra.docker_engine import owner_label

log = logging.getLogger(__name__)

SANDBOX_UID = 1000
_STDERR_TAIL = 4000
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")


def command_in_image(argv0: str) -> str:
    """The name ``argv0`` has inside the sandbox image (its PATH resolves it)."""
    name = Path(argv0).name
    return "python3" if _PYTHON.match(name) else name


def docker_available() -> bool:
    """Whether a Docker engine answers here (the default ``--sandbox`` then is ``docker``)."""
    from runner.errors import UserError

    try:
        from runner.infra.docker_engine import docker_client

        docker_client(timeout=5).close()
        return True
    except (UserError, ImportError):
        return False


def _own_for_sandbox(workdir: Path) -> None:
    # The container's user must write its run directory (javac output, program files); as root
    # hand the tree to it, otherwise open it up (the directory is private to this run anyway).
    try:
        for root, dirs, files in os.walk(workdir):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), SANDBOX_UID, SANDBOX_UID)
        os.chown(workdir, SANDBOX_UID, SANDBOX_UID)
    except PermissionError:
        for root, dirs, _files in os.walk(workdir):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777)
        os.chmod(workdir, 0o777)


class _Reaper:
    """The process that removes this one's sandbox containers when it ends (``docker_reaper``)."""

    def __init__(self) -> None:
        import subprocess
        import sys

        read, self._write = os.pipe()  # the write end is close-on-exec: no other child holds it open
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "runner.evaluation.docker_reaper"], stdin=read,
                                         stdout=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(read)
        self._lock = threading.Lock()

    def _send(self, line: str) -> None:
        try:
            with self._lock:
                os.write(self._write, line.encode() + b"\n")
        except OSError as exc:  # the reaper is gone (killed by hand): the next container gets a new one
            log.warning("the sandbox container reaper is gone (%s): a killed scorer may leave %s behind", exc, line[1:13])

    def track(self, container_id: str) -> None:
        self._send(f"+{container_id}")

    def untrack(self, container_id: str) -> None:
        self._send(f"-{container_id}")


_REAPER: _Reaper | None = None
_REAPER_LOCK = threading.Lock()


def _reaper() -> _Reaper:
    global _REAPER
    with _REAPER_LOCK:
        if _REAPER is None or _REAPER.proc.poll() is not None:
            _REAPER = _Reaper()
        return _REAPER


class DockerSandbox(Sandbox):
    """Runs each command in a fresh, locked-down container of the sandbox image."""

    def __init__(self, image: str | None = None, *, env: Mapping[str, str] | None = None, client=None,
                 cpus: float = 1.0, tmpfs_mb: int = 256, progress: Callable[[str], None] | None = None):
        from runner.infra.compose import load_compose
        from runner.infra.docker_engine import docker_client, ensure_image

        self.client = client or docker_client(otherwise="or use --sandbox local")
        if image is None:
            service = load_compose(env=env).service("sandbox")
            self.image = ensure_image(self.client, service, progress=progress)
        else:
            self.image = self.client.images.get(image)
        self.cpus = cpus
        self.tmpfs_mb = tmpfs_mb

    @property
    def image_digest(self) -> str:
        """The sandbox image's content id, for the run manifest."""
        return self.image.id

    def run(self, argv: list[str], workdir: Path, limits: Limits, env: dict[str, str] | None = None) -> ExecResult:
        """Run ``argv`` in a new container with ``workdir`` as ``/work``; always removes the container.

        A container the engine cannot create or start, or a command ``prlimit`` cannot execute
        (confirmed by a known-good probe, whose result an answer cannot fake), is an ``EnvironmentFailure``.
        """
        import docker.errors

        from runner.evaluation.sandbox import looks_unstarted, probe_argv, probe_passed, unstarted_line

        try:
            result = self._contained(argv, workdir, limits, env)
            if looks_unstarted(result):
                probe_run = probe_argv(argv[0])
                with self.workdir(limits) as probe:
                    if not probe_passed(probe_run, self._contained(probe_run, probe, limits, None)):
                        raise EnvironmentFailure(f"{unstarted_line(result.stderr_tail)}: the sandbox image "
                                                 f"{self.image.tags or self.image.id} cannot start {argv[0]}; "
                                                 "rebuild it (docker compose build sandbox) or use --sandbox local")
            return result
        except docker.errors.DockerException as exc:
            raise EnvironmentFailure(f"the Docker engine could not run a sandbox container ({str(exc)[:300]})") from None

    def _contained(self, argv: list[str], workdir: Path, limits: Limits, env: dict[str, str] | None) -> ExecResult:
        from docker.types import LogConfig, Ulimit

        _own_for_sandbox(Path(workdir))
        child_env = {"HOME": "/work", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **(env or {})}
        file_bytes = limits.file_size_mb * 1024 * 1024
        memory = f"{limits.memory_mb}m"
        address_space = limits.memory_mb * 1024 * 1024
        container = self.client.containers.create(
            self.image.id,
            # the address-space limit as in the local sandbox (untouched allocations never show in
            # the cgroup's memory, but fail here with MemoryError); set by prlimit (util-linux)
            # because a container-wide RLIMIT_AS would also bind the OCI runtime's own setup
            command=["prlimit", f"--as={address_space}", "--", command_in_image(argv[0]), *argv[1:]],
            working_dir="/work",
            user=f"{SANDBOX_UID}:{SANDBOX_UID}",
            environment=child_env,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"},
            volumes={str(workdir): {"bind": "/work", "mode": "rw"}},
            mem_limit=memory,
            memswap_limit=memory,  # no swap beyond the limit
            pids_limit=limits.processes,
            nano_cpus=int(self.cpus * 1e9),
            ulimits=[Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1),
                     Ulimit(name="fsize", soft=file_bytes, hard=file_bytes),
                     Ulimit(name="core", soft=0, hard=0)],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,  # a real PID 1 reaps orphans and passes signals on
            log_config=LogConfig(type=LogConfig.types.NONE),  # output is read from the attach stream
            healthcheck={"test": ["NONE"]},
            labels={"runner.managed": "true", "runner.component": "sandbox", **owner_label()},
            stdin_open=False,
        )
        reaper = _reaper()
        reaper.track(container.id)  # removed even if this process is killed while it runs
        try:
            return self._run(container, limits)
        finally:
            try:
                container.remove(force=True)
                reaper.untrack(container.id)
            except Exception as exc:  # the engine already removed it, or is going away
                log.debug("removing sandbox container %s: %s", container.short_id, exc)

    def _run(self, container, limits: Limits) -> ExecResult:
        import requests

        socket = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=False)
        out_chunks: list[bytes] = []
        err_tail = bytearray()
        overflow = threading.Event()
        sizes = {"out": 0, "err": 0}

        def pump() -> None:
            try:
                for out, err in socket:
                    for key, chunk in (("out", out), ("err", err)):
                        if not chunk:
                            continue
                        before = sizes[key]
                        sizes[key] += len(chunk)
                        if key == "out":
                            room = limits.output_bytes - before
                            if room > 0:
                                out_chunks.append(chunk[:room])
                        else:
                            err_tail.extend(chunk)
                            del err_tail[:-_STDERR_TAIL]
                        if sizes[key] > limits.output_bytes and not overflow.is_set():
                            overflow.set()
                            # kill from another thread and keep draining: the engine finishes a
                            # killed container only once its output streams are consumed
                            threading.Thread(target=_kill, args=(container,), daemon=True).start()
            except Exception as exc:  # the stream closes when the container is killed
                log.debug("sandbox stream ended: %s", exc)

        reader = threading.Thread(target=pump, daemon=True)
        started = time.monotonic()
        reader.start()
        container.start()
        timed_out = False
        try:
            status = container.wait(timeout=limits.wall_seconds)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            _kill(container)
            status = container.wait(timeout=60)
        seconds = time.monotonic() - started
        reader.join(timeout=10)
        code = int(status.get("StatusCode", -1))
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        # docker-init reports a child killed by signal N as 128 + N (SIGKILL: OOM, our kill, RLIMIT_CPU)
        signal_number = code - 128 if code > 128 else None
        if oom and signal_number is None:
            signal_number = 9
        return ExecResult(
            exit_code=None if signal_number else code,
            stdout=b"".join(out_chunks).decode("utf-8", errors="replace"),
            stderr_tail=bytes(err_tail).decode("utf-8", errors="replace") + ("\n[out of memory]" if oom else ""),
            timed_out=timed_out,
            output_truncated=overflow.is_set(),
            killed_by_signal=signal_number,
            seconds=seconds,
        )


def _kill(container) -> None:
    try:
        container.kill()
    except Exception as exc:  # already stopped
        log.debug("killing sandbox container %s: %s", container.short_id, exc)


def choose_sandbox(kind: str = "auto", *, allow_unsandboxed: bool = False, env: Mapping[str, str] | None = None,
                   progress: Callable[[str], None] | None = None, hide: tuple[Path, ...] = ()) -> Sandbox:
    """The sandbox ``--sandbox`` names: ``docker``, ``local``, or ``auto``.

    ``hide``: folders the local sandbox hides besides the runner's own (e.g. the runs folder);
    a container sees only its run directory anyway.

    ``auto`` is ``docker`` when an engine answers and the sandbox image is already there (its
    build needs a registry or a prepared context and takes minutes, so it is never started
    implicitly), otherwise ``local``; ``docker`` builds the image when it is missing.
    """
    from runner.errors import UserError
    from runner.evaluation.sandbox import LocalSandbox

    if kind not in ("auto", "docker", "local"):
        raise UserError(f"--sandbox {kind!r}: use docker, local or auto")
    if kind == "auto":
        kind = "local"
        if docker_available():
            from runner.infra.compose import load_compose
            from runner.infra.docker_engine import docker_client

            image = load_compose(env=env).service("sandbox").image
            client = docker_client()
            if client.images.list(name=image):
                kind = "docker"
            else:
                log.info("sandbox image %s is not built: evaluating with the local sandbox "
                         "(docker compose --profile sandbox build sandbox, or --sandbox docker, builds it)", image)
    if kind == "docker":
        return DockerSandbox(env=env, progress=progress)
    return LocalSandbox(allow_unsandboxed=allow_unsandboxed, hide=hide)
