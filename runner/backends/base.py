"""Where a server runs: a local subprocess or a container. Any runtime on any backend.

A launch has three parts, each decided by one party: the runtime says what to run (``ServerSpec``),
the backend decides the port, the devices and the health wait (``Backend.start``), and the executor
(``runner.executors``) decides on which machine, and with which GPU ids (``gpus``).
"""

from __future__ import annotations

import socket
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ClassVar, Generic, Iterator, TypeVar

from pydantic import BaseModel

from runner.errors import UserError
from runner.runtimes.base import ServerSpec


class ServerStartError(UserError):
    """A server died before it became healthy, or missed its deadline; the message ends with its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` non-empty lines of a log file, joined with `` | ``."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(empty log)"


class RunningServer(BaseModel):
    """A started, healthy server."""

    base_url: str  # e.g. http://127.0.0.1:39211
    load_seconds: float  # from launch until healthy: the cell's load time
    ident: str  # pid or container id, for logs and cleanup
    image_digest: str | None = None
    log_path: Path | None = None  # where its output goes: the log of the cell it was started for


T = TypeVar("T")


class LiveServers(Generic[T]):
    """What a backend started and has not stopped yet (processes, containers), thread-safe, so
    that a signal or interpreter exit can stop every one of them."""

    def __init__(self) -> None:
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()

    def add(self, key: str, item: T) -> None:
        with self._lock:
            self._items[key] = item

    def pop(self, key: str) -> T | None:
        with self._lock:
            return self._items.pop(key, None)

    def get(self, key: str) -> T | None:
        with self._lock:
            return self._items.get(key)

    def stop_all(self, stop_one: Callable[[T], None]) -> int:
        """Take every item out and stop it with ``stop_one``; returns how many."""
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for item in items:
            stop_one(item)
        return len(items)


class Backend(ABC):
    """Starts a ``ServerSpec`` on a port it picks, with the GPUs it is given, waits until healthy, always stops it."""

    name: ClassVar[str]

    @abstractmethod
    def start(self, spec: ServerSpec, log_path: Path, *, health_timeout: float, gpus: list[int] | None = None,
              run: str | None = None, cell: str | None = None) -> RunningServer:
        """Launch, stream the log to ``log_path``, return once healthy or raise.

        ``gpus``: the GPU ids the server may use (None: what the backend offers by default, [] none);
        ``run`` and ``cell`` name what the server is for (container labels, logs)."""

    @abstractmethod
    def stop(self, server: RunningServer) -> None:
        """Stop and remove the server; idempotent; never raises for an already-dead server."""

    def alive(self, server: RunningServer) -> bool:
        """Whether the server process or container is still running."""
        return True

    @contextmanager
    def serve(self, spec: ServerSpec, log_path: Path, *, health_timeout: float = 600, **launch) -> Iterator[RunningServer]:
        """Start (``launch``: ``start``'s keywords), yield, and stop on success, error or interrupt."""
        server = self.start(spec, log_path, health_timeout=health_timeout, **launch)
        try:
            yield server
        finally:
            self.stop(server)
