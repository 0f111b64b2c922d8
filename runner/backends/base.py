"""Where a server runs: a local subprocess or a container. Any runtime on any backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Iterator

from pydantic import BaseModel

from runner.runtimes.base import ServerSpec


class RunningServer(BaseModel):
    """A started, healthy server."""

    base_url: str  # e.g. http://127.0.0.1:39211
    load_seconds: float  # from launch until healthy: the cell's load time
    ident: str  # pid or container id, for logs and cleanup
    image_digest: str | None = None


class Backend(ABC):
    """Starts a ``ServerSpec``, waits until healthy, always stops it."""

    name: ClassVar[str]

    @abstractmethod
    def start(self, spec: ServerSpec, log_path: Path, *, health_timeout: float) -> RunningServer:
        """Launch, stream the log to ``log_path``, return once healthy or raise."""

    @abstractmethod
    def stop(self, server: RunningServer) -> None:
        """Stop and remove the server; idempotent; never raises for an already-dead server."""

    def alive(self, server: RunningServer) -> bool:
        """Whether the server process or container is still running."""
        return True

    @contextmanager
    def serve(self, spec: ServerSpec, log_path: Path, *, health_timeout: float = 600) -> Iterator[RunningServer]:
        """Start, yield, and stop on success, error or interrupt."""
        server = self.start(spec, log_path, health_timeout=health_timeout)
        try:
            yield server
        finally:
            self.stop(server)
