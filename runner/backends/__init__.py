"""Backends (where a server runs). Add one by writing a module and listing it in ``_MODULES``.

``local`` runs a runtime's server as a process of this host, ``docker`` in a container. A backend may import
runtimes, infra and below; the matrix checks backend names against this registry, so it sits above."""

from __future__ import annotations

import importlib

from runner.backends.base import Backend, RunningServer
from runner.errors import UserError

_REGISTRY: dict[str, type[Backend]] = {}
_MODULES = ("local", "docker")


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(f"runner.backends.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"runner.backends.{module}":
                raise  # a broken import inside the module must not pass silently


def backend_names() -> list[str]:
    """The registered backends' names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_backend(name: str, **options) -> Backend:
    """A new backend registered as ``name``, or a ``UserError`` listing the known ones."""
    _load_all()
    if name not in _REGISTRY:
        raise UserError(f"unknown backend {name!r}; known backends: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**options)


__all__ = ["Backend", "RunningServer", "backend_names", "get_backend", "register_backend"]
