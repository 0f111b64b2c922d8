"""Runtimes (what serves a cell). Add one by writing a module and listing it in ``_MODULES``.

Each runtime (llama.cpp, vLLM, ExLlamaV2 via TabbyAPI) turns a cell and its model files into a server launch.
A runtime may import prompts, infra and below; backends, the matrix and everything above read it."""

from __future__ import annotations

import importlib

from runner.errors import UserError
from runner.runtimes.base import ModelFiles, Runtime, ServerSpec

_REGISTRY: dict[str, type[Runtime]] = {}
_MODULES = ("llamacpp", "vllm", "exllama")


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(f"runner.runtimes.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"runner.runtimes.{module}":
                raise  # a broken import inside the module must not pass silently


def get_runtime(name: str) -> Runtime:
    """The runtime registered as ``name``, or a ``UserError`` listing the known ones."""
    _load_all()
    if name not in _REGISTRY:
        raise UserError(f"unknown runtime {name!r}; known runtimes: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def runtime_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


__all__ = ["ModelFiles", "Runtime", "ServerSpec", "get_runtime", "register_runtime", "runtime_names"]
