"""The same cell on each machine, and which resource figures (memory, energy) any cell has."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from runner.report.data import RunData, machine_key
from runner.report.headline import HeadlineRow


# -- hardware ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HardwareEntry:
    machine: str
    row: HeadlineRow
    speedup: float | None  # reference machine's e2e p50 / this machine's (>1: faster)


@dataclass(frozen=True)
class HardwareRow:
    """The same cell measured on several machines."""

    cell_id: str
    entries: list[HardwareEntry]


def hardware(runs: list[RunData], rows: list[HeadlineRow]) -> list[HardwareRow]:
    """Cells measured on more than one machine, side by side; empty when all runs share a machine."""
    if len({machine_key(r.manifest.fingerprint) for r in runs}) < 2:
        return []
    by_id: dict[str, list[HeadlineRow]] = defaultdict(list)
    for row in rows:
        by_id[row.cell.cell.id].append(row)
    out = []
    for cell_id, same in by_id.items():
        machines = {machine_key(r.cell.run.manifest.fingerprint) for r in same}
        if len(machines) < 2:
            continue
        ref = same[0].latency.e2e_p50
        entries = [HardwareEntry(machine=r.cell.run.machine, row=r,
                                 speedup=(ref / r.latency.e2e_p50) if ref and r.latency.e2e_p50 else None)
                   for r in same]
        out.append(HardwareRow(cell_id=cell_id, entries=entries))
    return out


@dataclass
class ResourceColumns:
    """Which energy and memory figures any cell has (a column only then), and why the others are missing."""

    peak_gpu_memory: bool
    peak_rss: bool
    energy: bool
    cold_ttft: bool
    notes: list[str]  # "energy: not measured on <machine>: <why>", one per distinct reason


def resource_columns(rows: list[HeadlineRow]) -> ResourceColumns:
    notes: dict[str, None] = {}
    for row in rows:
        for what, why in row.cell.result.resources_absent.items():
            notes[f"{what.replace('_', ' ')}: not measured on {row.cell.run.machine}: {why}"] = None
    return ResourceColumns(peak_gpu_memory=any(r.cell.result.peak_gpu_memory_mib is not None for r in rows),
                           peak_rss=any(r.cell.result.peak_rss_mib is not None for r in rows),
                           energy=any(r.energy_per_task_j is not None for r in rows),
                           cold_ttft=any(r.latency.ttft_cold_p50 is not None for r in rows), notes=list(notes))
