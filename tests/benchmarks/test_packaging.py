"""The wheel carries what the benchmarks need at run time: the manifest and the starter set."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import runner.benchmarks.manifest as manifest_module

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_manifest_and_the_starter_set(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("runner-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        packaged = archive.read("runner/benchmarks/simcopilot-90c5560-files.tsv")

    assert packaged == manifest_module.BUNDLED_MANIFEST.read_bytes()
    starter = {n for n in names if n.startswith("runner/benchmarks/starter/example_code/")}
    shipped = {f"runner/{p.relative_to(REPO / 'runner').as_posix()}"
               for p in (REPO / "runner/benchmarks/starter/example_code").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert shipped and starter == shipped
