"""MkDocs hook: the matrix reference, generated from the matrix file's pydantic models at build time.

A page holding the marker ``<!-- matrix-reference -->`` gets one table per TOML table of a matrix
file: every key with its type, default and meaning (the field's description), so that the page
cannot drift from the code. A key without a description fails the build.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from annotated_types import Ge, Gt, MinLen
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# The one place the docs import the matrix models (the lead moves it with the package).
from runner.matrix import MatrixFile
from runner.runtimes import get_runtime, runtime_names

MARKER = "<!-- matrix-reference -->"
SWITCHES_MARKER = "<!-- technique-switches -->"


@dataclass
class Table:
    """One TOML table of a matrix file: its header as written, the model behind it, a sentence about it."""

    header: str
    model: type[BaseModel]
    prefix: str


def tables(model: type[BaseModel] = MatrixFile, header: str = "top level", prefix: str = "") -> list[Table]:
    """Every TOML table a matrix file may hold, top level first, nested ones after their parent."""
    found = [Table(header, model, prefix)]
    for name, field in model.model_fields.items():
        nested, shape = _nested(field.annotation)
        if nested is None:
            continue
        path = f"{prefix}{name}"
        if shape == "dict":
            # models -> <model>, quantizations -> <quantization>: the key a matrix author chooses
            key = f"<{name.removesuffix('s')}>"
            child_header, child_prefix = f"[{path}.{key}]", f"{path}.{key}."
        elif shape == "list":
            child_header, child_prefix = f"[[{path}]]", f"{path}[]."
        else:
            child_header, child_prefix = f"[{path}]", f"{path}."
        found += tables(nested, child_header, child_prefix)
    return found


def _nested(annotation) -> tuple[type[BaseModel] | None, str]:
    """The model a field holds, and how: ``one``, ``dict`` (keyed tables) or ``list`` (an array of tables)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, "one"
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            model, shape = _nested(arg)
            if model is not None:
                return model, shape
    if origin is dict and _is_model(args[1]):
        return args[1], "dict"
    if origin is list and _is_model(args[0]):
        return args[0], "list"
    return None, ""


def _is_model(value) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def type_text(annotation) -> str:
    """A field's type as a matrix author reads it: ``integer``, ``list of string``, ``"a" or "b"``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # e.g. Strict(False) on an enum: the type is what a matrix writes
        return type_text(args[0])
    if origin is typing.Literal:
        return " or ".join(f'`"{a}"`' for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in args if a is not type(None))
    if origin is list:
        return "array of tables" if _is_model(args[0]) else f"list of {type_text(args[0])}"
    if origin is tuple:
        return f"list of {type_text(args[0])}"
    if origin is dict:
        return "tables, one per key" if _is_model(args[1]) else f"table of {type_text(args[1])}"
    if _is_model(annotation):
        return "table"
    names = {int: "integer", float: "number", str: "string", bool: "boolean", Path: "path"}
    if annotation in names:
        return names[annotation]
    # Language and Mode are str enums: their values are what a matrix writes
    if isinstance(annotation, type) and hasattr(annotation, "__members__"):
        return " or ".join(f'`"{m.value}"`' for m in annotation)
    return str(annotation)


def _bounds(metadata: list) -> str:
    parts = []
    for item in metadata:
        if isinstance(item, Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, MinLen) and item.min_length:
            parts.append(f"at least {item.min_length}")
    return ", ".join(parts)


def default_text(field) -> str:
    """A field's default as TOML would write it, or *required*."""
    if field.is_required():
        return "*required*"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "all defaults"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and math.isinf(value):
        return "`inf`"  # TOML's spelling; JSON's would be Infinity
    if isinstance(value, (list, tuple, dict)) and not value:
        return "`[]`" if not isinstance(value, dict) else "`{}`"
    return f"`{json.dumps(value, default=str)}`"


def table_markdown(table: Table) -> str:
    """One table of the reference: a heading, the model's summary, and a row per key."""
    doc = (table.model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    title = f"`{table.header}`" if table.prefix else "Top level"
    lines = [f"### {title}", "", doc, "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in table.model.model_fields.items():
        if not field.description:
            raise ValueError(f"{table.model.__name__}.{name} has no description: add Field(description=...)")
        kind = type_text(field.annotation)
        bounds = _bounds(field.metadata)
        if bounds:
            kind += f" ({bounds})"
        meaning = field.description.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{table.prefix}{name}` | {kind} | "
                     f"{default_text(field)} | {meaning} |")
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The whole generated reference: every table of a matrix file."""
    return "\n".join(table_markdown(t) for t in tables())


def switches_markdown() -> str:
    """Per runtime: the quantizations it serves and the technique switches it offers, with their values."""
    lines = ["| runtime | quantizations | switch | values |", "| --- | --- | --- | --- |"]
    for name in runtime_names():
        runtime = get_runtime(name)
        quantizations = ", ".join(f"`{q}`" for q in runtime.quantizations) or "any its format holds"
        for index, (switch, values) in enumerate(runtime.techniques.items()):
            shown = "a positive integer" if values == ("<n>",) else ", ".join(f"`{v}`" for v in values)
            first = (f"`{name}`", quantizations) if index == 0 else ("", "")
            lines.append(f"| {first[0]} | {first[1]} | `{switch}` | {shown} |")
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    """Put the generated reference and switch table where the page holds their markers."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, reference_markdown())
    if SWITCHES_MARKER in markdown:
        markdown = markdown.replace(SWITCHES_MARKER, switches_markdown())
    return markdown
