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
