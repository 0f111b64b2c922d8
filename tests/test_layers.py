"""The import-linter contracts of pyproject.toml, run by the real ``lint-imports`` on the real tree (kept) and on
copies of ``runner/`` with one deliberate violation each (broken, the contract named)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[1]
PACKAGES = "runner's packages point one way: cli on top, records at the bottom"
RUN_EXECUTORS = "a run hands its cells to an executor, which runs each cell; neither reaches back"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the repository's contracts over the ``runner`` package found first under ``root``."""
    require(importlib.util.find_spec("importlinter") is not None, "import-linter (pip install -e '.[test]')")
    # the package is looked up by import: root first, so that a copy shadows the installed checkout
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                           str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def copy(tmp_path) -> Path:
    """A copy of ``runner/`` under a fresh root, to break."""
    shutil.copytree(REPO / "runner", tmp_path / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_tree_keeps_every_contract():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{PACKAGES} KEPT" in done.stdout
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_an_upward_import_breaks_the_layers_and_is_named(copy):
    records = copy / "runner" / "records.py"
    records.write_text(records.read_text() + "\nfrom runner.cli import main  # noqa: E402,F401 - deliberate\n")
    done = lint_imports(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{PACKAGES} BROKEN" in done.stdout
    assert "runner.records -> runner.cli" in done.stdout


def test_a_type_only_import_counts(copy):
    # the circle this layout broke: executors/base.py once imported the run for a type annotation
    base = copy / "runner" / "executors" / "base.py"
    text = base.read_text()
    assert "if TYPE_CHECKING:\n" in text
    base.write_text(text.replace("if TYPE_CHECKING:\n", "if TYPE_CHECKING:\n    from runner.running.run import Reproduction  # noqa: F401\n", 1))
    done = lint_imports(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "runner.executors.base -> runner.running.run" in done.stdout
    assert RUN_EXECUTORS in done.stdout and "BROKEN" in done.stdout


def test_a_module_outside_every_layer_is_refused(copy):
    (copy / "runner" / "helpers.py").write_text('"""Somewhere new, in no layer."""\n')
    done = lint_imports(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{PACKAGES} BROKEN" in done.stdout
    assert "runner.helpers" in done.stdout


def test_the_wheel_ships_every_module_and_runs_as_python_m_runner(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("runner-*.whl")
    unpacked = tmp_path / "site"
    shutil.unpack_archive(wheel, unpacked, format="zip")
    tree = {p.relative_to(REPO).as_posix() for p in (REPO / "runner").rglob("*.py") if "__pycache__" not in p.parts}
    shipped = {p.relative_to(unpacked).as_posix() for p in (unpacked / "runner").rglob("*.py")}
    assert tree and tree == shipped
    # the unpacked wheel first on the path, run from elsewhere: the commands come from the wheel's packages
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    where = subprocess.run([sys.executable, "-c", "import runner.cli, runner.matrix; print(runner.cli.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(unpacked / "runner" / "cli" / "__init__.py"), where.stderr
    from runner.benchmarks import load_benchmark

    tasks = len(load_benchmark("starter").tasks)
    for module in ("runner", "runner.cli"):
        done = subprocess.run([sys.executable, "-m", module, "tasks", "list", "--benchmark", "starter", "--json"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == tasks  # the starter set's tasks, one JSON line each


def test_no_module_of_runner_is_over_600_lines():
    """A module past 600 lines usually holds two concepts (docs/architecture.md says none is left)."""
    package = Path(__file__).resolve().parent.parent / "runner"
    long = {str(path.relative_to(package)): n for path in package.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 600}
    assert long == {}
