"""Where the runner keeps its data: ``$RUNNER_HOME`` or the user's cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent


def runner_home() -> Path:
    """The data directory: ``$RUNNER_HOME``, else ``<user cache dir>/runner``."""
    env = os.environ.get("RUNNER_HOME")
    home = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("runner"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir() -> Path:
    """Heavy, reusable artefacts (built servers, converted models, runtime venvs).

    ``$RUNNER_CACHE`` if set, else the data directory; tests point ``RUNNER_HOME`` at a
    temporary folder but keep this cache so that nothing is rebuilt per test.
    """
    env = os.environ.get("RUNNER_CACHE")
    path = Path(env).expanduser() if env else runner_home()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _bundled(name: str) -> Path:
    # Installed wheels carry the top-level folder inside the package as ``_<name>``; an
    # editable checkout reads the top-level folder itself.
    inside = PACKAGE_DIR / f"_{name}"
    return inside if inside.is_dir() else PACKAGE_DIR.parent / name


def templates_dir() -> Path:
    """The Jinja2 templates (``templates/prompts`` and ``templates/report``)."""
    return _bundled("templates")


def matrices_dir() -> Path:
    """The shipped matrix files (``matrices/demo.toml``, ``matrices/paper.toml``)."""
    return _bundled("matrices")


def run_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run folder (one folder inside the runs folder), or ``None``."""
    if not name or name in (".", ".."):
        return "a run name must name a folder"
    if "/" in name or "\\" in name:
        return "a run name is one folder inside the runs folder, so it holds no '/' or '\\'"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a run name holds no control characters (newline, tab)"
    if len(name.encode()) > 255:
        return "a run name is at most 255 bytes"
    return None
