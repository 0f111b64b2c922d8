"""MkDocs hook: keep the examples of the Click help texts as code in the generated CLI reference.

Each command's help ends with a ``\\b`` block, ``Example:`` and indented command lines, which Click
prints unwrapped. mkdocs-click drops the ``\\b`` and hands the rest to Markdown, which would join
the lines into one paragraph; this preprocessor, run just after mkdocs-click's, fences them.
"""

from __future__ import annotations

from markdown import Markdown
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor

HEADS = ("Example:", "Examples:")


class ClickExamples(Preprocessor):
    """Turn an ``Example:`` line and the indented lines under it into a fenced text block."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        inside = False
        for line in lines:
            if line.strip() in HEADS and not line.startswith(" "):
                out += [f"**{line.strip()}**", "", "```text"]
                inside = True
            elif inside and not line.strip():
                out += ["```", ""]
                inside = False
            else:
                out.append(line.removeprefix("  ") if inside else line)
        if inside:
            out.append("```")
        return out


class ClickExamplesExtension(Extension):
    """Register ``ClickExamples`` after mkdocs-click's preprocessor (priority 141), before fences are read."""

    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 - Markdown's API
        md.preprocessors.register(ClickExamples(md), "click_examples", 140)


def on_config(config):
    """Add the extension to the site's Markdown."""
    config.markdown_extensions.append(ClickExamplesExtension())
    return config
