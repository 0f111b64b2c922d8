"""Re-scoring answers from any tool: ``runner score ANSWERS.jsonl --benchmark simcopilot``.

Input: JSON lines ``{"task_id": "<our task id>", "text": "<raw model output>"}``. Every line
is checked before anything runs: a malformed line, a missing or non-string field, an unknown
or unavailable task id, or a task answered twice is one ``UserError`` naming the file, the
line, the field and the value. Each answer is then judged by both cascades (upstream's own
scoring and this project's); ``cascade`` picks the headline.

SimCoPilot's editions share their task ids, so the same answers can also be judged under another
edition's scoring code (``edition_verdicts``): each answer then carries that edition's verdict
(``ScoredAnswer.editions``), and ``summarize`` counts each edition's passes and the verdicts that flip.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from runner.benchmarks import Benchmark
from runner.errors import UserError
from runner.measuring import stats
from runner.records import (Cascade, CascadeVerdict, EditionVerdict, ExpectedOutputs, Language, Mode, Outcome,
                            Stage, Task)


class Answer(BaseModel):
    """One line of the input."""

    task_id: str
    text: str


class ScoredAnswer(BaseModel):
    """One line of ``--json`` output: the headline verdict, and each cascade's."""

    task_id: str
    language: Language
    mode: Mode
    program: str
    outcome: Outcome
    stage: Stage | None
    cleaned_outcome: Outcome
    cascade: Cascade
    #: Python: which expected outputs judged it (``re-recorded``: the reference's own outputs in this
    #: environment, where upstream's recorded floats drifted)
    expected_outputs: ExpectedOutputs | None = None
    unscoreable_reason: str | None = None  # outcome unscoreable: why no answer can pass here
    upstream: CascadeVerdict | None = None
    runner: CascadeVerdict | None = None
    #: the SimCoPilot edition whose scoring code gave the verdict above (None: the starter set)
    edition: str | None = None
    #: the same answer under each other edition asked for (``--edition`` given twice), headline excluded
    editions: list[EditionVerdict] = Field(default_factory=list)

    def under(self, edition: str) -> EditionVerdict | None:
        """This answer's verdict under ``edition`` (the headline's own fields for the headline edition)."""
        if edition == self.edition:
            return EditionVerdict(edition=edition, outcome=self.outcome, stage=self.stage,
                                  cleaned_outcome=self.cleaned_outcome, cascade=self.cascade,
                                  unscoreable_reason=self.unscoreable_reason, expected_outputs=self.expected_outputs)
        return next((v for v in self.editions if v.edition == edition), None)


@dataclass(frozen=True)
class EditionSplit:
    """One language x mode under another edition's scoring code, against the headline edition's."""

    edition: str
    passed: int
    total: int  # tasks scoreable under this edition
    flips: int  # tasks whose pass/fail differs from the headline edition's verdict ...
    compared: int  # ... of those scoreable under both


@dataclass(frozen=True)
class SplitScore:
    """Pass counts of one language x mode under the headline cascade, with both intervals.

    ``total`` and the intervals count the scoreable tasks (the headline); ``all_rate`` is over all
    tasks, the unscoreable ones counted as failures (the published table's denominator).
    """

    language: Language
    mode: Mode
    passed: int
    total: int  # scoreable tasks
    bootstrap_mean: float  # upstream's ±: seeded bootstrap mean ...
    bootstrap_half: float  # ... and 1.96 SD of the resampled pass rates
    wilson: stats.Interval
    flips: int  # tasks whose pass/fail differs between the two cascades
    compared: int  # tasks that have both verdicts
    unscoreable: int = 0  # tasks no answer can pass here
    editions: tuple[EditionSplit, ...] = ()  # the other editions' counts (``--edition`` given twice)

    @property
    def all_rate(self) -> float:
        return self.passed / (self.total + self.unscoreable)


def read_answers(path: Path, benchmark: Benchmark) -> list[tuple[Task, Answer]]:
    """The answers of ``path``, each with its task; every problem is a ``UserError`` naming the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; give a JSON-lines file of {{\"task_id\": ..., \"text\": ...}}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the file ({exc})") from None
    tasks = {t.id: t for t in benchmark.tasks}
    seen: dict[str, int] = {}
    answers: list[tuple[Task, Answer]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not JSON ({exc.msg} at column {exc.colno}); each line must be "
                            "{\"task_id\": \"...\", \"text\": \"...\"}") from None
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object, found {type(record).__name__}")
        for field in ("task_id", "text"):
            if field not in record:
                raise UserError(f"{where}: field {field!r} is missing; each line needs task_id and text")
            if not isinstance(record[field], str):
                raise UserError(f"{where}: field {field!r} is {record[field]!r}, expected a string")
        task_id = record["task_id"]
        task = tasks.get(task_id)
        if task is None:
            other = " (SimCoPilot answers need --benchmark simcopilot)" if benchmark.name == "starter" else ""
            raise UserError(f"{where}: task_id {task_id!r} is not a task of {benchmark.name!r}{other}; "
                            f"list them with `runner tasks list --benchmark {benchmark.name} --json`")
        if not task.available:
            raise UserError(f"{where}: task_id {task_id!r} cannot be scored here ({task.reason})")
        if task_id in seen:
            raise UserError(f"{where}: task_id {task_id!r} was already answered on line {seen[task_id]}")
        seen[task_id] = number
        answers.append((task, Answer(task_id=task_id, text=record["text"])))
    if not answers:
        raise UserError(f"{path}: no answers in the file")
    return answers


def score(answers: list[tuple[Task, Answer]], evaluator, workers: int | None = None,
          progress: Callable[[ScoredAnswer], None] | None = None, *, edition: str | None = None,
          compared: list[dict[str, EditionVerdict]] | tuple = ()) -> Iterator[ScoredAnswer]:
    """Judge every answer (in input order) with ``evaluator`` (built with ``both=True`` for both verdicts).

    ``edition`` names the edition ``evaluator`` scores with; ``compared`` holds, per other edition,
    each task's verdict there (``edition_verdicts``), attached to the answer.
    """
    items = [(task, answer.text) for task, answer in answers]
    for task, verdict in evaluator.evaluate_many(items, workers=workers):
        scored = ScoredAnswer(task_id=task.id, language=task.language, mode=task.mode, program=task.program,
                              outcome=verdict.outcome, stage=verdict.stage, cleaned_outcome=verdict.cleaned_outcome,
                              cascade=verdict.cascade, expected_outputs=verdict.expected_outputs,
                              unscoreable_reason=verdict.unscoreable_reason, upstream=verdict.upstream,
                              runner=verdict.runner, edition=edition,
                              editions=[other[task.id] for other in compared if task.id in other])
        if progress is not None:
            progress(scored)
        yield scored


def edition_tasks(answers: list[tuple[Task, Answer]], benchmark: Benchmark) -> list[Task]:
    """The tasks of ``benchmark`` (another edition) that ``answers`` answer and that are available there."""
    tasks = {t.id: t for t in benchmark.tasks}
    return [tasks[task.id] for task, _ in answers if task.id in tasks and tasks[task.id].available]


def edition_verdicts(answers: list[tuple[Task, Answer]], benchmark: Benchmark, evaluator,
                     workers: int | None = None) -> dict[str, EditionVerdict]:
    """Each answer's headline verdict under ``benchmark``'s edition, judged by ``evaluator`` (built over it).

    The editions share their task ids; a task not available in this edition (a data file it lacks)
    is ``unscoreable`` there, with why.
    """
    edition = benchmark.edition or benchmark.name
    tasks = {t.id: t for t in benchmark.tasks}
    out: dict[str, EditionVerdict] = {}
    for task, _ in answers:
        there = tasks.get(task.id)
        if there is None or not there.available:
            out[task.id] = not_available(edition, there)
    items = [(tasks[task.id], answer.text) for task, answer in answers if task.id not in out]
    for task, verdict in evaluator.evaluate_many(items, workers=workers):
        out[task.id] = EditionVerdict.of(edition, verdict)
    return out


def not_available(edition: str, there: Task | None) -> EditionVerdict:
    """The verdict under ``edition`` on a task it lacks or cannot score (``there``: its task, if any)."""
    why = there.reason if there is not None else "no such task"
    return EditionVerdict(edition=edition, outcome=Outcome.unscoreable,
                          unscoreable_reason=f"not available in edition {edition}: {why}")


@dataclass(frozen=True)
class EditionJudge:
    """Another edition's scoring code over its own copy of the tasks: what a run's ``compare_editions``
    judges each answer with, beside the headline edition."""

    edition: str
    tasks: dict[str, Task]  # that edition's tasks by id (the editions share their ids)
    evaluator: object  # an Evaluator over that edition, its environment checked

    @classmethod
    def over(cls, benchmark: Benchmark, evaluator) -> "EditionJudge":
        return cls(benchmark.edition or benchmark.name, {t.id: t for t in benchmark.tasks}, evaluator)

    def verdict(self, task_id: str, text: str) -> EditionVerdict:
        """``text`` judged as the answer to ``task_id`` under this edition (one answer, this thread)."""
        there = self.tasks.get(task_id)
        if there is None or not there.available:
            return not_available(self.edition, there)
        return EditionVerdict.of(self.edition, self.evaluator.evaluate(there, text))


def summarize(scored: list[ScoredAnswer], seed: int = 0) -> list[SplitScore]:
    """Per language x mode (the paper's splits): passes, upstream's bootstrap ±, Wilson, flips."""
    splits: dict[tuple[Language, Mode], list[ScoredAnswer]] = {}
    for s in scored:
        splits.setdefault((s.language, s.mode), []).append(s)
    out = []
    for (language, mode), everything in sorted(splits.items(), key=lambda kv: (list(Language).index(kv[0][0]),
                                                                               list(Mode).index(kv[0][1]))):
        group = [s for s in everything if s.outcome is not Outcome.unscoreable]
        passed = sum(s.outcome is Outcome.passed for s in group)
        both = [s for s in group if s.upstream is not None and s.runner is not None]
        flips = sum((s.upstream.outcome is Outcome.passed) != (s.runner.outcome is Outcome.passed) for s in both)
        mean, half = stats.bootstrap_interval(passed, len(group), seed=seed) if group else (0.0, 0.0)
        wilson = stats.wilson_interval(passed, len(group)) if group else stats.Interval(0.0, 0.0)
        out.append(SplitScore(language, mode, passed, len(group), mean, half, wilson, flips, len(both),
                              unscoreable=len(everything) - len(group), editions=_edition_splits(everything)))
    return out


def _edition_splits(scored: list[ScoredAnswer]) -> tuple[EditionSplit, ...]:
    """Per other edition (in the order given): its passes over its scoreable tasks, and the flips."""
    names = list(dict.fromkeys(v.edition for s in scored for v in s.editions))
    splits = []
    for name in names:
        verdicts = [(s, s.under(name)) for s in scored]
        there = [(s, v) for s, v in verdicts if v is not None and v.outcome is not Outcome.unscoreable]
        both = [(s, v) for s, v in there if s.outcome is not Outcome.unscoreable]
        flips = sum((s.outcome is Outcome.passed) != (v.outcome is Outcome.passed) for s, v in both)
        splits.append(EditionSplit(name, sum(v.outcome is Outcome.passed for _, v in there), len(there),
                                   flips, len(both)))
    return tuple(splits)
