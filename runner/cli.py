"""The ``runner`` command line: parses arguments and calls the core. Data on stdout, logs on stderr."""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path

import click

from runner import __version__
from runner.errors import ERROR_LIMIT, UserError, cap


class CliError(click.ClickException):
    """A user mistake: one line on stderr, exit code 2, no traceback."""

    exit_code = 2


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def user_errors(fn):
    """Turn the core's ``UserError`` (and a full disk) into a one-line ``CliError``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise CliError(cap(str(exc), 2 * ERROR_LIMIT)) from None
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            raise CliError(f"disk full{where} ({exc.strerror}): free some space, then rerun the same command; "
                           "what was written is kept and the run resumes") from None

    return wrapper


def _console():
    """Where tables go: the terminal at its own width; off a terminal, COLUMNS or else 200 (a file gets whole rows)."""
    from rich.console import Console

    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return console
    return Console(width=200)


def log(message: str) -> None:
    """Progress and notes go to stderr so that stdout stays machine-readable."""
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
def main() -> None:
    """Measure how inference optimizations move the latency and accuracy of code-infill models.

    \b
    Example:
      runner reproduce --preset demo     # the CPU demo: Qwen2.5-Coder 0.5B on the starter set
      runner reproduce --all --plan      # what the paper's matrix needs here (GPUs, disk, hours)
      runner report runs/demo            # render the report of a run
    """


@main.group()
def data() -> None:
    """Fetch or import benchmark data.

    \b
    Example:
      runner data fetch simcopilot
      runner data fetch simcopilot --from ~/src/SimCoPilot
    """


@main.group()
def tasks() -> None:
    """List benchmark tasks and check the evaluator with oracle solutions.

    \b
    Example:
      runner tasks list --benchmark starter
      runner tasks check --benchmark starter --solution reference
    """


@main.group()
def models() -> None:
    """Prepare the model files a matrix needs.

    \b
    Example:
      runner models prepare matrices/demo.toml
    """


_EDITION_NAMES = ("2024", "2025")  # runner.benchmarks.editions.EDITIONS, without importing it at start-up
_EDITION_HELP = ("SimCoPilot's edition: 2024 (mj33rice/SimCoPilot@90c5560, the 2024 release) or 2025 "
                 "(mj33rice/Sim-CoPilot@096d1c4, the repository the paper links)")


#: every command's --benchmark has the one default: the starter set ships with runner, SimCoPilot is fetched
_BENCHMARK_HELP = "starter (ships with runner) or simcopilot (after `runner data fetch simcopilot`)."


def _edition_option(default_help: str = "2024", multiple: bool = False):
    more = "; give it twice to judge the same answers under both, the first as the headline" if multiple else ""
    return click.option("--edition", type=click.Choice(_EDITION_NAMES), default=None, multiple=multiple,
                        help=f"{_EDITION_HELP}{more} [default: {default_help}].")


def _edition_for(name: str, edition: str | None) -> str | None:
    """The edition to load benchmark ``name`` with; the starter set refuses any but the default."""
    from runner.benchmarks import DEFAULT_EDITION

    if name != "simcopilot" and edition not in (None, DEFAULT_EDITION):
        raise UserError(f"--edition {edition}: benchmark {name!r} has no editions (only simcopilot does); "
                        "drop --edition or use --benchmark simcopilot")
    return edition


def _load_benchmark(name: str, edition: str | None = None):
    from runner.benchmarks import load_benchmark

    return load_benchmark(name, _edition_for(name, edition))


# --- commands: data -------------------------------------------------------------------------


@data.command("fetch")
@click.argument("benchmark")
@click.option("--from", "source", type=click.Path(path_type=Path), default=None,
              help="Import a local copy: a checkout, an unpacked archive, or a .tar.gz/.zip file.")
@click.option("--allow-modified", is_flag=True,
              help="Import files whose content differs from the pinned commit (refused by default).")
@_edition_option()
@user_errors
def data_fetch(benchmark: str, source: Path | None, allow_modified: bool, edition: str | None) -> None:
    """Download SimCoPilot at the pinned commit (or import a copy) and verify every file.

    Each edition is installed in its own folder, so both can be there side by side.

    \b
    Example:
      runner data fetch simcopilot
      runner data fetch simcopilot --from ~/src/SimCoPilot
      runner data fetch simcopilot --from SimCoPilot-90c5560.tar.gz
      runner data fetch simcopilot --edition 2025 --from Sim-CoPilot-096d1c4.tar.gz
    """
    from runner.benchmarks import DEFAULT_EDITION, fetch, get_edition, load_benchmark

    if benchmark != "simcopilot":
        raise UserError(f"only simcopilot is fetched (the starter set ships with runner), not {benchmark!r}")
    try:
        if source is not None:
            result = fetch.import_simcopilot(source, allow_modified=allow_modified, edition=edition)
        else:
            result = _download_with_progress(fetch, allow_modified, edition)
    except fetch.ImportRefused as exc:
        _log_verification(exc.verification)
        raise
    _log_verification(result.verification)
    for program in load_benchmark("simcopilot", edition).programs.values():
        if not program.available:
            log(f"unavailable: {program.language.value} program {program.name}: {program.reason}")
    v = result.verification
    pinned = get_edition(edition)
    which = "" if pinned.name == DEFAULT_EDITION else f" (edition {pinned.name}, {pinned.repository})"
    click.echo(f"SimCoPilot {result.manifest.commit[:7]}{which} installed in {result.dest}: {len(v.ok)} files "
               f"verified, {len(v.missing)} missing, {len(v.modified)} modified")


def _download_with_progress(fetch, allow_modified: bool, edition: str | None = None):
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    console = Console(stderr=True)
    if not console.is_terminal:  # a bar in a log file is noise
        return fetch.fetch_simcopilot(allow_modified=allow_modified, edition=edition)
    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task("SimCoPilot", total=None)
        return fetch.fetch_simcopilot(
            allow_modified=allow_modified, edition=edition,
            progress=lambda done, total: bar.update(job, completed=done, total=total),
        )


def _log_verification(verification) -> None:
    for rel in verification.missing:
        log(f"missing   {rel}")
    for m in verification.modified:
        expected = "unknown" if m.expected_size is None else m.expected_size
        log(f"modified  {m.path} (blob {m.actual_sha1[:12]}, {m.actual_size} bytes; "
            f"expected {m.expected_sha1[:12]}, {expected} bytes)")
    log(f"{len(verification.ok)} files match the manifest, {len(verification.missing)} missing, "
        f"{len(verification.modified)} differ")

# --- commands: tasks ------------------------------------------------------------------------


@tasks.command("list")
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
        fields = ("id", "language", "mode", "program", "span", "categories", "available", "reason")
        for t in bench.tasks:  # JSON lines, as every --json: one object per line, streamable and greppable
            click.echo(json.dumps(t.model_dump(mode="json", include=set(fields))))
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


_SANDBOX_OPTION = click.option(
    "--sandbox", "sandbox_kind", type=click.Choice(["auto", "docker", "local"]), default="auto", show_default=True,
    help="Where generated code runs: the pinned sandbox image (docker), this machine (local), or docker "
         "when an engine and the built image are there (auto).")
_EXPECTED_OPTION = click.option(
    "--expected", type=click.Choice(["auto", "upstream"]), default="auto", show_default=True,
    help="Expected outputs: auto re-records a program's in this environment when its reference's floats "
         "drifted (that program alone, upstream's kept beside them); upstream keeps the recorded ones.")


@tasks.command("check")
@click.option("--benchmark", "name", default="starter", show_default=True, help=_BENCHMARK_HELP)
@click.option("--solution", type=click.Choice(["reference", "empty"]), default="reference", show_default=True,
              help="The oracle answer: the reference span, or nothing.")
@click.option("--language", type=click.Choice(["python", "java"]), default=None, help="Only this language.")
@click.option("--mode", type=click.Choice(["infill", "completion"]), default=None, help="Only this mode.")
@click.option("--program", default=None, help="Only this program (upstream Task_Name).")
@click.option("--task", "task_ids", multiple=True, metavar="ID",
              help="Only this task (repeatable; ids as `runner tasks list --json` names them).")
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
    import json
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

    from runner.progress import CountProgress

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


@main.command()
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

    from runner import score as scoring
    from runner.benchmarks import default_cascade

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
    from runner.progress import CountProgress

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


@tasks.command("rebaseline")
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

def _run_name(value: str | None) -> None:
    from runner.paths import run_name_problem

    if value is not None and (why := run_name_problem(value)):
        raise UserError(f"--name {value!r}: {why}; use a plain name such as 'demo-2'")


# --- commands: models, reproduce, doctor ------------------------------------------------------
def _gpu_ids(ctx, param, value: str | None) -> list[int] | None:  # noqa: ARG001 - click's callback
    if value is None:
        return None
    try:
        ids = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give GPU ids as numbers separated by commas, e.g. 0,1,2,3") from None
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise click.BadParameter(f"{value!r}: give distinct GPU ids >= 0 separated by commas, e.g. 0,1,2,3")
    return ids



@main.command()
@click.argument("matrix", required=False, type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["demo"]), help="A shipped matrix: demo = matrices/demo.toml.")
@click.option("--all", "run_all", is_flag=True, help="The paper matrix (matrices/paper.toml).")
@click.option("--name", default=None, help="Run directory name (default: the matrix's name).")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--fresh", is_flag=True, help="Delete what an earlier run of this name left and start over.")
@click.option("--backend", default=None, help="Where servers run: local or docker (default: the matrix's).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many tasks per cell.")
@click.option("--skip-unrunnable", is_flag=True, help="Skip cells this host cannot run instead of refusing.")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print the plan (cells, GPU memory, disk, hours) and write nothing: exit 0 if every cell "
                   "can run, 1 if some cannot.")
@_SANDBOX_OPTION
@_EXPECTED_OPTION
@click.option("--allow-unsandboxed", is_flag=True, help="Test generated code even where the sandbox is incomplete: accept the risk.")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run the cells on a Ray cluster: auto (the cluster this machine joined), ray://host:port, "
                   "host:port, or local (a one-machine Ray). Needs pip install -e '.[ray]' (in the checkout).")
@click.option("--parallel-cells", type=click.IntRange(min=1), default=None,
              help="Cells at once on this host (default: settings.parallel_cells, else one per GPU, one without "
                   "GPUs). Timed phases still run alone.")
@click.option("--gpus", "gpu_ids", metavar="IDS", default=None, callback=_gpu_ids,
              help="The GPU ids cells may be placed on here, e.g. 0,1,2,3 (default: every GPU NVML sees).")
@_edition_option(default_help="the matrix's edition")
@user_errors
def reproduce(matrix: Path | None, preset: str | None, run_all: bool, name: str | None, runs_dir: Path,
              fresh: bool, backend: str | None, limit: int | None, skip_unrunnable: bool, plan_only: bool,
              sandbox_kind: str, expected: str, allow_unsandboxed: bool, ray_address: str | None,
              parallel_cells: int | None, gpu_ids: list[int] | None, edition: str | None) -> None:
    """Run a matrix: per cell serve, generate, evaluate, time; resumes an interrupted run.

    It plans first (the plan `runner doctor MATRIX` shows): a run that cannot go as asked prints the
    whole plan and refuses before anything is written. MATRIX is a path or a shipped name (demo, paper).

    \b
    Example:
      runner reproduce --preset demo
      runner reproduce --all --plan            # what the paper's matrix needs here; writes nothing
      runner reproduce matrices/demo.toml --name demo-2 --limit 4
      runner reproduce --all --backend docker --skip-unrunnable
      runner reproduce --all --ray auto        # cells over a Ray cluster's GPU nodes
      runner reproduce --all --parallel-cells 4  # four cells at once on this host's GPUs
      runner reproduce --all --edition 2025    # SimCoPilot as the paper's repository scores it
    """
    import signal


    from runner.matrix import load_matrix
    from runner.paths import matrices_dir
    from runner.progress import RichEvents, summary_table
    from runner.run import RunOptions, reproduce as run_matrix

    chosen = [m for m in (matrix, preset, run_all or None) if m]
    if len(chosen) != 1:
        raise UserError("give exactly one of MATRIX, --preset demo or --all")
    _run_name(name)
    path = _shipped_or_path(matrix) if matrix else matrices_dir() / ("paper.toml" if run_all else f"{preset}.toml")
    loaded = load_matrix(path).with_edition(edition)
    if parallel_cells is not None:
        if ray_address:
            raise UserError("--parallel-cells is for this host; on a Ray cluster every cell that fits runs at once")
        loaded = loaded.model_copy(update={"settings": loaded.settings.model_copy(
            update={"parallel_cells": parallel_cells})})
    if gpu_ids is not None and ray_address:
        raise UserError("--gpus is for this host; on a Ray cluster each node offers its own GPUs")
    plan = _reproduce_plan(loaded, backend=backend, limit=limit, name=name, ray_address=ray_address,
                           runs_dir=runs_dir)
    if plan_only:
        click.echo("\n".join(plan.lines()))
        sys.exit(0 if plan.complete else 1)
    if plan.problems or (plan.unrunnable and not skip_unrunnable):
        # the whole plan, never cut, then the one line that says what to do
        click.echo("\n".join(plan.lines(refusal=False)))
        raise CliError(plan.refusal() if plan.unrunnable and not skip_unrunnable else f"cannot start: {plan.problems[0]}")
    options = RunOptions(name=name, runs_dir=runs_dir, fresh=fresh, backend=backend, limit=limit,
                         skip_unrunnable=skip_unrunnable, sandbox=sandbox_kind, allow_unsandboxed=allow_unsandboxed,
                         expected=expected,
                         executor="ray" if ray_address else "inprocess", address=ray_address, gpus=gpu_ids)
    # SIGTERM unwinds like Ctrl-C: every server is stopped on the way out
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with RichEvents() as events:
            outcome = run_matrix(loaded, options, events)
    except KeyboardInterrupt:
        from runner.backends.local import stop_all

        stop_all()
        log("interrupted: servers stopped; rerun the same command to finish the run")
        sys.exit(130)
    from runner.store import RunStore

    _console().print(summary_table(RunStore(outcome.run_dir), outcome))
    try:
        from runner.report import default_out_dir, render
    except ImportError:
        log("the report renderer is not installed; samples are in " + str(outcome.run_dir))
    else:
        out = default_out_dir([outcome.run_dir])
        render([outcome.run_dir], out)
        log(f"report: {out}")
    if outcome.failed:
        log(f"{len(outcome.failed)} cell(s) failed: " + ", ".join(r.cell.id for r in outcome.failed)
            + "; rerun the same command to complete them")
        sys.exit(1)

def _reproduce_plan(loaded, *, backend: str | None, limit: int | None, name: str | None, ray_address: str | None,
                    runs_dir: Path | None = None):
    """``runner.plan.make_plan`` for ``reproduce``'s options (on the Ray cluster with ``--ray``); the
    runs in ``runs_dir`` made on this hardware give the estimates where they measured the same cells."""
    from runner.plan import make_plan

    executor = None
    if ray_address:
        from runner.executors import get_executor

        executor = get_executor("ray", address=ray_address)
    try:
        return make_plan(loaded, backend=backend, executor=executor, limit=limit, name=name, runs_dir=runs_dir)
    finally:
        if executor is not None:
            executor.close()


def _shipped_or_path(matrix: Path) -> Path:
    """A matrix path, or the name of a shipped one (``demo`` -> ``matrices/demo.toml``)."""
    from runner.paths import matrices_dir

    shipped = matrices_dir() / f"{matrix}.toml"
    return shipped if not matrix.exists() and shipped.is_file() else matrix


@models.command("prepare")
@click.argument("matrix", type=click.Path(path_type=Path))
@click.option("--cell", "cell_ids", multiple=True, help="Only this cell id (repeatable).")
@click.option("--runnable-only", is_flag=True, help="Only the cells this host can run (see `runner doctor`).")
@click.option("--json", "as_json", is_flag=True, help="Print the model records as JSON lines.")
@user_errors
def models_prepare(matrix: Path, cell_ids: tuple[str, ...], runnable_only: bool, as_json: bool) -> None:
    """Get every cell's model files ready (download, assemble, convert) and list them with sha256.

    \b
    Example:
      runner models prepare matrices/demo.toml
      runner models prepare demo --cell qwen2.5-coder-0.5b/llamacpp/q4_k_m/baseline
    """
    from rich.table import Table

    from runner.matrix import load_matrix
    from runner.models import prepare

    loaded = load_matrix(_shipped_or_path(matrix))
    cells = [loaded.cell(cell_id) for cell_id in cell_ids] if cell_ids else loaded.cells
    if runnable_only:
        from runner.doctor import plan_cells

        runnable = {p.cell.id for p in plan_cells(loaded) if p.runnable}
        cells = [cell for cell in cells if cell.id in runnable]
    if loaded.backend == "local" and any(cell.runtime == "llamacpp" for cell in cells):
        from runner.runtimes.llamacpp import ensure_llama_server, llama_server_path

        if not llama_server_path().is_file():
            log(f"building llama-server into {llama_server_path().parent.parent} (several minutes)")
        ensure_llama_server()
    records = {}
    for cell in cells:
        log(f"preparing {cell.id}")
        for record in prepare(loaded, cell, progress=log).records:
            records[(record.key, record.path)] = record
    if as_json:
        for record in records.values():
            click.echo(record.model_dump_json())
        return
    console = _console()
    table = Table()
    table.add_column("model", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("path", overflow="fold")
    # whole on one line where it fits (copyable); folded, never cut, on a narrow terminal
    table.add_column("sha256", overflow="fold", no_wrap=console.width >= 120, min_width=16)
    for record in records.values():
        table.add_row(record.key, record.source, record.path, record.sha256 or "")
    console.print(table)


@main.command()
@click.argument("matrix", required=False, type=click.Path(path_type=Path))
@click.option("--backend", default=None, help="Plan for this backend (default: the matrix's).")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Show a Ray cluster's nodes, GPUs and GPU types instead of this host, and plan the cells on it.")
@click.option("--json", "as_json", is_flag=True, help="The host and the plan as one JSON line.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Earlier runs: cells they measured on this hardware give the plan's estimates.")
@click.option("--check-environment", "take_check", is_flag=True,
              help="Take the environment check (each program's reference on the judging path) for the programs "
                   "it has not checked yet, as a run would first; cached for the run (minutes for SimCoPilot).")
@user_errors
def doctor(matrix: Path | None, backend: str | None, ray_address: str | None, as_json: bool, runs_dir: Path,
           take_check: bool) -> None:
    """Say what this host offers (GPUs, Docker, disk, Java, servers, the sandbox's self-check, the benchmark data,
    its unavailable tasks and unscoreable programs, HF_TOKEN) and plan a matrix's cells.

    The plan is the one `runner reproduce MATRIX --plan` prints. Unscoreable programs are the environment
    check's verdicts as cached (a run takes the check first; --check-environment takes it now).
    Exit 1 when no cell of MATRIX can run.

    \b
    Example:
      runner doctor
      runner doctor paper --backend docker
      runner doctor matrices/paper.toml --ray auto
    """
    import json

    from rich.markup import escape
    from rich.table import Table

    from runner.doctor import probe_host
    from runner.plan import data_check, make_plan, sandbox_check, scoring_check, token_check, validate_backend

    validate_backend(backend)
    if ray_address:
        _doctor_ray(matrix, backend, ray_address, as_json)
        return

    host = probe_host()
    plan = loaded = None
    if matrix is not None:
        from runner.matrix import load_matrix

        loaded = load_matrix(_shipped_or_path(matrix))
        plan = make_plan(loaded, backend=backend, host=host, runs_dir=runs_dir)
    token = plan.token if plan else token_check()
    sandbox = sandbox_check()
    programs = loaded.tasks.programs if loaded is not None else None
    progress = (lambda check: log(f"environment check: {check.program}: "
                                  f"{'scoreable' if check.scoreable else 'unscoreable'}")) if take_check else None
    data = [scoring_check(d, programs, take=take_check, progress=progress)
            for d in (plan.data if plan else [data_check("simcopilot")])]
    if as_json:
        click.echo(json.dumps({"host": host.model_dump(mode="json"), "data": [d.model_dump(mode="json") for d in data],
                               "sandbox": sandbox.model_dump(mode="json"), "hf_token": token.model_dump(mode="json"),
                               "cells": [c.model_dump(mode="json") for c in plan.cells] if plan else [],
                               "plan": plan.model_dump(mode="json", exclude={"cells"}) if plan else None}))
    else:
        checks = Table("check", "", title="this host")
        checks.add_column("detail", overflow="fold")  # wrapped, never cut with an ellipsis
        for check in host.checks():
            checks.add_row(check.name, "ok" if check.ok else "no", check.detail)
        checks.add_row("sandbox", "ok" if sandbox.ok else "no", sandbox.detail)
        for d in data:
            detail = d.detail + (f"; {d.tasks} tasks" if d.present else "")
            if d.unavailable:
                detail += f", unavailable here: {'; '.join(d.unavailable)}"
            if d.unscoreable:
                detail += ", unscoreable here: " + "; ".join(
                    f"{u.program}: {u.tasks} tasks ({u.reason})" for u in d.unscoreable)
            if d.scoring:
                detail += f"; unscoreable per {d.scoring}"
            checks.add_row(f"data {d.benchmark}" + (f" {d.edition}" if d.edition else ""), "ok" if d.present else "no",
                           escape(detail))  # a reason's [brackets] are text, not rich markup
        checks.add_row("HF_TOKEN", "ok" if token.set or not token.gated else "no",
                       ("set" if token.set else "not set")
                       + (f"; gated repositories: {', '.join(token.gated)}" if token.gated else ""))
        _console().print(checks)
        if plan is not None:
            click.echo("\n".join(plan.lines(refusal=False)))
    if plan is not None and not plan.startable:
        sys.exit(1)


def _doctor_ray(matrix: Path | None, backend: str | None, address: str, as_json: bool) -> None:
    import json

    from rich.table import Table

    from runner.executors import get_executor
    from runner.plan import make_plan

    executor = get_executor("ray", address=address)
    try:
        nodes = executor.nodes()
        plan = None
        if matrix is not None:
            from runner.matrix import load_matrix

            plan = make_plan(load_matrix(_shipped_or_path(matrix)), backend=backend, executor=executor)
    finally:
        executor.close()
    if as_json:
        click.echo(json.dumps({"nodes": [n.model_dump(mode="json") for n in nodes],
                               "cells": [c.model_dump(mode="json") for c in plan.cells] if plan else [],
                               "plan": plan.model_dump(mode="json", exclude={"cells"}) if plan else None}))
    else:
        table = Table("node", "address", "CPUs", "GPUs", "GPU types", title=f"Ray cluster ({address})")
        for node in nodes:
            types = ", ".join(f"gpu:{t} x{v:g}" for t, v in sorted(node.gpu_types.items()))
            table.add_row(node.node_id[:12] + (" (head)" if node.head else ""), node.host, f"{node.cpus:g}",
                          f"{node.gpus:g}", types)
        _console().print(table)
        if plan is not None:
            click.echo("\n".join(plan.lines(refusal=False)))
    if plan is not None and not plan.startable:
        sys.exit(1)


# --- commands: report -----------------------------------------------------------------------


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for index.html, README.md, results.csv, results.json and plots/ [default: report/RUN "
                   "for one run, report/FIRST-and-N-more for several].")
@user_errors
def report(run_dirs: tuple[Path, ...], out_dir: Path | None) -> None:
    """Render the latency-accuracy report of one or more run directories (several machines compare).

    \b
    Example:
      runner report runs/demo                          # report/demo/
      runner report runs/paper-h100 runs/paper-a100    # report/paper-h100-and-1-more/
      runner report runs/paper-h100 runs/paper-a100 -o report/gpus
    """
    from runner.report import default_out_dir, render

    paths = render(list(run_dirs), out_dir or default_out_dir(list(run_dirs)))
    for path in (paths.html, paths.markdown, paths.csv, paths.json):
        click.echo(str(path))

# --- commands: clean (local servers, Docker) ------------------------------------------------


@main.command()
@click.option("--images", is_flag=True, help="Also remove the images the runner built.")
@user_errors
def clean(images: bool) -> None:
    """Stop the servers and remove the containers a crashed or killed run left behind.

    Local servers are found in the records under the runner home and signalled only when the
    pid is still the recorded process (start time and command line) and its run is gone;
    containers are those labelled runner.managed=true whose runner is gone (a container of a
    run still going, on this engine, is kept and named). Nothing else is touched.

    \b
    Example:
      runner clean
      runner clean --images
    """
    from runner.backends.local import clean_orphans

    for server in clean_orphans():
        if server.action == "stopped":
            click.echo(f"stopped local {server.runtime} server pid {server.pid}")
        elif server.action == "kept":
            log(f"kept local {server.runtime} server pid {server.pid}: its run is still going")
    from runner.backends.docker import clean as remove_managed
    from runner.docker_engine import docker_client

    try:
        # clean has no --backend: the only alternative to starting the engine is to skip its part
        client = docker_client(otherwise=f"and rerun `runner clean{' --images' if images else ''}`")
    except UserError as exc:
        if images:
            raise
        # no engine, no running container: the local servers are done, which is all a CPU host has
        log(f"containers not checked: {exc}")
        return
    removed = remove_managed(images=images, client=client)
    for name in removed.containers:
        click.echo(f"removed container {name}")
    for name in removed.images:
        click.echo(f"removed image {name}")
    for why in removed.kept:
        log(f"kept container {why}")
    log(f"{len(removed.containers)} containers and {len(removed.images)} images removed")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
