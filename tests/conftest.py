"""Shared fixtures. Every test gets its own RUNNER_HOME; heavy caches are shared."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The real cache (built llama-server, converted models) survives across tests and sessions.
SHARED_CACHE = Path(os.environ.get("RUNNER_CACHE") or os.environ.get("RUNNER_HOME")
                    or platformdirs.user_cache_dir("runner"))


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
