"""What makes the figures trustworthy: identical prompts, judging, timing isolation, the environment check."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from runner.errors import cap
from runner.evaluation.verdicts import JudgingCounts, judging_counts
from runner.records import ExpectedOutputs, Outcome
from runner.report.data import CellData, RunData, split_task_id


# -- prompts -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptMismatch:
    task_id: str
    hashes: dict[str, list[str]]  # prompt sha256 -> cell labels that saw it


@dataclass(frozen=True)
class PromptCheck:
    """Whether every cell of one prompt style saw the same prompt for each task."""

    style: str
    cells: list[str]
    tasks: int
    manifest_hashes: dict[str, str]  # run name -> prompt-set sha256 in its manifest
    mismatches: list[PromptMismatch]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def prompt_checks(runs: list[RunData]) -> list[PromptCheck]:
    """Compare the per-task prompt sha256 across all cells of each prompt style."""
    seen: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    cells_of: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        for cell in run.cells:
            style = cell.cell.prompt_style
            hashes = {s.task_id: s.prompt_sha256 for s in cell.samples if s.prompt_sha256}
            if hashes:
                cells_of[style].append(cell.label)
            for task_id, digest in hashes.items():
                seen[style][task_id][digest].append(cell.label)
    out = []
    styles = sorted(set(seen) | {s for r in runs for s in r.manifest.prompt_set_sha256})
    for style in styles:
        tasks = seen.get(style, {})
        mismatches = [PromptMismatch(task_id=t, hashes=dict(h)) for t, h in sorted(tasks.items()) if len(h) > 1]
        out.append(PromptCheck(style=style, cells=cells_of.get(style, []), tasks=len(tasks),
                               manifest_hashes={r.name: r.manifest.prompt_set_sha256[style]
                                                for r in runs if style in r.manifest.prompt_set_sha256},
                               mismatches=mismatches))
    return out


# -- judging: answers judged and verdicts reused -----------------------------------------------------
@dataclass(frozen=True)
class JudgingRow:
    """One cell's accuracy answers: judged afresh, and those whose verdict the verdict cache gave
    (an identical answer judged before in the same environment: ``Sample.verdict_from``)."""

    cell: CellData
    judged: int
    reused: int


def judging(cells: list[CellData]) -> tuple[list[JudgingRow], JudgingCounts]:
    """Per cell and in total, the answers judged and the verdicts reused."""
    rows = [JudgingRow(cell, c.judged, c.reused) for cell in cells for c in [judging_counts(cell.samples)]]
    total = JudgingCounts(sum(r.judged for r in rows), sum(r.reused for r in rows))
    return rows, total


# -- timing isolation: timed samples against other generation on their node ----------------------
@dataclass(frozen=True)
class TimingRow:
    """One run's timed figures checked against its activity records (``runner.measuring.activity``)."""

    run: RunData
    isolation: Any  # runner.measuring.activity.TimingIsolation


def timing_rows(runs: list[RunData]) -> list[TimingRow]:
    """Per run, whether any timed sample overlapped another cell's generation on its node."""
    from runner.measuring.activity import overlapping_timed, read_activity

    return [TimingRow(run, overlapping_timed(read_activity(run.path), [s for c in run.cells for s in c.samples]))
            for run in runs]


# -- the environment check ------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvironmentRow:
    """One program the environment check set apart in one run: unscoreable, or judged against re-recorded outputs."""

    run: str
    program: str
    language: str
    status: str  # "unscoreable" | "re-recorded"
    detail: str  # the reason, or how many printed values moved and by how much
    tasks: int  # accuracy samples of this program in the run's cells (each cell counts)


def environment_rows(runs: list[RunData]) -> tuple[list[EnvironmentRow], list[str]]:
    """The programs each run's environment check set apart, with their reasons, and notes on what it checked."""
    rows, notes = [], []
    for run in runs:
        report = run.manifest.environment
        if report is None:
            notes.append(f"{run.name}: no environment check recorded (a run made before the check existed): "
                         "an environment failure there counts as the model's")
            continue
        notes.append(f"{run.name}: {len(report.programs)} programs' references judged on the {report.cascade.value} "
                     f"harness in sandbox {report.sandbox[:30]}; expected outputs: {report.expected}")
        per_program: dict[str, int] = defaultdict(int)
        failed_here: dict[tuple[str, str], list[str]] = defaultdict(list)  # the sandbox failed inside a cell
        for cell in run.cells:
            for s in cell.accuracy:
                program = s.task_id.split("/")[2] if s.task_id.count("/") >= 3 else s.task_id
                per_program[program] += 1
                if s.outcome == Outcome.unscoreable and (s.unscoreable_reason or "").startswith("environment:"):
                    failed_here[(program, split_task_id(s.task_id)[0])].append(s.unscoreable_reason)
        for check in report.programs:
            if not check.scoreable:
                rows.append(EnvironmentRow(run.name, check.program, check.language.value, "unscoreable",
                                           cap(check.reason or "its reference fails here", 300), per_program[check.program]))
            elif check.drift is not None and check.expected_outputs is ExpectedOutputs.re_recorded:
                d = check.drift
                rows.append(EnvironmentRow(run.name, check.program, check.language.value, "re-recorded",
                                           f"{d.values_moved} of {d.values_compared} printed values moved, at most "
                                           f"{d.max_relative_change:.1e} relative; upstream's outputs kept beside them",
                                           per_program[check.program]))
        for (program, language), reasons in sorted(failed_here.items()):
            rows.append(EnvironmentRow(run.name, program, language, "environment failure",
                                       f"the sandbox could not run {len(reasons)} answer(s): {cap(reasons[-1], 240)}",
                                       len(reasons)))
    return rows, notes
