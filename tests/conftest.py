"""Shared fixtures. Every test gets its own RUNNER_HOME; heavy caches are shared."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import platformdirs
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The real cache (built llama-server, converted models) survives across tests and sessions.
SHARED_CACHE = Path(os.environ.get("RUNNER_CACHE") or os.environ.get("RUNNER_HOME")
                    or platformdirs.user_cache_dir("runner"))


def pytest_configure(config):  # noqa: ARG001
    """Ctrl-C tests need SIGINT live: a shell that starts the suite in the background hands it over
    ignored (POSIX), and every server or runner the tests spawn would inherit that."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def require(condition: bool, component: str) -> None:
    """Skip when ``component`` is missing on a developer's machine; fail in CI, where it must exist."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{component} is missing, and CI=true requires it (see .ci/run)")
    pytest.skip(f"{component} is missing")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Point RUNNER_HOME at a fresh folder so no test touches the user's data or runs."""
    home = tmp_path_factory.mktemp("runner-home")
    monkeypatch.setenv("RUNNER_HOME", str(home))
    monkeypatch.setenv("RUNNER_CACHE", str(SHARED_CACHE))
    return home


# -- upstream SimCoPilot at the pinned commit, from shared/ (never committed) ----------------------
#: ``shared/`` sits beside the repository, in a checkout, a worktree and CI's clean clone alike
SHARED_DIR = Path(os.environ.get("RUNNER_SHARED") or Path(__file__).resolve().parents[2] / "shared")
SIMCOPILOT_ARCHIVE = SHARED_DIR / "simcopilot-90c5560.tar.gz"
#: the 2025 edition: mj33rice/Sim-CoPilot at 096d1c4, the repository the paper links
SIMCOPILOT_2025_ARCHIVE = SHARED_DIR / "sim-copilot-096d1c4.tar.gz"


@pytest.fixture(scope="session")
def simcopilot_import(tmp_path_factory) -> Path:
    """A runner home into which ``runner data fetch simcopilot --from`` imported upstream's archive."""
    from click.testing import CliRunner

    from runner.cli import main

    require(SIMCOPILOT_ARCHIVE.is_file(), f"upstream SimCoPilot archive ({SIMCOPILOT_ARCHIVE})")
    home = tmp_path_factory.mktemp("simcopilot-home")
    result = CliRunner().invoke(main, ["data", "fetch", "simcopilot", "--from", str(SIMCOPILOT_ARCHIVE)],
                                env={"RUNNER_HOME": str(home)})
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture
def simcopilot(simcopilot_import, isolated_home) -> Path:
    """This test's runner home, holding the imported upstream copy (shared, read-only by convention)."""
    return _linked_copy(isolated_home, simcopilot_import, "simcopilot")


@pytest.fixture(scope="session")
def simcopilot_2025_import(tmp_path_factory) -> Path:
    """A runner home holding the 2025 edition, imported from upstream's archive in shared/."""
    from runner.benchmarks.fetch import import_simcopilot

    require(SIMCOPILOT_2025_ARCHIVE.is_file(), f"upstream Sim-CoPilot 2025 archive ({SIMCOPILOT_2025_ARCHIVE})")
    home = tmp_path_factory.mktemp("simcopilot-2025-home")
    saved = os.environ.get("RUNNER_HOME")
    os.environ["RUNNER_HOME"] = str(home)
    try:
        result = import_simcopilot(SIMCOPILOT_2025_ARCHIVE, edition="2025")
    finally:
        if saved is None:
            os.environ.pop("RUNNER_HOME", None)
        else:
            os.environ["RUNNER_HOME"] = saved
    assert result.dest == home / "data" / "simcopilot-2025"
    return home


@pytest.fixture
def simcopilot_2025(simcopilot_2025_import, isolated_home) -> Path:
    """This test's runner home, holding the imported 2025 edition (shared, read-only by convention)."""
    return _linked_copy(isolated_home, simcopilot_2025_import, "simcopilot-2025")


def _linked_copy(home: Path, import_home: Path, folder: str) -> Path:
    """``home/data/<folder>``, a link to the copy imported once into ``import_home``."""
    data = home / "data"
    data.mkdir(exist_ok=True)
    (data / folder).symlink_to(import_home / "data" / folder)
    return data / folder
