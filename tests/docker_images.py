"""The CPU variants of the runner's images, for tests against the real Docker engine.

They are built FROM the local debootstrap base (no registry here) with the build arguments
compose.yaml reads from these variables, and only when missing: the engine's cache keeps them
between sessions. Each helper skips (or fails under CI=true) when the engine is not there.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from runner.errors import UserError
from runner.infra.compose import load_compose
from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "runner-base:bookworm"

LLAMACPP_CPU_ENV = {
    "LLAMACPP_TAG": "0.3.36-cpu",
    "LLAMACPP_BASE": BASE_IMAGE,
    "LLAMACPP_RUNTIME_BASE": BASE_IMAGE,
    "LLAMA_SERVER_FROM": "context",
    "LLAMACPP_CMAKE_FLAGS": "",
}
SANDBOX_CPU_ENV = {"SANDBOX_TAG": "minimal", "SANDBOX_BASE": BASE_IMAGE, "SANDBOX_STACK": "minimal"}


def engine():
    """A Docker SDK client for the local engine (skip, or fail in CI, without one)."""
    from runner.backends.docker import docker_client

    try:
        client = docker_client(timeout=600)
    except UserError as exc:
        require(False, f"a Docker engine ({exc})")
    return client


def _script(*argv: str) -> None:
    done = subprocess.run(["bash", *argv], cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, f"{' '.join(argv)} failed: {done.stderr[-2000:]}"


def base_image(client) -> str:
    """The debootstrap base, built by scripts/docker-base-image.sh when missing (minutes)."""
    if not client.images.list(name=BASE_IMAGE):
        _script("scripts/docker-base-image.sh", BASE_IMAGE)
    return BASE_IMAGE


def llamacpp_cpu_image(client):
    """The CPU image of Dockerfile.llamacpp, built through compose's build section when missing."""
    from runner.backends.docker import ensure_image

    service = load_compose(env=LLAMACPP_CPU_ENV).service("llamacpp")
    if not client.images.list(name=service.image):
        base_image(client)
        _script("scripts/docker-local-context.sh", "llamacpp")
    return ensure_image(client, service)


def sandbox_cpu_image(client):
    """The minimal (standard library only) image of Dockerfile.sandbox, built when missing."""
    from runner.backends.docker import ensure_image

    service = load_compose(env=SANDBOX_CPU_ENV).service("sandbox")
    if not client.images.list(name=service.image):
        base_image(client)
        _script("scripts/docker-local-context.sh", "sandbox", "minimal")
    return ensure_image(client, service)
