"""A loaded benchmark: its programs and every task cut out of them, available or not."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import UserError
from runner.records import Language, Mode, Program, Task


@dataclass(frozen=True)
class TaskCount:
    """How many tasks of one program and mode can run, and how many cannot."""

    language: Language
    mode: Mode
    program: str
    available: int
    unavailable: int


@dataclass(frozen=True)
class Benchmark:
    """Programs by name and all their tasks, in checkpoint-file order."""

    name: str
    root: Path
    programs: dict[str, Program]
    tasks: list[Task]
    junit_jar: Path | None = None  # the JUnit console launcher a copy ships, if any
    notes: list[str] = field(default_factory=list)  # what the loader noticed but tolerated
    edition: str | None = None  # SimCoPilot's edition ("2024" | "2025"); None for the starter set

    def available(self) -> list[Task]:
        """The tasks whose program is complete in this copy."""
        return [t for t in self.tasks if t.available]

    def select(
        self,
        language: Language | str | None = None,
        mode: Mode | str | None = None,
        program: str | None = None,
        available_only: bool = False,
    ) -> list[Task]:
        """The tasks matching every filter that is given."""
        lang = Language(language) if language is not None else None
        md = Mode(mode) if mode is not None else None
        return [
            t
            for t in self.tasks
            if (lang is None or t.language == lang)
            and (md is None or t.mode == md)
            and (program is None or t.program == program)
            and (t.available or not available_only)
        ]

    def program_of(self, task: Task) -> Program:
        """The program a task was cut from."""
        return self.programs[task.program]

    def task(self, task_id: str) -> Task:
        """The task with id ``task_id``, or a ``UserError`` saying it is unknown."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise UserError(f"benchmark {self.name!r} has no task {task_id!r}; see `runner tasks list --json`")

    def counts(self) -> list[TaskCount]:
        """Available and unavailable task counts per language, mode and program."""
        ok: Counter[tuple[Language, Mode, str]] = Counter()
        not_ok: Counter[tuple[Language, Mode, str]] = Counter()
        order: list[tuple[Language, Mode, str]] = []
        for t in self.tasks:
            key = (t.language, t.mode, t.program)
            if key not in ok and key not in not_ok:
                order.append(key)
            (ok if t.available else not_ok)[key] += 1
        order.sort(key=lambda k: (list(Language).index(k[0]), list(Mode).index(k[1])))
        return [TaskCount(lang, mode, prog, ok[(lang, mode, prog)], not_ok[(lang, mode, prog)])
                for lang, mode, prog in order]


def program_text(task: Task, middle: str) -> str:
    """The program to run: ``before``, then ``middle`` in place of the span, then ``after``.

    The parts are line lists joined with newlines (as upstream splits them), so they are joined
    with newlines; ``before`` is left out when the span starts at line 1, and an empty ``after``
    is left out (at most a final newline is lost, which neither Python nor Java minds).
    """
    parts = [task.before] if task.span[0] > 1 else []
    parts.append(middle)
    if task.after:
        parts.append(task.after)
    return "\n".join(parts)
