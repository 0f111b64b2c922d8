"""The Docker backend: one container per cell, through the Docker SDK.

The image, its build, its health check and its GPU request come from ``compose.yaml``
(``runner.infra.compose``); the cell brings its command (``ServerSpec.argv``: its first items are the program,
which compose's ``entrypoint`` replaces item for item, the rest its arguments) and its model files (mounted read-only under
``/models``, the arguments naming them rewritten); the backend picks the port (published on 127.0.0.1 only) and
hands the container the GPU ids it is given. The run and cell a container serves are given by the caller.

Every container and image the runner creates carries ``runner.managed=true`` (and
``runner.run`` / ``runner.cell`` for containers): ``runner clean`` removes exactly those.
A container is stopped and removed at the end of its cell, on error, on Ctrl-C and on SIGTERM
(``stop_all`` runs at interpreter exit; the backend turns a default SIGTERM into ``SystemExit``
so that ``finally`` blocks run).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, ClassVar, Mapping

import httpx
from pydantic import BaseModel, Field

from runner.backends import register_backend
from runner.backends.base import Backend, LiveServers, RunningServer, ServerStartError, free_port, log_tail
from runner.infra.compose import ComposeFile, Service, load_compose
from runner.infra.docker_engine import (  # noqa: F401
    MANAGED, docker_client, ensure_image, gpus_available, image_digest, owner_alive, owner_label)
from runner.runtimes.base import ServerSpec, split_first

log = logging.getLogger(__name__)

RUN_LABEL = "runner.run"
CELL_LABEL = "runner.cell"

_LIVE: "LiveServers[_Live]" = LiveServers()


class _Live:
    def __init__(self, container, log_thread: threading.Thread | None):
        self.container = container
        self.log_thread = log_thread


def _device_requests(spec: ServerSpec, service: Service, client, gpus: list[int] | None):
    from docker.types import DeviceRequest

    if gpus == [] or service.gpu is None:
        return []
    if gpus:
        return [DeviceRequest(driver=service.gpu.driver, device_ids=[str(g) for g in gpus],
                              capabilities=[["gpu"]])]
    if not gpus_available(client):
        log.warning("compose service %s asks for GPUs but this Docker engine offers none; "
                    "starting %s without GPUs", service.name, spec.runtime)
        return []
    if service.gpu.device_ids:
        return [DeviceRequest(driver=service.gpu.driver, device_ids=service.gpu.device_ids, capabilities=[["gpu"]])]
    return [DeviceRequest(driver=service.gpu.driver, count=service.gpu.count, capabilities=[["gpu"]])]


def _label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:60].strip("-") or "x"


def _stream_logs(container, log_path: Path) -> None:
    try:
        with open(log_path, "ab") as fh:
            for chunk in container.logs(stream=True, follow=True):
                fh.write(chunk)
                fh.flush()
    except Exception as exc:  # the container went away under the reader: the log ends there
        log.debug("log stream of %s ended: %s", container.short_id, exc)


def _remove(live: _Live, grace_s: float) -> None:
    from docker.errors import APIError, NotFound

    container = live.container
    try:
        container.stop(timeout=int(grace_s))
    except NotFound:
        pass
    except APIError as exc:
        log.warning("stopping container %s: %s", container.short_id, exc)
    try:
        container.remove(force=True)
    except NotFound:
        pass
    except APIError as exc:
        if "already in progress" not in str(exc):
            log.warning("removing container %s: %s", container.short_id, exc)
    if live.log_thread is not None:
        live.log_thread.join(timeout=10)


def stop_all(grace_s: float = 10.0) -> int:
    """Stop and remove every container this process started and has not stopped yet; returns how many."""
    return _LIVE.stop_all(lambda live: _remove(live, grace_s))


atexit.register(stop_all)


def _sigterm_to_exit(signum, frame):  # noqa: ARG001
    raise SystemExit(128 + signum)


def _install_sigterm() -> None:
    # A default SIGTERM ends the process without unwinding: no finally, no atexit, containers
    # left running. Only the default disposition is replaced; an orchestrator's own handler stays.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_exit)


class Removed(BaseModel):
    """What ``clean`` removed."""

    containers: list[str] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)
    kept: list[str] = Field(default_factory=list)  # "<container>: why" for those whose runner still runs


def clean(images: bool = False, client=None) -> Removed:
    """Remove the containers (and with ``images`` the images) labelled ``runner.managed=true``,
    nothing else, and of those none whose runner still runs (``docker_engine.owner_alive``)."""
    from docker.errors import APIError, NotFound

    client = client or docker_client()
    removed = Removed()
    for container in client.containers.list(all=True, filters={"label": f"{MANAGED}=true"}):
        why = owner_alive(container.labels)
        if why:
            removed.kept.append(f"{container.name}: {why}")
            continue
        try:
            container.remove(force=True)
            removed.containers.append(container.name)
        except NotFound:
            pass
    if images:
        for image in client.images.list(filters={"label": f"{MANAGED}=true"}):
            try:
                client.images.remove(image.id, force=True)
                removed.images.append(", ".join(image.tags) or image.short_id)
            except NotFound:
                pass
            except APIError as exc:
                log.warning("image %s kept: %s", image.short_id, exc)
    return removed


def container_paths(spec: ServerSpec) -> tuple[dict[str, str], Callable[[str], str]]:
    """Where ``spec``'s host paths appear inside the container, and a function rewriting text.

    Each mount (a model file or folder, the folder of a file the runtime writes) moves to
    ``/models/<name>`` (read-only): the image's user cannot traverse host folders such as /root.
    The first part of a split GGUF (``X-00001-of-00003.gguf``) brings its folder: llama.cpp loads the
    other parts from beside it. The parent of such a mount becomes ``/models`` in rewritten text, for
    configurations that name a model by folder and name (TabbyAPI's ``model_dir`` / ``model_name``).
    """
    mounts = [Path(p).parent if split_first(str(p)) else Path(p) for p in spec.mounts]
    mounts += sorted({Path(p).parent for p in spec.files})
    moved: dict[str, str] = {}
    for index, host in enumerate(dict.fromkeys(mounts)):
        inside = f"/models/{host.name}"
        if inside in moved.values():
            inside = f"/models/{index}-{host.name}"
        moved[str(host)] = inside
    renames = dict(moved)
    for host, inside in moved.items():
        if inside == f"/models/{Path(host).name}":
            renames.setdefault(str(Path(host).parent), "/models")
    if not renames:
        return moved, lambda text: text
    pattern = re.compile("|".join(re.escape(h) for h in sorted(renames, key=len, reverse=True)))
    return moved, lambda text: pattern.sub(lambda m: renames[m.group(0)], text)


@register_backend
class DockerBackend(Backend):
    """Runs each cell's server in its own container of the runtime's compose service image."""

    name: ClassVar[str] = "docker"

    def __init__(self, compose: Path | str | None = None, env: Mapping[str, str] | None = None,
                 run_name: str | None = None, grace_s: float = 10.0, poll_s: float = 0.5,
                 progress: Callable[[str], None] | None = None, client=None):
        self.compose_path = compose
        self.env = env
        self.run_name = run_name
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.progress = progress
        self._client = client
        self._compose: ComposeFile | None = None

    @property
    def client(self):
        if self._client is None:
            self._client = docker_client()
        return self._client

    @property
    def compose(self) -> ComposeFile:
        if self._compose is None:
            self._compose = load_compose(self.compose_path, self.env)
        return self._compose

    def service_for(self, spec: ServerSpec) -> Service:
        """The compose service that runs ``spec``'s runtime."""
        return self.compose.service(spec.image_service or spec.runtime)

    def container_config(self, spec: ServerSpec, service: Service, port: int) -> dict:
        """The ``containers.run`` keywords for ``spec`` on ``port`` laid over ``service`` (no GPUs, no labels)."""
        spec = spec.bind("0.0.0.0", port)
        # Host paths move to /models/<name> (read-only) and every argument naming them follows:
        # the image's user cannot traverse host-only folders such as /root.
        moved, rewrite = container_paths(spec)
        # compose's entrypoint stands for as many leading items of the argv (the host's program:
        # `llama-server`, `vllm`, `python3 .../main.py`); the rest are the cell's arguments
        skip = len(service.entrypoint) if service.entrypoint else 1
        config = {
            "command": [rewrite(a) for a in spec.argv[skip:]],
            "environment": {**service.environment, **{k: rewrite(v) for k, v in spec.env.items()},
                            "PORT": str(port)},
            "ports": {f"{port}/tcp": ("127.0.0.1", port)},
            "volumes": {host: {"bind": inside, "mode": "ro"} for host, inside in moved.items()},
        }
        if service.entrypoint is not None:
            config["entrypoint"] = service.entrypoint
        if service.healthcheck is not None:
            config["healthcheck"] = service.healthcheck.docker_config()
        if service.ipc:
            config["ipc_mode"] = service.ipc
        return config

    def start(self, spec: ServerSpec, log_path: Path, *, health_timeout: float, gpus: list[int] | None = None,
              run: str | None = None, cell: str | None = None) -> RunningServer:
        """Build the image if needed, run the container on a free port with ``gpus``, stream its log,
        return once healthy; ``run`` and ``cell`` become its labels (default: the backend's run name, "adhoc")."""
        client = self.client
        service = self.service_for(spec)
        image = ensure_image(client, service, progress=self.progress)
        # the same port inside and out: a server that names its own address stays right
        port = free_port()
        bound = spec.bind("0.0.0.0", port)
        _moved, rewrite = container_paths(bound)
        for path, content in bound.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rewrite(content), encoding="utf-8")  # as the container sees the paths
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        run = run or self.run_name or "adhoc"
        cell = cell or "adhoc"
        labels = {MANAGED: "true", RUN_LABEL: run, CELL_LABEL: cell, "runner.runtime": spec.runtime,
                  "runner.pid": str(os.getpid()), **owner_label()}
        config = self.container_config(spec, service, port)
        name = f"runner-{_label_value(run)}-{_label_value(cell)}-{uuid.uuid4().hex[:6]}"
        _install_sigterm()
        started = time.monotonic()
        from docker.errors import APIError

        try:
            container = client.containers.run(image.id, detach=True, name=name, labels=labels,
                                              device_requests=_device_requests(spec, service, client, gpus), **config)
        except APIError as exc:
            raise ServerStartError(f"{spec.runtime}: docker could not start {service.image}: "
                                   f"{exc.explanation or exc}") from None
        thread = threading.Thread(target=_stream_logs, args=(container, log_path), daemon=True,
                                  name=f"log-{container.short_id}")
        thread.start()
        _LIVE.add(container.id, _Live(container, thread))
        server = RunningServer(base_url=f"http://127.0.0.1:{port}", load_seconds=0.0, ident=container.id,
                               image_digest=image_digest(image), log_path=log_path)
        try:
            self._wait_healthy(spec, server, container, log_path, started + health_timeout, health_timeout)
        except BaseException:
            self.stop(server)
            raise
        server.load_seconds = time.monotonic() - started
        log.info("%s healthy at %s after %.1fs (container %s)", spec.runtime, server.base_url,
                 server.load_seconds, container.short_id)
        return server

    def _wait_healthy(self, spec: ServerSpec, server: RunningServer, container, log_path: Path,
                      deadline: float, health_timeout: float) -> None:
        url = f"{server.base_url}{spec.health_path}"
        with httpx.Client(timeout=5.0) as http:
            while True:
                container.reload()
                if container.status in ("exited", "dead"):
                    code = container.attrs.get("State", {}).get("ExitCode")
                    time.sleep(0.5)  # let the log reader catch the last lines
                    raise ServerStartError(f"{spec.runtime} container exited with code {code} before it was "
                                           f"healthy (log {log_path}): {log_tail(log_path)}")
                try:
                    if http.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{spec.runtime} container not healthy at {url} after "
                                           f"{health_timeout:.0f}s; stopped it (log {log_path}): {log_tail(log_path)}")
                time.sleep(self.poll_s)

    def stop(self, server: RunningServer) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove the container; idempotent."""
        live = _LIVE.pop(server.ident)
        if live is not None:
            _remove(live, self.grace_s)

    def alive(self, server: RunningServer) -> bool:
        """Whether the container still runs."""
        live = _LIVE.get(server.ident)
        if live is None:
            return False
        try:
            live.container.reload()
        except Exception:  # gone from the engine
            return False
        return live.container.status == "running"
