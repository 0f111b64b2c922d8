"""The ``runner data fetch`` command: download SimCoPilot at its pinned commit, or import a copy, and verify it."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.common import _edition_option, log, user_errors
from runner.errors import UserError


@click.command("fetch")
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
