"""The ``runner tasks`` and ``runner score`` commands: list a benchmark's tasks, check solutions or
answers against it, re-record expected outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from runner.cli.common import (_BENCHMARK_HELP, _EXPECTED_OPTION, _SANDBOX_OPTION, _console, _edition_option,
                               _load_benchmark, log, user_errors)
from runner.errors import UserError

# --- commands: tasks ------------------------------------------------------------------------


@click.command("list")
@click.option("--benchmark", "name", default="starter", show_default=True, help=_BENCHMARK_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per task instead of the counts.")
@_edition_option()
@user_errors
def tasks_list(name: str, as_json: bool, edition: str | None) -> None:
    """Count the tasks per language, mode and program (available / unavailable).

    \b
    Example:
      runner tasks list --benchmark simcopilot
      runner tasks list --benchmark simcopilot --edition 2025
      runner tasks list --benchmark starter --json
    """
    import itertools
    import json

    from rich.table import Table

    bench = _load_benchmark(name, edition)
    for note in bench.notes:
        log(f"note: {note}")
    for program in bench.programs.values():
        if not program.available:
            log(f"unavailable: {program.name}: {program.reason}")
    if as_json:
        fields = ("language", "mode", "program", "span", "categories", "available", "reason")
        for t in bench.tasks:  # JSON lines, as every --json: one object per line, streamable and greppable
            # `task_id`, the name `score` reads and every other output writes
            click.echo(json.dumps({"task_id": t.id, **t.model_dump(mode="json", include=set(fields))}))
        return
    table = Table(title=f"{name}: {len(bench.available())} of {len(bench.tasks)} tasks available"
                        + (f" (edition {bench.edition})" if bench.edition else ""))
    for column in ("language", "mode", "program"):
        table.add_column(column)
    table.add_column("available", justify="right")
    table.add_column("unavailable", justify="right")
    rows = bench.counts()  # ordered by language, then mode
    for (language, mode), grouped in itertools.groupby(rows, key=lambda r: (r.language, r.mode)):
        group = list(grouped)
        for r in group:
            table.add_row(language.value, mode.value, r.program, str(r.available), str(r.unavailable))
        table.add_row(language.value, mode.value, "all programs", str(sum(r.available for r in group)),
                      str(sum(r.unavailable for r in group)), style="bold", end_section=True)
    table.add_row("all", "all", "all programs", str(sum(r.available for r in rows)),
                  str(sum(r.unavailable for r in rows)), style="bold")
    _console().print(table)


def _checked_evaluator(bench, tasks, *, sandbox_kind: str, allow_unsandboxed: bool, cascade: str | None = None,
                       both: bool = False, expected: str = "auto", refresh: bool = False, workers: int | None = None):
    """The evaluator for ``tasks``, after the sandbox's self-check and the environment check, each said on stderr."""
    from runner.evaluation.environment import prepared_evaluator

    evaluator, report = prepared_evaluator(bench, tasks, sandbox_kind=sandbox_kind, cascade=cascade, both=both,
                                           expected=expected, allow_unsandboxed=allow_unsandboxed, refresh=refresh,
                                           workers=workers, note=log)
    _log_environment(report)
    return evaluator, report


def _log_environment(report) -> None:
    for check in report.programs:
        if not check.scoreable:
            log(f"unscoreable: {check.program} ({check.reason}); its tasks are left out of the headline rate")
        elif check.drift is not None:
            log(f"re-recorded: {check.program}'s expected outputs in this environment ({check.drift.values_moved} of "
                f"{check.drift.values_compared} printed values moved, at most {check.drift.max_relative_change:.1e} "
                f"relative; upstream's kept beside them)")
    cached = sum(c.cached for c in report.programs)
    log(f"environment checked ({report.sandbox[:23]}…, {report.cascade.value} harness): {len(report.programs)} programs, "
        f"{len(report.unscoreable())} unscoreable, {len(report.re_recorded())} re-recorded"
        + (f", {cached} from the cache" if cached else ""))


@click.command("check")
@click.option("--benchmark", "name", default="starter", show_default=True, help=_BENCHMARK_HELP)
@click.option("--solution", type=click.Choice(["reference", "empty"]), default="reference", show_default=True,
              help="The oracle answer: the reference span, or nothing.")
@click.option("--language", type=click.Choice(["python", "java"]), default=None, help="Only this language.")
@click.option("--mode", type=click.Choice(["infill", "completion"]), default=None, help="Only this mode.")
@click.option("--program", default=None, help="Only this program (upstream Task_Name).")
@click.option("--task", "task_ids", multiple=True, metavar="ID",
              help="Only this task (repeatable; the `task_id` of `runner tasks list --json`).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per task instead of the table.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel checks [default: cores].")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append each check to this JSON-lines file as it completes; a rerun skips the tasks it holds.")
@click.option("--allow-unsandboxed", is_flag=True,
              help="Run even where the sandbox is incomplete (no namespaces / not root): accept the risk.")
@click.option("--cascade", type=click.Choice(["upstream", "runner"]), default=None,
              help="The cascade that judges [default: the benchmark's headline: upstream for simcopilot].")
@_SANDBOX_OPTION
@_EXPECTED_OPTION
@_edition_option()
@user_errors
def tasks_check(name, solution, language, mode, program, task_ids, as_json, workers, record, allow_unsandboxed,
                cascade, sandbox_kind, expected, edition) -> None:
    """Run an oracle solution through the full evaluation and count passes per language and mode.

    The reference must pass every scoreable task (exit 1 otherwise, naming each failure and
    whether it looks like an environment problem or a bug); the empty answer should fail
    nearly all. Programs whose reference cannot pass here are named as unscoreable, with why.

    \b
    Example:
      runner tasks check --benchmark starter --solution reference
      runner tasks check --solution empty --language java --json
      runner tasks check --benchmark simcopilot --sandbox docker --record oracle.jsonl
      runner tasks check --benchmark simcopilot --edition 2025 --program simplex_method
      runner tasks check --benchmark simcopilot --task python/infill/simplex_method/4-4
    """
    from collections import Counter

    from rich.table import Table

    from runner.evaluation import SUSPECTS, append_check, check_solution, load_checks

    bench = _load_benchmark(name, edition)
    if program is not None and program not in bench.programs:
        raise UserError(f"--program {program!r}: benchmark {name!r} has no such program; see `runner tasks list`")
    selected = bench.select(language=language, mode=mode, program=program)
    if task_ids:
        known = {t.id for t in bench.tasks}
        unknown = next((i for i in task_ids if i not in known), None)
        if unknown is not None:
            raise UserError(f"--task {unknown!r}: not a task of {name!r}; list them with "
                            f"`runner tasks list --benchmark {name} --json`")
        selected = [t for t in selected if t.id in set(task_ids)]
    runnable = [t for t in selected if t.available]
    if len(runnable) < len(selected):
        log(f"skipping {len(selected) - len(runnable)} unavailable tasks (see `runner tasks list --benchmark {name}`)")
    if not runnable:
        raise UserError(f"no available tasks in {name!r} match the filters; see `runner tasks list --benchmark {name}`")
    done = load_checks(record, solution) if record else {}
    todo = [t for t in runnable if t.id not in done]
    if done:
        log(f"{record}: {len(runnable) - len(todo)} tasks already checked, {len(todo)} to go")
    evaluator, report = _checked_evaluator(bench, todo or runnable, sandbox_kind=sandbox_kind,
                                            allow_unsandboxed=allow_unsandboxed, cascade=cascade, expected=expected,
                                            workers=workers)
    log(f"checking {len(todo)} tasks with the {solution} solution ({evaluator.cascade.value} cascade)")

    from runner.running.progress import CountProgress

    def progress(check) -> None:
        if record:
            append_check(record, check)
        counter.advance(check.outcome.value == "pass")
        if check.solution == "reference" and check.outcome.value not in ("pass", "unscoreable"):
            log(f"{check.task_id}: {check.outcome.value} ({SUSPECTS[check.suspect]})")

    with CountProgress("checked", len(todo), log) as counter:
        fresh = {c.task_id: c for c in check_solution(evaluator, todo, solution, workers=workers, progress=progress)}
    checks = [done.get(t.id) or fresh[t.id] for t in runnable]
    failures = [c for c in checks if solution == "reference" and c.outcome.value not in ("pass", "unscoreable")]
    # an unscoreable program is the environment's (a missing file or library); one whose reference
    # fails for no reason the check recognises, or at a limit, is the oracle's to report
    suspicious = [c for c in report.unscoreable() if c.suspect in ("bug", "limit")]
    if as_json:
        for c in checks:
            click.echo(c.model_dump_json())
    else:
        passed, total, outcomes, unscoreable = Counter(), Counter(), Counter(), Counter()
        for c in checks:
            key = (c.language.value, c.mode.value)
            total[key] += 1
            passed[key] += c.outcome.value == "pass"
            unscoreable[key] += c.outcome.value == "unscoreable"
            outcomes[(key, c.outcome.value)] += 1
        table = Table(title=f"{name}{f' {bench.edition}' if bench.edition else ''}: {solution} solution, "
                            f"{evaluator.cascade.value} cascade")
        table.caption = ("pass %: over the scoreable tasks; all tasks %: unscoreable ones counted as failures "
                         "(the published table's denominator)")
        numeric = ("tasks", "unscoreable", "pass", "pass %", "all tasks %")
        table.add_column("split", no_wrap=True)
        for column in numeric:
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("other outcomes")
        for key in sorted(total):
            other = ", ".join(f"{o} {n}" for (k, o), n in sorted(outcomes.items())
                              if k == key and o not in ("pass", "unscoreable"))
            scoreable = total[key] - unscoreable[key]
            table.add_row(" ".join(key), str(total[key]), str(unscoreable[key]), str(passed[key]),
                          f"{100 * passed[key] / scoreable:.1f}" if scoreable else "—",
                          f"{100 * passed[key] / total[key]:.1f}", other)
        _console().print(table)
        for c in failures:
            hint = SUSPECTS.get(c.suspect or "bug", c.suspect)
            tail = "\n    ".join(c.stderr_tail.strip().splitlines()[-8:])
            click.echo(f"FAILED {c.task_id}: {c.outcome.value} ({hint})\n    {tail}")
        for c in report.unscoreable():
            click.echo(f"{'FAILED' if c in suspicious else 'UNSCOREABLE'} {c.program}: {c.reason}")
    if failures or suspicious:
        raise SystemExit(1)


class _StdinFile(os.PathLike):
    """Standard input in a temporary file: read as a path, called ``<stdin>`` in messages."""

    def __enter__(self) -> "_StdinFile":
        import tempfile

        fd, self.path = tempfile.mkstemp(prefix="runner-stdin-", suffix=".jsonl")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(sys.stdin.read())
        return self

    def __exit__(self, *exc) -> None:
        os.unlink(self.path)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return "<stdin>"


@click.command()
@click.argument("answers", type=click.Path(path_type=Path))
@click.option("--benchmark", "name", default="starter", show_default=True, help=_BENCHMARK_HELP)
@click.option("--cascade", type=click.Choice(["upstream", "runner"]), default=None,
              help="The headline: SimCoPilot's own scoring (upstream) or this project's stricter cascade (runner) "
                   "[default: the benchmark's headline: upstream for simcopilot, runner for starter]. "
                   "Both verdicts are kept either way.")
@click.option("--headline-only", is_flag=True, help="Judge with the headline cascade only (half the test runs).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per task instead of the table.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel checks [default: cores].")
@click.option("--allow-unsandboxed", is_flag=True, help="Run even where the sandbox is incomplete: accept the risk.")
@_SANDBOX_OPTION
@_EXPECTED_OPTION
@_edition_option(multiple=True)
@user_errors
def score(answers: Path, name: str, cascade: str, headline_only: bool, as_json: bool, workers: int | None,
          allow_unsandboxed: bool, sandbox_kind: str, expected: str, edition: tuple[str, ...]) -> None:
    """Score raw model outputs from any tool: JSON lines {"task_id": ..., "text": ...}.

    With --edition given twice, the same answers are also judged under the second edition's
    scoring code: the first is the headline, and a second table compares the editions.

    \b
    Example:
      runner score answers.jsonl --benchmark simcopilot
      runner score answers.jsonl --cascade runner --json > verdicts.jsonl
      my-tool --emit-jsonl | runner score -
      runner score answers.jsonl --benchmark simcopilot --edition 2025 --edition 2024
    """
    from rich.table import Table

    from runner.benchmarks import default_cascade
    from runner.running import score as scoring

    editions = list(edition) or [None]
    repeated = sorted({e for e in editions if editions.count(e) > 1})
    if repeated:
        raise UserError(f"--edition {repeated[0]} is given twice; give each edition once (the first is the headline)")
    # every edition's copy is there before anything runs (a missing one says how to fetch it)
    bench, *others = [_load_benchmark(name, e) for e in editions]
    cascade = cascade or default_cascade(name)
    if str(answers) == "-":  # the answers from standard input (`... | runner score -`)
        with _StdinFile() as stdin:
            pairs = scoring.read_answers(stdin, bench)
    else:
        pairs = scoring.read_answers(answers, bench)
    checked = dict(sandbox_kind=sandbox_kind, allow_unsandboxed=allow_unsandboxed, cascade=cascade,
                   both=not headline_only, expected=expected, workers=workers)
    if others:
        log(f"edition {bench.edition} (the headline): checking the environment")
    evaluator, _report = _checked_evaluator(bench, [task for task, _ in pairs], **checked)
    compared = []
    for other in others:
        tasks_there = scoring.edition_tasks(pairs, other)
        log(f"edition {other.edition}: checking the environment")
        other_evaluator, _ = _checked_evaluator(other, tasks_there or [t for t, _ in pairs], **checked)
        log(f"scoring {len(pairs)} answers under edition {other.edition} ({cascade} cascade), "
            f"to compare with the headline edition {bench.edition}")
        compared.append(scoring.edition_verdicts(pairs, other, other_evaluator, workers=workers))
    under = f" under edition {bench.edition}" if bench.edition else ""
    log(f"scoring {len(pairs)} answers{under} (headline: {cascade} cascade)")
    from runner.running.progress import CountProgress

    scored = []
    with CountProgress("scored", len(pairs), log) as counter:
        for record in scoring.score(pairs, evaluator, workers=workers, edition=bench.edition, compared=compared):
            scored.append(record)
            counter.advance(record.outcome.value == "pass")
            if as_json:
                click.echo(record.model_dump_json(exclude={"upstream": {"code"}, "runner": {"code"}}))
    if as_json:
        return
    table = Table(title=f"{name}{f' {bench.edition}' if bench.edition else ''}: {len(scored)} answers, "
                        f"{cascade} cascade")
    table.caption = ("pass %, bootstrap, Wilson: over the scoreable tasks (the headline); all tasks %: unscoreable "
                     "ones counted as failures (the published table's denominator); bootstrap: upstream's ± (seeded "
                     "mean ± 1.96 SD of 10,000 resamples); flips: tasks whose pass/fail differs between the two "
                     "cascades, of those judged by both")
    table.add_column("split", no_wrap=True)
    for column in ("tasks", "unscoreable", "pass", "pass %", "bootstrap %", "Wilson 95% %", "all tasks %", "flips"):
        table.add_column(column, justify="right")
    for split in scoring.summarize(scored):
        scoreable = split.total > 0
        table.add_row(f"{split.language.value} {split.mode.value}", str(split.total + split.unscoreable),
                      str(split.unscoreable), str(split.passed),
                      f"{100 * split.passed / split.total:.1f}" if scoreable else "—",
                      f"{100 * split.bootstrap_mean:.1f} ± {100 * split.bootstrap_half:.1f}" if scoreable else "—",
                      f"{100 * split.wilson.low:.1f}-{100 * split.wilson.high:.1f}" if scoreable else "—",
                      f"{100 * split.all_rate:.1f}", f"{split.flips}/{split.compared}")
    _console().print(table)
    if others:
        _print_edition_table(bench.edition, [o.edition for o in others], scoring.summarize(scored), cascade)


def _print_edition_table(headline: str, others: list[str], splits, cascade: str) -> None:
    """Per split: the pass rate under each edition's scoring code, and how many verdicts flip."""
    from rich.table import Table

    table = Table(title=f"the same answers under each edition ({cascade} cascade)")
    table.caption = (f"pass: passed/scoreable under that edition's code; flips: tasks whose pass/fail under "
                     f"{headline} (the headline) and the other edition differ, of those scoreable under both")
    table.add_column("split", no_wrap=True)
    for name in (headline, *others):
        table.add_column(f"{name} pass", justify="right", no_wrap=True)
        table.add_column(f"{name} %", justify="right", no_wrap=True)
    for name in others:
        table.add_column(f"flips {headline}/{name}" if len(others) > 1 else "flips", justify="right", no_wrap=True)
    for split in splits:
        by_name = {e.edition: e for e in split.editions}
        row = [f"{split.language.value} {split.mode.value}", f"{split.passed}/{split.total}",
               f"{100 * split.passed / split.total:.1f}" if split.total else "—"]
        for name in others:
            e = by_name.get(name)
            row += [f"{e.passed}/{e.total}", f"{100 * e.passed / e.total:.1f}" if e.total else "—"] if e else ["—", "—"]
        row += [f"{by_name[name].flips}/{by_name[name].compared}" if name in by_name else "—" for name in others]
        table.add_row(*row)
    _console().print(table)


@click.command("rebaseline")
@click.option("--benchmark", "name", default="starter", show_default=True, help=_BENCHMARK_HELP)
@click.option("--program", default=None, help="Only this program (upstream Task_Name).")
@click.option("--allow-unsandboxed", is_flag=True, help="Run even where the sandbox is incomplete: accept the risk.")
@_SANDBOX_OPTION
@_edition_option()
@user_errors
def tasks_rebaseline(name: str, program: str | None, allow_unsandboxed: bool, sandbox_kind: str,
                     edition: str | None) -> None:
    """Check every program's reference in this environment again, re-recording drifted expected outputs.

    A program whose reference's printed floats moved (and nothing else) gets its expected outputs
    re-recorded here, that program alone, upstream's kept beside them; ``reproduce``, ``score``
    and ``tasks check`` do the same on their own, once per environment (cached).

    \b
    Example:
      runner tasks rebaseline --benchmark simcopilot --sandbox docker
      runner tasks rebaseline --benchmark simcopilot --edition 2025 --sandbox docker
    """
    bench = _load_benchmark(name, edition)
    if program is not None and program not in bench.programs:
        raise UserError(f"--program {program!r}: benchmark {name!r} has no such program; see `runner tasks list`")
    tasks = [t for t in bench.select(program=program) if t.available]
    if not tasks:
        raise UserError(f"no available tasks in {name!r} match the filters; see `runner tasks list --benchmark {name}`")
    _evaluator, report = _checked_evaluator(bench, tasks, sandbox_kind=sandbox_kind, allow_unsandboxed=allow_unsandboxed,
                                            refresh=True)
    for check in report.programs:
        if check.re_recorded is not None:
            click.echo(f"re-recorded {check.program}: {check.re_recorded}")
        elif check.scoreable:
            click.echo(f"unchanged {check.program}: its reference passes against upstream's expected outputs")
        else:
            click.echo(f"unscoreable {check.program}: {check.reason}")

