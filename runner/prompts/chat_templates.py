"""Chat templates the runner ships (``templates/chat/<name>.jinja``), for models whose sources carry none.

A model names one in its matrix entry (``chat_template = "mistral-v3"``); every runtime is then
given that same file for chat requests: vLLM ``--chat-template``, llama.cpp ``--jinja
--chat-template-file``, TabbyAPI ``model.prompt_template`` (an absolute path, which its
``find_prompt_template`` opens as given). The file is carried in ``ServerSpec.files``, so that a
container backend mounts it where the server reads it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from runner.errors import UserError
from runner.paths import cache_dir, templates_dir

SUFFIX = ".jinja"
#: templates written as Mistral documents its formats ("<s>[INST] user message[/INST] answer</s>"): a
#: space after a special token is SentencePiece's word boundary of the text that follows, spelled out,
#: where mistral-common adds it by encoding each text on its own. A server whose tokenizer adds that
#: boundary itself after every special token (llama.cpp's add_space_prefix) must be told not to.
SPELLED_BOUNDARIES = frozenset({"mistral-v3"})


class ChatTemplate(BaseModel):
    """One shipped chat template: its name and its Jinja source."""

    model_config = ConfigDict(frozen=True)

    name: str
    text: str

    @property
    def spells_word_boundaries(self) -> bool:
        """Whether its text spells each word boundary after a special token (``SPELLED_BOUNDARIES``)."""
        return self.name in SPELLED_BOUNDARIES

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def server_file(self, folder: Path | None = None) -> Path:
        """Where a server's copy is written: one per port (``{port}`` is filled in by the backend), so
        that servers starting at once never write a file another one is reading."""
        return (folder or cache_dir() / "chat-templates") / f"{self.name}-{{port}}{SUFFIX}"


def chat_templates_dir() -> Path:
    """The shipped chat templates, ``templates/chat``."""
    return templates_dir() / "chat"


def known() -> list[str]:
    """The names of the shipped chat templates."""
    return sorted(p.name[: -len(SUFFIX)] for p in chat_templates_dir().glob(f"*{SUFFIX}"))


def load(name: str) -> ChatTemplate:
    """The shipped template ``name``, or a ``UserError`` naming the known ones."""
    path = chat_templates_dir() / f"{name}{SUFFIX}"
    if "/" in name or not path.is_file():
        raise UserError(f"no chat template {name!r} in {chat_templates_dir()}; known: {', '.join(known()) or 'none'}")
    return ChatTemplate(name=name, text=path.read_text(encoding="utf-8"))
