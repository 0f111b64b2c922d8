"""Errors a user can fix. The CLI prints their message as one line and exits 2."""

#: the longest error text any output (report, CSV, JSON, terminal) shows; the full text stays in
#: samples.jsonl / cell.json
ERROR_LIMIT = 1000


class UserError(Exception):
    """A mistake in the user's input or environment: message names the file, field, value and fix."""


def cap(text: str | None, limit: int = ERROR_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    text = text or ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … [{len(text) - limit:,} more characters]"


class EnvironmentFailure(Exception):
    """The machine, not the answer, stopped a program from being judged (the sandbox could not
    execute the interpreter, a container could not start). The task is ``unscoreable``, never failed."""
