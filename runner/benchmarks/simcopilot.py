"""Reader for a directory in SimCoPilot's upstream layout (the real set and the starter set).

The layout::

    example_code/tasks_path.json                       {"Python": {name: "./example_code/.../stem"}, "Java": {...}}
    example_code/Python/Python_tasks_checkpoints.json  programs with their infill/completion spans
    example_code/Java/Java_tasks_checkpoints.json
    <stem>.py | <stem>.java                            the program; its folder holds data files, jars
    <stem>.json                                        Python: test_caseN / expected_outputN
    Analysis_Results/Dependency_Records/<Lang>/Verified/<name>_{reason,dependency}_verified.csv

A broken top-level file stops the load; a broken or incomplete program only makes its own
tasks unavailable.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from runner.benchmarks import categories
from runner.benchmarks.benchmark import Benchmark
from runner.benchmarks.manifest import Manifest
from runner.errors import UserError
from runner.records import Language, Mode, Program, Task, TestCase

TASKS_PATH = "example_code/tasks_path.json"
LANG_FOLDER = {Language.python: "Python", Language.java: "Java"}
EXTENSION = {Language.python: ".py", Language.java: ".java"}
SPAN_FIELDS = {Mode.infill: "checkpoint_LN_infilling", Mode.completion: "checkpoint_LN_Completion"}
OUTPUT_CHECKS = ("final_output", "all_output")
_TEST_KEY = re.compile(r"test_case(\d+)")


def checkpoints_file(language: Language) -> str:
    """Repository path of a language's checkpoint file."""
    folder = LANG_FOLDER[language]
    return f"example_code/{folder}/{folder}_tasks_checkpoints.json"


def categories_folder(language: Language) -> str:
    """Repository path of a language's verified dependency records."""
    return f"Analysis_Results/Dependency_Records/{LANG_FOLDER[language]}/Verified"


class _Unavailable(Exception):
    """A program-level problem: its tasks load, marked unavailable with this reason."""


def load_layout(
    root: Path,
    name: str,
    manifest: Manifest | None = None,
    categories_root: Path | None = None,
) -> Benchmark:
    """Read the benchmark in ``root``; ``manifest`` names files each program's folder must hold.

    Category records are read from ``categories_root`` (default: ``root``)."""
    root = Path(root)
    if not (root / "example_code").is_dir():
        raise UserError(f"{root}: no example_code/ folder; this is not a SimCoPilot-layout directory")
    stems = _read_tasks_path(root, name)
    programs: dict[str, Program] = {}
    tasks: list[Task] = []
    notes: list[str] = []
    for language in Language:
        entries = _read_checkpoints(root, language, name)
        for entry in entries:
            program_name = entry["Task_Name"]
            if program_name in programs:
                raise UserError(
                    f"{root / checkpoints_file(language)}: Task_Name {program_name!r} appears twice "
                    "(program names must be unique across Python and Java)"
                )
            program, lines = _load_program(root, language, entry, stems.get(language, {}), manifest)
            programs[program_name] = program
            records = _records(Path(categories_root or root), language, program_name, notes)
            for mode in Mode:
                tasks.extend(_tasks(name, language, mode, program, entry[SPAN_FIELDS[mode]], lines, records))
    return Benchmark(
        name=name,
        root=root,
        programs=programs,
        tasks=tasks,
        junit_jar=_junit_jar(root),
        notes=notes,
    )


# --- top-level files: a problem here stops the load --------------------------------------------


_MISSING_HINT = {
    "simcopilot": "re-import it: runner data fetch simcopilot [--from PATH]",
    "starter": "the installed runner package is incomplete; reinstall it",
}


def _read_json(path: Path, benchmark: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = _MISSING_HINT.get(benchmark, "SimCoPilot's upstream layout needs it")
        raise UserError(f"{path}: file is missing; {hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the file ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _read_tasks_path(root: Path, benchmark: str) -> dict[Language, dict[str, str]]:
    path = root / TASKS_PATH
    data = _read_json(path, benchmark)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object {{\"Python\": {{...}}, \"Java\": {{...}}}}, "
                        f"found {type(data).__name__}")
    stems: dict[Language, dict[str, str]] = {}
    for language in Language:
        folder = LANG_FOLDER[language]
        section = data.get(folder, {})
        if not isinstance(section, dict):
            raise UserError(f"{path}: {folder!r} must map each Task_Name to a path, found {type(section).__name__}")
        for key, value in section.items():
            rel = PurePosixPath(value) if isinstance(value, str) else None
            if rel is None or rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise UserError(f"{path}: {folder}.{key} = {value!r} is not a relative path inside the layout")
        stems[language] = {k: str(PurePosixPath(v)) for k, v in section.items()}
    return stems


def _read_checkpoints(root: Path, language: Language, benchmark: str) -> list[dict[str, Any]]:
    path = root / checkpoints_file(language)
    data = _read_json(path, benchmark)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of programs, found {type(data).__name__}")
    for index, entry in enumerate(data):
        where = f"{path}: program #{index + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Task_Name"), str) or not entry["Task_Name"]:
            raise UserError(f"{where} has no Task_Name string")
        where = f"{path}: {entry['Task_Name']}"
        if entry.get("output_to_check", "final_output") not in OUTPUT_CHECKS:
            raise UserError(f"{where}: output_to_check is {entry['output_to_check']!r}, expected one of "
                            f"{', '.join(OUTPUT_CHECKS)}")
        for key in SPAN_FIELDS.values():
            spans = entry.get(key)
            if not isinstance(spans, list):
                raise UserError(f"{where}: {key} must be a list of [start, end] line spans")
            for span in spans:
                if (not isinstance(span, list) or len(span) != 2
                        or not all(isinstance(n, int) and not isinstance(n, bool) for n in span)
                        or not 1 <= span[0] <= span[1]):
                    raise UserError(f"{where}: {key} holds {span!r}; a span is [start, end] with "
                                    "1 <= start <= end (1-indexed, inclusive)")
    return data


# --- one program: a problem here makes only its tasks unavailable ----------------------------


def _load_program(
    root: Path,
    language: Language,
    entry: dict[str, Any],
    stems: dict[str, str],
    manifest: Manifest | None,
) -> tuple[Program, list[str] | None]:
    name = entry["Task_Name"]
    stem = stems.get(name)
    rel_stem = PurePosixPath(stem) if stem else PurePosixPath(f"example_code/{LANG_FOLDER[language]}/{name}/{name}")
    source = root / f"{rel_stem}{EXTENSION[language]}"
    data_dir = source.parent
    base = {
        "name": name,
        "language": language,
        "source": source,
        "data_dir": data_dir,
        "output_to_check": entry.get("output_to_check", "final_output"),
        "tester_class": source.stem if language is Language.java else None,
        "jars": tuple(sorted(data_dir.glob("*.jar"))) if language is Language.java else (),
    }
    lines: list[str] | None = None
    try:
        if stem is None:
            raise _Unavailable(f"{TASKS_PATH} has no path for {name}")
        lines = _read_source(source)
        missing = _missing_files(root, language, rel_stem, manifest)
        if missing:
            raise _Unavailable(f"missing file{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        test_cases = _python_tests(source) if language is Language.python else ()
    except _Unavailable as problem:
        return Program(**base, available=False, reason=str(problem)), lines
    return Program(**base, test_cases=test_cases, tests_json=source.with_suffix(".json")), lines


def _read_source(source: Path) -> list[str]:
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _Unavailable(f"missing source {source.name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unavailable(f"cannot read {source.name} ({exc})") from None
    # Upstream's split: tabs become 4 spaces, then split on newlines.
    return text.replace("\t", " " * 4).split("\n")


def _missing_files(root: Path, language: Language, rel_stem: PurePosixPath, manifest: Manifest | None) -> list[str]:
    if manifest is None:
        return []
    # Java's <stem>.json only records a console run; the JUnit tester is the check.
    unused = {f"{rel_stem}.json"} if language is Language.java else set()
    wanted = [e.path for e in manifest.under(str(rel_stem.parent)) if e.path not in unused]
    return [str(PurePosixPath(p).relative_to(rel_stem.parent)) for p in wanted if not (root / p).is_file()]


def _python_tests(source: Path) -> tuple[TestCase, ...]:
    path = source.with_suffix(".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _Unavailable(f"missing test file {path.name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unavailable(f"cannot read {path.name} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise _Unavailable(f"malformed JSON in {path.name} at line {exc.lineno}: {exc.msg}") from None
    try:
        return parse_test_json(data)
    except ValueError as exc:
        raise _Unavailable(f"{path.name}: {exc}") from None


def parse_test_json(data: Any) -> tuple[TestCase, ...]:
    """Test cases from upstream's ``{"test_caseN": code, "expected_outputN": text}`` object.

    Expected outputs store each newline as the two characters ``\\n``; they come back as newlines.
    Raises ``ValueError`` naming the problem.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected an object of test_caseN/expected_outputN, found {type(data).__name__}")
    numbers = sorted(int(m.group(1)) for k in data if (m := _TEST_KEY.fullmatch(k)))
    if not numbers:
        raise ValueError("no test_caseN entries")
    cases = []
    for n in numbers:
        code, expected = data[f"test_case{n}"], data.get(f"expected_output{n}")
        if expected is None:
            raise ValueError(f"test_case{n} has no expected_output{n}")
        if not isinstance(code, str) or not isinstance(expected, str):
            raise ValueError(f"test_case{n} and expected_output{n} must be strings")
        cases.append(TestCase(code=code, expected_output=expected.replace("\\n", "\n")))
    return tuple(cases)


def dump_test_json(cases: list[TestCase] | tuple[TestCase, ...]) -> dict[str, str]:
    """The upstream-shaped object for ``cases`` (what ``parse_test_json`` reads back)."""
    data: dict[str, str] = {}
    for n, case in enumerate(cases, start=1):
        data[f"test_case{n}"] = case.code
        data[f"expected_output{n}"] = case.expected_output.replace("\n", "\\n")
    return data


# --- categories --------------------------------------------------------------------------------


def _records(root: Path, language: Language, program: str, notes: list[str]) -> categories.Records | None:
    """The program's verified category records (see ``runner.benchmarks.categories``)."""
    records = categories.read_records(root / categories_folder(language), program)
    if records is None:
        notes.append(f"{program}: no category records in {categories_folder(language)}")
    return records


# --- tasks --------------------------------------------------------------------------------------


def _tasks(
    benchmark: str,
    language: Language,
    mode: Mode,
    program: Program,
    spans: list[list[int]],
    lines: list[str] | None,
    records: categories.Records | None,
) -> list[Task]:
    seen: Counter[tuple[int, int]] = Counter()
    tasks = []
    for start, end in spans:
        seen[(start, end)] += 1
        task_id = f"{language.value}/{mode.value}/{program.name}/{start}-{end}"
        if seen[(start, end)] > 1:
            # Upstream lists a few spans twice; both count in the published totals.
            task_id += f"#{seen[(start, end)]}"
        available, reason = program.available, program.reason
        before = reference = after = ""
        if lines is not None:
            if end > len(lines):
                available = False
                reason = reason or f"span {start}-{end} ends after line {len(lines)}, the last of {program.source.name}"
            before = "\n".join(lines[: start - 1])
            reference = "\n".join(lines[start - 1 : end])
            after = "\n".join(lines[end:])
        tasks.append(
            Task(
                id=task_id,
                benchmark=benchmark,
                language=language,
                mode=mode,
                program=program.name,
                span=(start, end),
                before=before,
                reference=reference,
                after=after,
                categories=categories.labels(records, language, start, end),
                available=available,
                reason=reason,
            )
        )
    return tasks


def _junit_jar(root: Path) -> Path | None:
    jars = sorted((root / "example_code").glob("Java/**/junit-platform-console-standalone-*.jar"))
    return jars[0] if jars else None
