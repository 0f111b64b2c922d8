"""Energy and memory of one cell, measured for real or recorded as absent with the reason.

- **GPU** (NVML): the energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the
  driver loaded) read before and after the cell, summed over the GPUs; peak used memory polled.
- **CPU energy** (RAPL): ``/sys/class/powercap/intel-rapl:N/energy_uj`` of every package
  domain, where the file is readable (often root only, absent in VMs), with counter wrap-around.
- **Server memory**: the peak resident set size of the server's process tree (the server and
  the workers it spawned, e.g. vLLM's engine core), polled from ``/proc`` for a local server.

What cannot be measured on this host is ``None`` with a sentence saying why, so that the
report can leave the column out and say so instead of showing an always-empty column.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
#: how often memory is polled, seconds: the peak of a cell lasting minutes is not missed by much
POLL_S = 0.5


@dataclass
class Resources:
    """What one cell used; each figure is None with its reason in ``absent``."""

    energy_joules: float | None = None
    energy_source: str | None = None  # "nvml" or "rapl:package-0+package-1"
    peak_gpu_memory_mib: float | None = None
    peak_rss_mib: float | None = None
    absent: dict[str, str] = field(default_factory=dict)  # figure -> why it is missing


# -- RAPL ------------------------------------------------------------------------------------------
def rapl_domains(root: Path = POWERCAP) -> tuple[list[Path], str | None]:
    """The readable RAPL package domains (their folders), or [] and why not."""
    if not root.is_dir():
        return [], f"no {root} on this host (no RAPL driver, or a virtual machine)"
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not zones:
        return [], f"{root} has no intel-rapl package domain"
    readable = []
    for zone in zones:
        try:
            int((zone / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        readable.append(zone)
    if not readable:
        return [], f"{zones[0] / 'energy_uj'} is not readable by this user (RAPL needs root on recent kernels)"
    return readable, None


def _read_uj(zone: Path) -> tuple[int, int]:
    value = int((zone / "energy_uj").read_text())
    try:
        wrap = int((zone / "max_energy_range_uj").read_text())
    except (OSError, ValueError):
        wrap = 0
    return value, wrap


def rapl_joules(before: dict[Path, tuple[int, int]], after: dict[Path, tuple[int, int]]) -> float:
    """Joules between two readings of the same domains, allowing each counter one wrap."""
    total = 0
    for zone, (start, wrap) in before.items():
        end = after[zone][0]
        total += end - start if end >= start else end + wrap - start
    return total / 1e6


# -- process memory ----------------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the ppid follows the last ')'
        fields = text[text.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def tree_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` and all its descendants, bytes; None when ``pid`` is gone."""
    children = _children_map()
    todo, total, found = [pid], 0, False
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    found = True
                    break
        except OSError:
            continue
        todo.extend(children.get(current, []))
    return total if found else None


# -- the meter --------------------------------------------------------------------------------------
class ResourceMeter:
    """Measure one cell: ``start()`` before its first request, ``stop()`` after its last."""

    def __init__(self, *, server_pid: int | None, gpu_indices: list[int] | None = None,
                 rss_reason: str | None = None, poll_s: float = POLL_S, powercap: Path = POWERCAP):
        self.server_pid = server_pid
        self.rss_reason = rss_reason or ("the server is not a local process (its memory is the container's)"
                                         if server_pid is None else None)
        self.poll_s = poll_s
        self.powercap = powercap
        self.result = Resources()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml = _Nvml.open(gpu_indices)
        self._rapl_before: dict[Path, tuple[int, int]] = {}
        self._nvml_before: float | None = None
        self._peak_rss = 0
        self._peak_gpu = 0.0

    def start(self) -> "ResourceMeter":
        if self._nvml is not None:
            self._nvml_before = self._nvml.energy_mj()
        zones, why = rapl_domains(self.powercap)
        if zones:
            self._rapl_before = {z: _read_uj(z) for z in zones}
        self._rapl_why = why
        self._thread = threading.Thread(target=self._poll, name="resource-meter", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while True:
            if self.server_pid is not None:
                rss = tree_rss_bytes(self.server_pid)
                if rss is not None:
                    self._peak_rss = max(self._peak_rss, rss)
            if self._nvml is not None:
                self._peak_gpu = max(self._peak_gpu, self._nvml.used_mib())
            if self._stop.wait(self.poll_s):
                return

    def stop(self) -> Resources:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        r = self.result
        if self._nvml is not None:
            after = self._nvml.energy_mj()
            if self._nvml_before is not None and after is not None:
                r.energy_joules, r.energy_source = (after - self._nvml_before) / 1000, "nvml"
            else:
                r.absent["energy"] = "this GPU's driver has no energy counter (NVML: not supported)"
            r.peak_gpu_memory_mib = round(self._peak_gpu, 1)
            self._nvml.close()
        else:
            r.absent["peak_gpu_memory"] = "no NVIDIA GPU (NVML found none)"
        if r.energy_joules is None and self._rapl_before:
            try:
                after = {z: _read_uj(z) for z in self._rapl_before}
                r.energy_joules = rapl_joules(self._rapl_before, after)
                r.energy_source = "rapl:" + "+".join(_zone_name(z) for z in self._rapl_before)
            except (OSError, ValueError) as exc:
                r.absent["energy"] = f"RAPL read failed: {exc}"
        elif r.energy_joules is None and "energy" not in r.absent:
            r.absent["energy"] = f"no GPU energy counter, and {self._rapl_why}"
        if self._peak_rss:
            r.peak_rss_mib = round(self._peak_rss / 2**20, 1)
        else:
            r.absent["peak_rss"] = self.rss_reason or f"process {self.server_pid} could not be read in /proc"
        return r


def _zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError:
        return zone.name


class _Nvml:
    """The NVML calls the meter needs, on the GPUs a cell uses (all when ``indices`` is None)."""

    def __init__(self, pynvml, handles):
        self.pynvml = pynvml
        self.handles = handles

    @classmethod
    def open(cls, indices: list[int] | None) -> "_Nvml | None":
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001 - no driver, no library, no GPU: a CPU host
            return None
        count = pynvml.nvmlDeviceGetCount()
        chosen = [i for i in (indices if indices is not None else range(count)) if i < count]
        if not chosen:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in chosen])

    def energy_mj(self) -> float | None:
        try:
            return float(sum(self.pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles))
        except self.pynvml.NVMLError:
            return None

    def used_mib(self) -> float:
        return sum(self.pynvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles) / 2**20

    def close(self) -> None:
        self.pynvml.nvmlShutdown()

