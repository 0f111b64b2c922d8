"""The environment fingerprint of this machine, checked against independent readings."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

from runner.measuring import fingerprint

REPO = Path(__file__).resolve().parent.parent


def test_fingerprint_describes_this_machine_and_checkout():
    fp = fingerprint.collect()
    assert fp.cpu_count == os.cpu_count()
    assert fp.python == platform.python_version()
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert abs(fp.ram_gib - int(meminfo["MemTotal"].split()[0]) / 2**20) < 0.2
    assert fp.packages["click"] == version("click") and fp.packages["pydantic"] == version("pydantic")
    assert "vllm-not-a-package" not in fp.packages
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert fp.git_commit == head and isinstance(fp.git_dirty, bool)
    assert fp.cpu and fp.os and fp.hostname


def test_a_folder_outside_git_has_no_commit(tmp_path):
    assert fingerprint.git_state(tmp_path) == (None, None)


def test_gpus_match_nvml_or_are_empty_without_a_driver():
    gpus = fingerprint.gpus()
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no NVIDIA driver on this machine: no GPU, and no error either
        assert gpus == []
        return
    try:
        assert len(gpus) == pynvml.nvmlDeviceGetCount()
        assert all(g["memory_mib"] > 0 and g["driver"] and g["cuda"] for g in gpus)
    finally:
        pynvml.nvmlShutdown()
