"""Benchmarks: the shipped starter set and SimCoPilot (fetched or imported), in one layout.

Both are read by the same upstream-layout reader (``simcopilot.load_layout``). SimCoPilot has
two editions (``runner.benchmarks.editions``), each installed in its own folder.

It may import only ``runner.records``, ``runner.errors`` and ``runner.paths``: everything else stands on it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from runner import paths
from runner.benchmarks.benchmark import Benchmark, TaskCount, program_text
from runner.benchmarks.editions import DEFAULT_EDITION, EDITIONS, Edition, edition_of_commit, get_edition
from runner.benchmarks.manifest import SIMCOPILOT_COMMIT, load_manifest
from runner.benchmarks.simcopilot import dump_test_json, load_layout, parse_test_json
from runner.errors import UserError

BENCHMARKS = ("starter", "simcopilot")
STARTER_DIR = Path(__file__).resolve().parent / "starter"


def simcopilot_dir(edition: str | None = None) -> Path:
    """Where ``runner data fetch simcopilot [--edition E]`` puts that edition's copy."""
    return paths.runner_home() / "data" / get_edition(edition).folder


def benchmark_root(name: str, edition: str | None = None) -> Path:
    """The directory a benchmark is read from, or a ``UserError`` saying how to get it."""
    if name == "starter":
        return STARTER_DIR
    if name == "simcopilot":
        pinned = get_edition(edition)
        root = simcopilot_dir(pinned.name)
        if not (root / "example_code").is_dir():
            flag = "" if pinned.name == DEFAULT_EDITION else f" --edition {pinned.name}"
            raise UserError(
                f"SimCoPilot is not in {root} yet (edition {pinned.label}); run `runner data fetch simcopilot{flag}` "
                f"(or `runner data fetch simcopilot{flag} --from PATH` with a local copy)"
            )
        return root
    raise UserError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}")


def default_cascade(name: str) -> str:
    """The headline cascade of a benchmark: SimCoPilot's own scoring for SimCoPilot, ours elsewhere."""
    return "upstream" if name == "simcopilot" else "runner"


def benchmark_commit(bench: Benchmark) -> str:
    """The pinned commit a loaded benchmark's copy was checked against (the runner's version for the starter set)."""
    if bench.name == "simcopilot":
        return get_edition(bench.edition).commit
    from runner import __version__

    return f"{bench.name}-{__version__}"


def scoring_root(bench: Benchmark) -> Path | None:
    """The SimCoPilot copy whose scoring code judges ``bench``: its own for SimCoPilot, the default edition's otherwise."""
    return bench.root if bench.name == "simcopilot" else None


def load_benchmark(name: str, edition: str | None = None) -> Benchmark:
    """Load ``starter`` or ``simcopilot`` (of ``edition``, the default if ``None``) with every task, available or not."""
    root = benchmark_root(name, edition)
    # Only a SimCoPilot copy has a manifest saying which data files each program needs; the
    # import stores the one it was checked against beside the files.
    manifest = None
    pinned = None
    if name == "simcopilot":
        pinned = get_edition(edition)
        installed = root / "files.tsv"
        manifest = (load_manifest(installed, commit=pinned.commit) if installed.is_file()
                    else load_manifest(pinned.manifest, commit=pinned.commit))
    # expected outputs are upstream's; the environment check re-records a drifted program's
    # (runner.evaluation.environment), never a folder that would apply to every environment
    categories_root, note = _categories_root(root, pinned)
    bench = load_layout(root, name, manifest=manifest, categories_root=categories_root)
    if pinned is None:
        return bench
    return dataclasses.replace(bench, edition=pinned.name, notes=[*([note] if note else []), *bench.notes])


def _categories_root(root: Path, pinned: Edition | None) -> tuple[Path | None, str | None]:
    """Where a copy's category records are: its own ``Analysis_Results/``, or, for an edition whose
    commit lacks the folder (2025: its analyzer reads it, but it is not committed), the default
    edition's copy, whose programs and spans are the same."""
    if pinned is None or (root / "Analysis_Results").is_dir():
        return None, None
    fallback = simcopilot_dir(DEFAULT_EDITION)
    if pinned.name != DEFAULT_EDITION and (fallback / "Analysis_Results").is_dir():
        return fallback, (f"categories: from SimCoPilot {get_edition(DEFAULT_EDITION).label}'s Analysis_Results "
                          f"(the {pinned.name} commit lacks the folder its dependency analyzer reads)")
    return None, (f"categories: none (the {pinned.name} commit has no Analysis_Results; "
                  f"`runner data fetch simcopilot` installs the {DEFAULT_EDITION} release, whose records apply)")


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
    "DEFAULT_EDITION",
    "EDITIONS",
    "Edition",
    "edition_of_commit",
    "get_edition",
    "scoring_root",
    "simcopilot_dir",
]
