"""A matrix document's faults as a person reads them: one line per mistake with its key path, value and fix
("did you mean", "quote it"), and the document pruned of each faulty part so that the checks after
validation still run and every mistake is reported at once."""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

#: the most problems one error lists; a matrix that wrong is fixed a screen at a time
MAX_PROBLEMS = 30

Loc = tuple[str | int, ...]


def key_path(loc: Loc) -> str:
    """``("cells", 0, "runtime")`` as ``cells[0].runtime``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def capped(lines: list[str], where: str) -> str:
    """``lines`` one a line, the first ``MAX_PROBLEMS`` of them and a count of the rest."""
    if len(lines) <= MAX_PROBLEMS:
        return "\n".join(lines)
    more = len(lines) - MAX_PROBLEMS
    return "\n".join([*lines[:MAX_PROBLEMS], f"{where}: … and {more} more problem{'s' * (more > 1)}; "
                                                "fix these and run again"])


# -- where a key path points in the schema ------------------------------------------------------------


def _bare(annotation: typing.Any) -> typing.Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _model(annotation: typing.Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


@dataclass(frozen=True)
class _Step:
    """One part of a key path: a model's field (``required`` or not) or an item of a list or table."""

    kind: typing.Literal["field", "item", "other"]
    owner: type[BaseModel] | None = None  # field: the model holding it
    required: bool = False
    of_model: bool = False  # item: of a list or table of models (cells, variants, models, quantizations)


def _walk(root: type[BaseModel], loc: Loc) -> list[_Step]:
    steps: list[_Step] = []
    model, annotation = root, None
    for part in loc:
        if model is not None and isinstance(part, str) and part in model.model_fields:
            info = model.model_fields[part]
            steps.append(_Step("field", owner=model, required=info.is_required()))
            annotation = _bare(info.annotation)
            model = _model(annotation)
        elif typing.get_origin(annotation) in (list, dict, tuple):
            item = _bare(typing.get_args(annotation)[-1])
            steps.append(_Step("item", of_model=_model(item) is not None))
            annotation, model = item, _model(item)
        else:
            steps.append(_Step("other"))
            annotation = model = None
    return steps


def _owner(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model whose key ``loc`` names (an unknown key's would-be owner)."""
    model, annotation = root, None
    for part in loc[:-1]:
        if model is not None and isinstance(part, str) and part in model.model_fields:
            annotation = _bare(model.model_fields[part].annotation)
        elif typing.get_origin(annotation) in (list, dict, tuple):
            annotation = _bare(typing.get_args(annotation)[-1])
        else:
            return None
        model = _model(annotation)
    return model


# -- one line per mistake -------------------------------------------------------------------------------


def _unknown_key(root: type[BaseModel] | None, loc: Loc, value: typing.Any, techniques: typing.Collection[str]) -> str:
    owner = _owner(root, loc) if root is not None else None
    name = str(loc[-1])
    known = list(owner.model_fields) if owner else []
    what = "table" if isinstance(value, dict) else "array of tables" if _tables(value) else "key"
    if owner is not None and owner.__name__ in ("CellGroup", "Variant") and name in techniques:
        return (f"{name} is a technique, not a key of its own; write techniques = {{ {name} = "
                f'"{str(value).lower() if isinstance(value, bool) else value}" }}')
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:  # in backticks: a key, where did_you_mean's quotes name a value
        return f"unknown {what}; did you mean `{close[0]}`? rename it"
    return f"unknown {what}; remove it, or use one of: {', '.join(known)}" if known else f"unknown {what}; remove it"


def _tables(value: typing.Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def did_you_mean(value: str, known: typing.Iterable[str]) -> str:
    """`` did you mean 'x'?`` for the known name nearest ``value``, or nothing when none is near."""
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    return f" did you mean {close[0]!r}?" if close else ""


def _line(where: str, root: type[BaseModel] | None, error: dict, loc: Loc, techniques: typing.Collection[str]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    kind, path = error["type"], key_path(loc)
    # the fix as it is written: `key = value`, or the bare value for an item of a list
    key = f"{loc[-1]} = " if loc and not isinstance(loc[-1], int) else ""
    if kind == "missing":
        return f"{where}: {path}: required key is missing"
    if kind == "extra_forbidden":
        shown = "" if isinstance(value, dict) or _tables(value) else f" = {value!r}"
        return f"{where}: {path}{shown}: {_unknown_key(root, loc, value, techniques)}"
    if kind == "string_type" and isinstance(value, bool):
        message = (f"text is needed, not true/false; write the word the option takes in quotes, "
                   f'e.g. {key}"on" / "off"')
    elif kind == "string_type" and isinstance(value, (int, float)):
        message = f'text is needed, not a number; quote it: {key}"{value}"'
    elif kind in ("int_type", "float_type") and isinstance(value, str) and _number(value) is not None:
        message = f"a number is needed, not text; drop the quotes: {key}{value}"
    elif kind == "bool_type" and isinstance(value, str) and value.lower() in ("true", "false"):
        message = f"true or false is needed, not text; drop the quotes: {key}{value.lower()}"
    if isinstance(value, dict):
        return f"{where}: {path}: {message}"
    return f"{where}: {path} = {value!r}: {message}"


def error_lines(where: str, exc: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One line per error of ``exc``, for the file ``where`` (``root``, the model validated, adds "did you mean")."""
    return [_line(where, root, error, _as_written(tuple(error["loc"]), {}), ()) for error in exc.errors()]


def _number(text: str) -> float | None:
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return None


def toml_hint(text: str, exc: Exception) -> str:
    """What to do about a TOML syntax error: an unquoted word as a value is quoted."""
    found = re.search(r"at line (\d+), column (\d+)", str(exc))
    if not found:
        return ""
    lines = text.splitlines()
    row, column = int(found.group(1)) - 1, int(found.group(2)) - 1
    if row >= len(lines):
        return ""
    before, after = lines[row][:column], lines[row][column:]
    key = re.search(r"([A-Za-z0-9_.\"'-]+)\s*=\s*$", before)
    word = re.match(r"[A-Za-z_][A-Za-z0-9_.:/+-]*", after)
    if key and word and word.group(0) not in ("true", "false", "inf", "nan"):
        return f'; text values are quoted in TOML: write {key.group(1)} = "{word.group(0)}"'
    return ""


# -- the document pruned of its faults --------------------------------------------------------------------


@dataclass
class Pruned:
    """What was taken out of a document to validate the rest: each part's key path in the file as written."""

    removed: set[Loc] = field(default_factory=set)
    indices: dict[Loc, list[int]] = field(default_factory=dict)  # a list's kept items: their written positions

    def written(self, at: Loc, index: int) -> int:
        """The position as written of item ``index`` of the validated list at ``at``."""
        return self.indices[at][index] if at in self.indices else index

    def dropped(self, *loc: str | int) -> bool:
        """Whether ``loc`` (a model, a quantization, a cell group) was taken out for a fault of its own."""
        return tuple(loc) in self.removed

    def touched(self, *loc: str | int) -> bool:
        """Whether some part of ``loc`` was taken out (its cells may differ from the ones written)."""
        return any(gone[:len(loc)] == tuple(loc) for gone in self.removed)


def _materialize(document: typing.Any, removed: set[Loc], at: Loc, indices: dict[Loc, list[int]]) -> typing.Any:
    # the document without the removed parts; ``indices`` maps each list's new positions to the written ones
    if isinstance(document, dict):
        return {k: _materialize(v, removed, (*at, k), indices) for k, v in document.items() if (*at, k) not in removed}
    if isinstance(document, list):
        kept = [i for i in range(len(document)) if (*at, i) not in removed]
        indices[at] = kept
        return [_materialize(document[i], removed, (*at, i), indices) for i in kept]
    return document


def _as_written(loc: Loc, indices: dict[Loc, list[int]]) -> Loc:
    written: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        at = tuple(written)
        written.append(indices[at][part] if isinstance(part, int) and at in indices else part)
    return tuple(written)


def _to_remove(root: type[BaseModel], loc: Loc, kind: str) -> Loc | None:
    """The smallest part of the document whose removal takes ``loc``'s fault with it (None: only the whole)."""
    if kind == "extra_forbidden":
        return loc
    steps = _walk(root, loc)
    for end in range(len(loc), 0, -1):
        step = steps[end - 1]
        if (step.kind == "field" and not step.required) or (step.kind == "item" and step.of_model):
            return loc[:end]
    return None


def validate(root: type[BaseModel], document: dict, where: str, techniques: typing.Collection[str],
             removed: set[Loc] | None = None) -> tuple[BaseModel | None, list[str], Pruned]:
    """``document`` validated as ``root``: the model (None when no part of it could be), one line per
    mistake, and what was taken out to validate the rest. Parts already in ``removed`` are left out."""
    removed = set(removed or ())
    lines: list[str] = []
    for _ in range(8):  # each pass takes out the parts at fault; an enclosing model's checks run the next
        indices: dict[Loc, list[int]] = {}
        try:
            return root.model_validate(_materialize(document, removed, (), indices)), lines, Pruned(removed, indices)
        except ValidationError as exc:
            errors = exc.errors()
        before, whole = set(removed), False
        for error in errors:
            loc = _as_written(tuple(error["loc"]), indices)
            # a fault of a model whose part was taken out is that removal's consequence, not the user's
            if not any(gone[:len(loc)] == loc for gone in before):
                lines.append(_line(where, root, error, loc, techniques))
            part = _to_remove(root, loc, error["type"])
            whole = whole or part is None
            if part is not None:
                removed.add(part)
        if whole or removed == before:
            break
    return None, lines, Pruned(removed)

