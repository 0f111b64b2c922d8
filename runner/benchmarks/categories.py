"""SimCoPilot's task categories, computed as upstream's analysis computes them.

Upstream labels a task from its verified dependency records
(``Analysis_Results/Dependency_Records/<Lang>/Verified/``): its dependency analysers
(``dependency_analyzer/analyzer.py``, ``Java_analyzer.py``, ``read_from_results=True``) keep the
records whose usage line falls in the task's span, recompute each distance class with the
thresholds of its scripts (10 and 30 lines), and print one sentence per record; the regular
expressions of ``helper_functions/dependency_result_analysis.py`` count those sentences; the
notebook ``code_gen_result_display.ipynb`` maps reason labels onto fewer ones; and
``CodeAnalysis`` (``code_gen_result_analysis.py``) says a label applies when it is among the
counted keys, a distance class only when it is the task's longest (``use_max_range``). The
quirks are kept on purpose (a record with stray spaces or an unknown label matches no
expression and counts for nothing; Java records of comprehension scopes are worded so that no
expression matches them; Python records used on their own definition line are skipped). The
paper reports categories per language x mode; so does the report. A test checks the labels of
every task against upstream's own analysers.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.records import Language

SHORT_RANGE, MEDIUM_RANGE = 10, 30  # upstream's --short_range / --medium_range defaults
RANGES = ("Short-Range", "Medium-Range", "Long-Range")
#: upstream's reason expression: only these spellings count
REASONS_MATCHED = ("If Condition", "If Body", "Elif Condition", "Elif Body", "Else Reasoning",
                   "Pattern-Based Completion", "Define Stop Criteria", "Loop Body", "Generator_Expressions",
                   "Super_Call", "List_Comprehension", "Lambda_Expressions", "Stream_Operations")
#: ``CodeAnalysis``'s reason labels and horizon labels (its defaults)
REASON_LABELS = ("List_Comprehension", "Lambda_Expressions", "Generator_Expressions", "If Condition", "If Body",
                 "Elif Condition", "Elif Body", "Else Reasoning", "Stream_Operations", "Loop Body",
                 "Define Stop Criteria", "Super_Call")
HORIZON_LABELS = ("Short-Range", "Medium-Range", "Long-Range", "Variable", "Global_Variable", "Function", "Class",
                  "Library", "Interface")
#: the notebook's ``label_mapping`` (code_gen_result_display.ipynb), which lives only there
LABEL_MAPPING = {
    "If Condition": "If Condition",
    "Elif Condition": "If Condition",
    "If Body": "If Body",
    "Elif Body": "If Body",
    "Else Reasoning": "If Body",
    "Loop Body": "Loop Body",
    "Define Stop Criteria": "Loop Body",
    "List Comprehension": "List Comprehension",
    "Lambda Expressions": "List Comprehension",
    "Generator Expressions": "List Comprehension",
}
#: the notebook drops the Library column for Java
DROPPED = {Language.java: ("Library",), Language.python: ()}
# Which words a record's sentence yields: (definition type, comprehension type or None).
_PYTHON_SCOPES = {"function": ("Function", None), "class": ("Class", None), "library": ("Library", None),
                  "list_comp": ("Variable", "List_Comprehension"), "generator_exp": ("Variable", "Generator_Expressions"),
                  "lambda": ("Variable", "Lambda_Expressions"), "loop": ("Variable", "Loop"),
                  "global": ("Global_Variable", None), "local": ("Variable", None)}
# Java's comprehension sentences read "... is part of a Loop is defined at line ...": no match.
_JAVA_SCOPES = {"methods": ("Function", None), "classes": ("Class", None), "libraries": ("Library", None),
                "globals": ("Global_Variable", None), "locals": ("Variable", None), "interfaces": ("Interface", None)}


@dataclass(frozen=True)
class Records:
    """One program's verified records: (reason, usage line) and (usage line, definition line, scope)."""

    reasons: tuple[tuple[str, int], ...]
    dependencies: tuple[tuple[int, int, str], ...]


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, record) of a CSV file; an empty file (upstream: one byte or less) holds none."""
    if not path.is_file() or path.stat().st_size <= 1:
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [(reader.line_num, row) for row in reader if any((v or "").strip() for v in row.values())]


def _int(path: Path, line: int, row: dict[str, str], field: str) -> int:
    try:
        return int(float(row[field]))
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: line {line}: {field} {row.get(field)!r} is not a line number; the record file "
                        "is damaged, re-import it: runner data fetch simcopilot") from None


def read_records(folder: Path, program: str) -> Records | None:
    """The verified records of ``program`` in ``folder``, or ``None`` if it has none."""
    reason_path = folder / f"{program}_reason_verified.csv"
    dependency_path = folder / f"{program}_dependency_verified.csv"
    if not reason_path.is_file() and not dependency_path.is_file():
        return None
    reasons = tuple((row.get("reason_category") or "", _int(reason_path, n, row, "usage_line"))
                    for n, row in _rows(reason_path))
    dependencies = tuple((_int(dependency_path, n, row, "usage_line"), _int(dependency_path, n, row, "def_line"),
                          row.get("scope_type") or "") for n, row in _rows(dependency_path))
    return Records(reasons, dependencies)


def _range(use: int, definition: int) -> str:
    distance = abs(use - (definition if definition else -1))
    return RANGES[0] if distance <= SHORT_RANGE else RANGES[1] if distance <= MEDIUM_RANGE else RANGES[2]


def frequencies(records: Records, language: Language, start: int, end: int) -> tuple[dict[str, int], dict[str, int]]:
    """Upstream's two counts for a span: reason keys and horizon keys (before the label mapping)."""
    reasons: dict[str, int] = {}
    for reason, line in records.reasons:
        if start <= line <= end and reason in REASONS_MATCHED:
            reasons[reason] = reasons.get(reason, 0) + 1
    horizons: dict[str, int] = {}
    scopes = _PYTHON_SCOPES if language is Language.python else _JAVA_SCOPES
    for use, definition, scope in records.dependencies:
        if not start <= use <= end or scope not in scopes:
            continue
        if language is Language.python and use == definition and scope not in ("list_comp", "generator_exp", "lambda"):
            continue
        kind, comprehension = scopes[scope]
        key = f"{kind} {comprehension} {_range(use, definition)}" if comprehension else f"{kind} {_range(use, definition)}"
        horizons[key] = horizons.get(key, 0) + 1
    return reasons, horizons


def labels(records: Records | None, language: Language, start: int, end: int) -> tuple[str, ...]:
    """The labels upstream's ``CodeAnalysis`` counts a span under (reasons, then horizons), mapped as the notebook maps them."""
    if records is None:
        return ()
    reasons, horizons = frequencies(records, language, start, end)
    mapped = {LABEL_MAPPING.get(k, k) for k in reasons}
    keys = [" ".join([LABEL_MAPPING.get(k.split(" ")[0], k.split(" ")[0]), *k.split(" ")[1:]]) for k in horizons]
    longest = max((word for key in keys for word in key.split() if word in RANGES), key=RANGES.index, default=None)
    found = [label for label in REASON_LABELS if label in mapped]
    for label in HORIZON_LABELS:
        present = label == longest if label in RANGES else any(label in key.split() for key in keys)
        if present and label not in DROPPED[language]:
            found.append(label)
    return tuple(found)
