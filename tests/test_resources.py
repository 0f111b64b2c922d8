"""Energy and memory per cell: RAPL counters (with wrap-around), the server's process-tree peak RSS,
NVML where a GPU exists; what a host cannot measure is absent with its reason."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.measuring import fingerprint
from runner.measuring.resources import ResourceMeter, rapl_domains, rapl_joules, tree_rss_bytes

from tests.conftest import require

#: a parent that starts a child holding 200 MiB, both alive for a few seconds
TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "x = bytearray(200 * 2**20); x[::4096] = b'1' * len(x[::4096]); "
                          "import time; time.sleep(6)"])
time.sleep(7)
child.wait()
"""


def powercap(root: Path, energy_uj: int, wrap: int = 262143328850) -> Path:
    """A folder laid out like /sys/class/powercap with one package domain."""
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")
    (root / "intel-rapl:0:0").mkdir(exist_ok=True)  # a sub-domain (core): not counted twice
    return zone


def test_rapl_counts_joules_and_survives_one_wrap(tmp_path):
    zone = powercap(tmp_path, 1_000_000)
    zones, why = rapl_domains(tmp_path)
    assert zones == [zone] and why is None
    before = {zone: (262_143_000_000, 262_143_328_850)}
    after = {zone: (671_150, 262_143_328_850)}  # wrapped past the range
    assert abs(rapl_joules(before, after) - (328_850 + 671_150) / 1e6) < 1e-9


def test_a_host_without_powercap_says_why(tmp_path):
    zones, why = rapl_domains(tmp_path / "absent")
    assert zones == [] and "no " in why and "RAPL" in why


def test_the_meter_reads_a_process_trees_peak_rss_and_rapl_energy(tmp_path):
    zone = powercap(tmp_path / "powercap", 5_000_000)
    proc = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        meter = ResourceMeter(server_pid=proc.pid, poll_s=0.2, powercap=tmp_path / "powercap").start()
        time.sleep(4)
        (zone / "energy_uj").write_text("17500000\n")  # the package spent 12.5 J meanwhile
        used = meter.stop()
    finally:
        proc.wait(timeout=30)
    assert used.peak_rss_mib is not None and used.peak_rss_mib > 200  # the child's 200 MiB counted
    if fingerprint.gpus():
        assert used.energy_source == "nvml" and used.peak_gpu_memory_mib > 0
    else:
        assert used.energy_joules == 12.5 and used.energy_source == "rapl:package-0"
        assert "NVML" in used.absent["peak_gpu_memory"]


def test_without_any_counter_energy_is_absent_with_the_reason(tmp_path):
    meter = ResourceMeter(server_pid=None, poll_s=0.1, powercap=tmp_path / "none").start()
    used = meter.stop()
    assert used.peak_rss_mib is None and "not a local process" in used.absent["peak_rss"]
    if not fingerprint.gpus():
        assert used.energy_joules is None and "RAPL" in used.absent["energy"]


def test_tree_rss_of_a_gone_process_is_none():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tree_rss_bytes(proc.pid) is None


#: a stand-in for a GPU server: holds 4 GiB on the first GPU and multiplies bf16 matrices for 6 s
GPU_LOAD = """
import time, torch
held = torch.empty(4 * 2**30, dtype=torch.uint8, device="cuda")
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 6
while time.time() < end:
    b = a @ a
    torch.cuda.synchronize()
"""


@pytest.mark.gpu
def test_on_an_nvidia_gpu_the_meter_reads_the_energy_counter_and_the_peak_memory_in_use():
    require(bool(fingerprint.gpus()), "an NVIDIA GPU (run with -m gpu on a GPU host)")
    require(subprocess.run([sys.executable, "-c", "import torch"]).returncode == 0, "torch, to load the GPU")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", GPU_LOAD])
    meter = ResourceMeter(server_pid=proc.pid, poll_s=0.2).start()
    assert proc.wait(timeout=120) == 0
    used = meter.stop()
    seconds = time.monotonic() - started
    assert used.energy_source == "nvml" and "energy" not in used.absent
    watts = used.energy_joules / seconds
    assert 30 < watts < 2000, (used.energy_joules, seconds)  # a busy datacenter GPU, in joules, not mJ
    assert used.peak_gpu_memory_mib >= 4096 + 128, used.peak_gpu_memory_mib  # the 4 GiB held and the matrices
    assert used.peak_rss_mib is not None and used.peak_rss_mib > 50  # the process's own host memory
