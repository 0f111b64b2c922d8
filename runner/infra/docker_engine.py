"""The Docker engine, as both the Docker backend (servers) and the Docker sandbox (tests) use it:
a connected client, the images built from compose's build sections, their digests, GPU support.

Every image the runner builds carries ``runner.managed=true``: ``runner clean --images`` removes those.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping

from runner.errors import UserError
from runner.infra.compose import Service

log = logging.getLogger(__name__)

MANAGED = "runner.managed"
#: the runner process that made a container: ``host:boot_id:pid:start_ticks``. ``runner clean``
#: leaves a container whose owner still runs (another run on a shared engine) and removes the rest.
OWNER = "runner.owner"


def docker_client(timeout: float = 120.0, *, otherwise: str = "or use --backend local"):
    """A connected Docker SDK client, or a ``UserError`` saying why not and what to do.

    ``otherwise`` ends the message: the alternative the calling command offers (its own option)."""
    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    tail = f" {otherwise}" if otherwise else ""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except DockerException as exc:
        text = str(exc)
        if "Permission denied" in text or "PermissionError" in text:
            raise UserError(f"permission denied on the Docker engine at {host}: add your user to the docker "
                            f"group (sudo usermod -aG docker $USER, then log in again){tail}") from None
        raise UserError(f"no Docker engine answers at {host}: start it (sudo systemctl start docker, or "
                        f"dockerd &){tail}") from None


def gpus_available(client) -> bool:
    """Whether this engine can hand NVIDIA GPUs to containers (an nvidia runtime or device nodes)."""
    try:
        runtimes = client.info().get("Runtimes") or {}
    except Exception:  # an engine that cannot describe itself offers nothing to rely on
        runtimes = {}
    return "nvidia" in runtimes or Path("/dev/nvidiactl").exists()


def ensure_image(client, service: Service, *, progress: Callable[[str], None] | None = None,
                 labels: Mapping[str, str] | None = None):
    """The service's image, built from compose's build section first when it is missing."""
    from docker.errors import APIError, BuildError, ImageNotFound

    try:
        return client.images.get(service.image)
    except ImageNotFound:
        pass
    if service.build is None:
        raise UserError(f"compose service {service.name}: image {service.image} is not here and the service has "
                        "no build section; pull or build it first")
    build = service.build
    log.info("building %s from %s (%s)", service.image, build.dockerfile, build.context)
    tail: list[str] = []
    try:
        events = client.api.build(path=str(build.context), dockerfile=build.dockerfile, buildargs=build.args,
                                  target=build.target, tag=service.image, rm=True, forcerm=True, decode=True,
                                  labels={MANAGED: "true", "runner.service": service.name, **(labels or {})})
        for event in events:
            if "error" in event:
                raise UserError(f"building {service.image} ({build.dockerfile}) failed: {event['error'].strip()}; "
                                f"last output: {' | '.join(tail[-5:])}")
            line = (event.get("stream") or event.get("status") or "").rstrip()
            if line:
                tail.append(line)
                del tail[:-20]
                if progress:
                    progress(line)
    except (APIError, BuildError) as exc:
        raise UserError(f"building {service.image} ({build.dockerfile}) failed: {exc}") from None
    return client.images.get(service.image)


def image_digest(image) -> str:
    """The registry digest when the image has one, else its content id (``sha256:...``)."""
    repo_digests = image.attrs.get("RepoDigests") or []
    return repo_digests[0] if repo_digests else image.id


def owner_label() -> dict[str, str]:
    """The label naming this process as a container's owner (host, boot, pid and its start time)."""
    import socket

    from runner.infra.lifetime import boot_id, process_start_ticks

    return {OWNER: f"{socket.gethostname()}:{boot_id()}:{os.getpid()}:{process_start_ticks(os.getpid()) or 0}"}


def owner_alive(labels: Mapping[str, str]) -> str | None:
    """Why a container's owner may still be running (``runner clean`` keeps it), or None when the
    owner is provably gone (same host, another boot or a dead pid) or the container names none."""
    import socket

    from runner.infra.lifetime import boot_id, is_process

    try:
        host, boot, pid, ticks = labels[OWNER].rsplit(":", 3)
        pid_n, ticks_n = int(pid), int(ticks)
    except (KeyError, ValueError):
        return None
    if host != socket.gethostname():
        return f"its runner is on host {host}, which this machine cannot check"
    if boot == boot_id() and is_process(pid_n, ticks_n):
        return f"its runner (pid {pid}) is still running"
    return None
