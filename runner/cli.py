"""The ``runner`` command line: parses arguments and calls the core. Data on stdout, logs on stderr."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from runner import __version__
from runner.errors import UserError


class CliError(click.ClickException):
    """A user mistake: one line on stderr, exit code 2, no traceback."""

    exit_code = 2


def user_errors(fn):
    """Turn the core's ``UserError`` into a one-line ``CliError``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise CliError(str(exc)) from None

    return wrapper


def log(message: str) -> None:
    """Progress and notes go to stderr so that stdout stays machine-readable."""
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
def main() -> None:
    """Measure how inference optimizations move the latency and accuracy of code-infill models.

    \b
    Example:
      runner reproduce --preset demo     # the CPU demo: Gemma 3 270M on the starter set
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


# --- commands: data -------------------------------------------------------------------------


@data.command("fetch")
@click.argument("benchmark")
@click.option("--from", "source", type=click.Path(path_type=Path), default=None,
              help="Import a local copy: a checkout, an unpacked archive, or a .tar.gz/.zip file.")
@click.option("--allow-modified", is_flag=True,
              help="Import files whose content differs from the pinned commit (refused by default).")
@user_errors
def data_fetch(benchmark: str, source: Path | None, allow_modified: bool) -> None:
    """Download SimCoPilot at the pinned commit (or import a copy) and verify every file.

    \b
    Example:
      runner data fetch simcopilot
      runner data fetch simcopilot --from ~/src/SimCoPilot
      runner data fetch simcopilot --from SimCoPilot-90c5560.tar.gz
    """
    from runner.benchmarks import fetch, load_benchmark

    if benchmark != "simcopilot":
        raise UserError(f"only simcopilot is fetched (the starter set ships with runner), not {benchmark!r}")
    try:
        if source is not None:
            result = fetch.import_simcopilot(source, allow_modified=allow_modified)
        else:
            result = _download_with_progress(fetch, allow_modified)
    except fetch.ImportRefused as exc:
        _log_verification(exc.verification)
        raise
    _log_verification(result.verification)
    for program in load_benchmark("simcopilot").programs.values():
        if not program.available:
            log(f"unavailable: {program.language.value} program {program.name}: {program.reason}")
    v = result.verification
    click.echo(f"SimCoPilot {result.manifest.commit[:7]} installed in {result.dest}: {len(v.ok)} files verified, "
               f"{len(v.missing)} missing, {len(v.modified)} modified")


def _download_with_progress(fetch, allow_modified: bool):
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    console = Console(stderr=True)
    if not console.is_terminal:  # a bar in a log file is noise
        return fetch.fetch_simcopilot(allow_modified=allow_modified)
    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task("SimCoPilot", total=None)
        return fetch.fetch_simcopilot(
            allow_modified=allow_modified,
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
@click.option("--benchmark", "name", default="starter", show_default=True, help="starter or simcopilot.")
@click.option("--json", "as_json", is_flag=True, help="Print every task as JSON instead of the counts.")
@user_errors
def tasks_list(name: str, as_json: bool) -> None:
    """Count the tasks per language, mode and program (available / unavailable).

    \b
    Example:
      runner tasks list --benchmark simcopilot
      runner tasks list --benchmark starter --json
    """
    import itertools
    import json

    from rich.console import Console
    from rich.table import Table

    from runner.benchmarks import load_benchmark

    bench = load_benchmark(name)
    for note in bench.notes:
        log(f"note: {note}")
    for program in bench.programs.values():
        if not program.available:
            log(f"unavailable: {program.name}: {program.reason}")
    if as_json:
        fields = ("id", "language", "mode", "program", "span", "categories", "available", "reason")
        # One task per line inside one JSON array: valid JSON, and still greppable.
        lines = [json.dumps(t.model_dump(mode="json", include=set(fields))) for t in bench.tasks]
        click.echo("[\n" + ",\n".join(lines) + "\n]")
        return
    table = Table(title=f"{name}: {len(bench.available())} of {len(bench.tasks)} tasks available")
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
    Console().print(table)

# --- commands: models, reproduce, doctor ------------------------------------------------------

# --- commands: report -----------------------------------------------------------------------

# --- commands: clean (Docker) ---------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
