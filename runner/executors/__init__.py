"""Executors (on which machine each cell runs). Add one by writing a module and listing it in ``_MODULES``.

``inprocess`` runs the cells one after another in this process; ``ray`` spreads them over a Ray
cluster. A Kubernetes executor would be one more module here, registered with ``@register_executor``.

Executors sit between the run (``runner.running.run``, which picks one) and the cell (``runner.running.cell``,
which they run): they see the run only as ``base.RunContext`` and may import planning and everything below.
"""

from __future__ import annotations

import importlib

from runner.errors import UserError
from runner.executors.base import Executor

_REGISTRY: dict[str, type[Executor]] = {}
_MODULES = ("inprocess", "ray_cluster")


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(f"runner.executors.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"runner.executors.{module}":
                raise  # a broken import inside the module must not pass silently


def executor_names() -> list[str]:
    """The registered executors' names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_executor(name: str, **options) -> Executor:
    """A new executor registered as ``name``, or a ``UserError`` listing the known ones."""
    _load_all()
    if name not in _REGISTRY:
        raise UserError(f"unknown executor {name!r}; known executors: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**options)


__all__ = ["Executor", "executor_names", "get_executor", "register_executor"]
