"""What every runtime provides: turning a cell into a server launch, and knowing its API."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from runner.records import Cell


class ModelFiles(BaseModel):
    """The prepared files a cell serves: a GGUF file, a Hugging Face folder or an EXL2 folder."""

    path: Path  # file (GGUF) or folder (HF / EXL2)
    served_name: str  # the name the server answers to in the OpenAI ``model`` field
    context_length: int = 4096
    draft_path: Path | None = None  # draft model for draft-model speculative decoding
    tokenizer_path: Path | None = None


class ServerSpec(BaseModel):
    """How to launch one cell's server; a backend decides where (subprocess or container)."""

    runtime: str
    argv: list[str]  # the server command, with ``{port}`` already filled in
    env: dict[str, str] = Field(default_factory=dict)
    port: int  # the port the server listens on (inside the container for Docker)
    health_path: str = "/health"
    mounts: list[Path] = Field(default_factory=list)  # host paths the server reads (read-only)
    image_service: str | None = None  # compose.yaml service whose image runs this runtime
    gpus: list[int] | None = None  # None: all GPUs the backend offers; [] none


class Runtime(ABC):
    """One inference server. Subclasses register with ``@register_runtime`` in ``runner.runtimes``."""

    name: ClassVar[str]
    #: technique switch -> allowed values; anything else is refused at plan time
    techniques: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: quantization formats this runtime can serve
    quantizations: ClassVar[tuple[str, ...]] = ()

    def validate(self, cell: Cell) -> None:
        """Raise ``UserError`` for a quantization or technique switch this runtime does not offer."""
        from runner.errors import UserError

        if self.quantizations and cell.quantization not in self.quantizations:
            raise UserError(
                f"cell {cell.id}: runtime {self.name} does not serve quantization "
                f"{cell.quantization!r}; use one of {', '.join(self.quantizations)}"
            )
        for key, value in cell.techniques.items():
            allowed = self.techniques.get(key)
            if allowed is None:
                raise UserError(
                    f"cell {cell.id}: runtime {self.name} has no technique {key!r}; "
                    f"it offers {', '.join(sorted(self.techniques)) or 'none'}"
                )
            if value not in allowed:
                raise UserError(
                    f"cell {cell.id}: technique {key}={value!r} is not offered by {self.name}; "
                    f"use one of {', '.join(allowed)}"
                )

    @abstractmethod
    def server_spec(self, cell: Cell, model: ModelFiles, port: int, *, threads: int | None = None) -> ServerSpec:
        """The launch of ``cell``'s server on ``port`` (validate first)."""
