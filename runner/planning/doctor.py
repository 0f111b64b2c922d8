"""What this host offers, and which cells of a matrix it can run (and if not, why).

``probe_host()`` looks once: NVIDIA GPUs through NVML, the Docker engine, free disk, Java and the
JUnit jars, the local servers (llama-server, vLLM, TabbyAPI) and runtime package versions.
``plan_cells(matrix, host)`` decides per cell; ``runner reproduce`` uses it to refuse or skip
cells before any server starts, ``runner doctor`` prints both.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import time

from pydantic import BaseModel, Field

from runner.errors import UserError
from runner.matrix import Matrix
from runner.paths import cache_dir
from runner.planning import gpu_memory
from runner.planning.weights import missing_path
from runner.records import Cell
from runner.runtimes import get_runtime, runtime_names

log = logging.getLogger(__name__)

#: packages whose presence and version decide what a host can serve
RUNTIME_PACKAGES = ("vllm", "torch", "transformers", "exllamav2", "llama-cpp-python", "docker", "nvidia-ml-py",
                    "huggingface-hub", "gguf")


class GpuInfo(BaseModel):
    """One NVIDIA GPU as NVML reports it."""

    index: int
    name: str
    memory_gib: float
    free_gib: float


class Check(BaseModel):
    """One line of the host report."""

    name: str
    ok: bool
    detail: str


class Host(BaseModel):
    """What this machine offers for serving and evaluating cells."""

    gpus: list[GpuInfo] = Field(default_factory=list)
    gpu_note: str = ""  # driver and CUDA versions, or why NVML sees no GPU
    docker: str | None = None  # the engine's version when reachable
    docker_note: str = ""  # why it is not reachable
    ram_gib: float = 0.0
    cpu: str = ""  # the CPU's model name (``runner.measuring.fingerprint.cpu_model``)
    cpu_count: int = 0  # logical cores (0: not probed; the plan then asks os.cpu_count())
    free_disk_gib: float = 0.0  # where models and servers are cached
    java: str | None = None  # "java -version"'s first line when javac, java and the JUnit jars are there
    java_note: str = ""
    runtimes: dict[str, str | None] = Field(default_factory=dict)  # runtime -> why it cannot start locally
    packages: dict[str, str | None] = Field(default_factory=dict)  # package -> version (None: absent)
    #: not this host but one --assume-gpus describes: its GPUs, in words ("" for the host as probed)
    assumed: str = ""

    def checks(self) -> list[Check]:
        """The host report, one check per line."""
        gpus = ", ".join(f"{g.index}: {g.name} {g.memory_gib:.0f} GiB" for g in self.gpus)
        lines = [
            Check(name="NVIDIA GPUs", ok=bool(self.gpus),
                  detail=f"{gpus} ({self.gpu_note})" if gpus else self.gpu_note),
            Check(name="Docker engine", ok=self.docker is not None,
                  detail=f"reachable, version {self.docker}" if self.docker else self.docker_note),
            Check(name="memory", ok=self.ram_gib > 0, detail=f"{self.ram_gib:.1f} GiB RAM"),
            Check(name="free disk", ok=self.free_disk_gib >= 10,
                  detail=f"{self.free_disk_gib:.1f} GiB free in {cache_dir()}"),
            Check(name="Java + JUnit", ok=self.java is not None, detail=self.java or self.java_note),
        ]
        for name, problem in sorted(self.runtimes.items()):
            lines.append(Check(name=f"runtime {name} (local)", ok=problem is None, detail=problem or "ready"))
        lines.append(Check(name="packages (runner venv)", ok=True, detail=", ".join(
            f"{name} {version or 'absent'}" for name, version in self.packages.items())))
        return lines


class CellPlan(BaseModel):
    """Whether this host can run one cell, on which device, and if not, why."""

    cell: Cell
    runnable: bool
    device: str  # "gpu" or "cpu"
    reason: str | None = None


def _gpus() -> tuple[list[GpuInfo], str]:
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA driver or GPU (NVML: {exc})"
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            found.append(GpuInfo(index=index, name=name.decode() if isinstance(name, bytes) else name,
                                 memory_gib=memory.total / 2**30, free_gib=memory.free / 2**30))
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        return found, f"driver {driver}, CUDA {cuda // 1000}.{cuda % 1000 // 10}"
    except pynvml.NVMLError as exc:
        return [], f"NVML error: {exc}"
    finally:
        pynvml.nvmlShutdown()


def _docker() -> tuple[str | None, str]:
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return None, "the docker Python package is not installed"
    try:
        client = docker.from_env(timeout=5)
        try:
            return client.version().get("Version", "unknown"), ""
        finally:
            client.close()
    except DockerException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"not reachable ({first[:160]}); start the Docker daemon or set DOCKER_HOST"


def _java() -> tuple[str | None, str]:
    from runner.evaluation.java_check import java_toolchain, java_version

    try:
        toolchain = java_toolchain()
    except UserError as exc:
        return None, str(exc)
    return f"{java_version()}; JUnit console {toolchain.junit_console}", ""


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


_PROBED: tuple[float, Host] | None = None


def probe_host(max_age_s: float = 30.0) -> Host:
    """This machine as seen at most ``max_age_s`` ago (a fresh look takes a few seconds at most)."""
    global _PROBED
    if _PROBED is not None and time.monotonic() - _PROBED[0] <= max_age_s:
        return _PROBED[1].model_copy(deep=True)
    host = _probe()
    _PROBED = (time.monotonic(), host)
    return host.model_copy(deep=True)


def _probe() -> Host:
    gpus, gpu_note = _gpus()
    docker_version, docker_note = _docker()
    java, java_note = _java()
    runtimes = {}
    for name in runtime_names():
        runtime = get_runtime(name)
        problem = runtime.local_problem()
        if runtime.requires_gpu and not gpus:
            problem = f"needs an NVIDIA GPU (CUDA only){'; ' + problem if problem else ''}"
        runtimes[name] = problem
    from runner.measuring.fingerprint import cpu_model

    return Host(gpus=gpus, gpu_note=gpu_note, docker=docker_version, docker_note=docker_note, ram_gib=_ram_gib(),
                cpu=cpu_model(), cpu_count=os.cpu_count() or 0,
                free_disk_gib=shutil.disk_usage(cache_dir()).free / 2**30, java=java, java_note=java_note,
                runtimes=runtimes, packages={p: _version(p) for p in RUNTIME_PACKAGES})


def plan_cells(matrix: Matrix, host: Host | None = None, *, backend: str | None = None) -> list[CellPlan]:
    """For each cell of ``matrix``: can ``host`` (default: this one) run it on ``backend`` (default: the matrix's)?"""
    host = host or probe_host()
    backend = backend or matrix.backend
    plans = []
    for cell in matrix.cells:
        plans.append(_plan(matrix, cell, host, backend))
    return plans


def _plan(matrix: Matrix, cell: Cell, host: Host, backend: str) -> CellPlan:
    runtime = get_runtime(cell.runtime)
    device = "gpu" if host.gpus else "cpu"

    def no(reason: str) -> CellPlan:
        return CellPlan(cell=cell, runnable=False, device=device, reason=reason)

    if missing := missing_path(matrix, cell):
        return no(missing)
    if (switch := runtime.gpu_switch(cell)) and (not host.gpus or runtime.cpu_build(backend)):
        cpu = f"this host has no GPU ({host.gpu_note})" if not host.gpus else runtime.cpu_build(backend)
        return no(f"{switch.key} = {switch.value!r}: {switch.why}, and {cpu}; drop it, or run the cell on a GPU "
                  "host with the docker backend")
    if runtime.needs_gpu(cell) and not host.gpus:
        what = "runs" if runtime.requires_gpu else f"serves {cell.quantization} weights"
        return no(f"runtime {runtime.name} {what} on NVIDIA GPUs only and this host has none ({host.gpu_note})")
    if backend == "docker" and host.docker is None:
        return no(f"the docker backend needs the Docker engine, which is {host.docker_note}")
    if backend == "local":
        problem = runtime.local_problem()
        if problem:
            return no(problem)
    if host.gpus:
        gpus = matrix.request(cell).gpus
        if gpus > len(host.gpus):
            return no(f"needs {gpus} GPUs (tensor parallel) and this host has {len(host.gpus)}")
        problem = gpu_memory.refusal(matrix, cell, [g.memory_gib for g in host.gpus], host.gpus[0].name)
        if problem:
            return no(problem)
    elif (need := gpu_memory.cell_memory(matrix, cell).host_gib) and host.ram_gib and need > 0.8 * host.ram_gib:
        return no(f"on the CPU it needs about {need:.0f} GiB of memory and this host has "
                  f"{host.ram_gib:.0f} GiB RAM")
    return CellPlan(cell=cell, runnable=True, device=device)


def assumed_host(text: str, host: Host) -> Host:
    """``host`` (this one, probed) with the GPUs ``--assume-gpus text`` names in place of its own; its CPUs,
    memory and disk stay this host's, and its Docker engine is assumed where this host has none."""
    kind, count = gpu_memory.parse_assume_gpus(text)
    gpus = [GpuInfo(index=i, name=kind.name, memory_gib=kind.memory_gib, free_gib=kind.memory_gib)
            for i in range(count)]
    note = f"assumed by --assume-gpus {text}, not probed: {kind.memory_mib:,} MiB each as NVML reports it"
    # the probe's "needs an NVIDIA GPU" no longer applies; what else it found (a missing server) still does
    runtimes = {name: (problem.partition("; ")[2] or None if problem and problem.startswith("needs an NVIDIA GPU")
                       else problem) for name, problem in host.runtimes.items()}
    return host.model_copy(update={
        "gpus": gpus, "gpu_note": note, "runtimes": runtimes,
        "docker": host.docker or "assumed (--assume-gpus)", "docker_note": "",
        "assumed": f"{count} x {kind.name} ({kind.memory_gib:.1f} GiB each, --assume-gpus {text})"})
