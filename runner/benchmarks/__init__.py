"""Benchmarks: the shipped starter set and SimCoPilot (fetched or imported), in one layout.

Both are read by the same upstream-layout reader (``simcopilot.load_layout``). Expected
outputs re-baselined by ``runner tasks rebaseline`` live in ``$RUNNER_HOME/rebaseline/<name>/``
and take the place of the shipped ones.
"""

from __future__ import annotations

from pathlib import Path

from runner import paths
from runner.benchmarks.benchmark import Benchmark, TaskCount, program_text
from runner.benchmarks.manifest import SIMCOPILOT_COMMIT, load_manifest
from runner.benchmarks.simcopilot import dump_test_json, load_layout, parse_test_json
from runner.errors import UserError

BENCHMARKS = ("starter", "simcopilot")
STARTER_DIR = Path(__file__).resolve().parent / "starter"


def simcopilot_dir() -> Path:
    """Where ``runner data fetch simcopilot`` puts the imported copy."""
    return paths.runner_home() / "data" / "simcopilot"


def rebaseline_dir(name: str) -> Path:
    """Folder of ``<Task_Name>.json`` files overriding a benchmark's Python expected outputs."""
    return paths.runner_home() / "rebaseline" / name


def benchmark_root(name: str) -> Path:
    """The directory a benchmark is read from, or a ``UserError`` saying how to get it."""
    if name == "starter":
        return STARTER_DIR
    if name == "simcopilot":
        root = simcopilot_dir()
        if not (root / "example_code").is_dir():
            raise UserError(
                f"SimCoPilot is not in {root} yet; run `runner data fetch simcopilot` "
                "(or `runner data fetch simcopilot --from PATH` with a local copy)"
            )
        return root
    raise UserError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}")


def default_cascade(name: str) -> str:
    """The headline cascade of a benchmark: SimCoPilot's own scoring for SimCoPilot, ours elsewhere."""
    return "upstream" if name == "simcopilot" else "runner"


def benchmark_commit(bench: Benchmark) -> str:
    """The pinned commit a loaded benchmark's copy was checked against (the runner's version for the starter set)."""
    if bench.name == "simcopilot":
        installed = bench.root / "files.tsv"
        return (load_manifest(installed) if installed.is_file() else load_manifest()).commit
    from runner import __version__

    return f"{bench.name}-{__version__}"


def load_benchmark(name: str) -> Benchmark:
    """Load ``starter`` or ``simcopilot`` with every task, available or not."""
    root = benchmark_root(name)
    # Only a SimCoPilot copy has a manifest saying which data files each program needs; the
    # import stores the one it was checked against beside the files.
    manifest = None
    if name == "simcopilot":
        installed = root / "files.tsv"
        manifest = load_manifest(installed) if installed.is_file() else load_manifest()
    # expected outputs are upstream's; the environment check re-records a drifted program's
    # (runner.evaluation.environment), never a folder that would apply to every environment
    return load_layout(root, name, manifest=manifest)


__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "SIMCOPILOT_COMMIT",
    "TaskCount",
    "benchmark_commit",
    "benchmark_root",
    "default_cascade",
    "dump_test_json",
    "load_benchmark",
    "load_layout",
    "parse_test_json",
    "program_text",
    "rebaseline_dir",
    "simcopilot_dir",
]
