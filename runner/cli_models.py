"""The ``runner models lock`` command: resolve a matrix's Hugging Face sources to a lock beside it, or check
the lock against the Hub and the matrix. Registered on ``runner.cli``'s ``models`` group on import."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from runner.cli import _shipped_or_path, log, models, user_errors


@models.command("lock")
@click.argument("matrix", type=click.Path(path_type=Path))
@click.option("--check", "check_only", is_flag=True,
              help="Compare the lock with the Hub and the matrix (metadata only, seconds); exit 1 on any problem.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON lines: each locked source (or, with --check, each problem).")
@user_errors
def models_lock(matrix: Path, check_only: bool, as_json: bool) -> None:
    """Lock each Hugging Face source of MATRIX to a commit, with every file's size and sha256, in MATRIX's
    .lock file (TOML, beside it); HF_ENDPOINT and HF_TOKEN are honoured.

    \b
    Example:
      runner models lock matrices/paper.toml           # writes matrices/paper.lock
      runner models lock matrices/paper.toml --check   # did a branch move, a file vanish?
    """
    from runner.lock import load_lock, write_lock
    from runner.lock_hub import check, hub_endpoint, resolve
    from runner.matrix import load_matrix

    loaded = load_matrix(_shipped_or_path(matrix))
    started = time.monotonic()
    if check_only:
        problems = check(loaded, load_lock(loaded))
        for problem in problems:
            click.echo(problem.model_dump_json() if as_json else problem.line)
        log(f"asked {hub_endpoint()} in {time.monotonic() - started:.1f} s")
        if problems:
            log(f"{len(problems)} problem(s): the lock does not match the Hub or the matrix")
            sys.exit(1)
        (log if as_json else click.echo)("lock matches the Hub and the matrix")
        return
    lock = resolve(loaded)
    if not lock.sources:
        log(f"{loaded.path}: no cell uses a Hugging Face source: nothing to lock")
        return
    path = write_lock(lock, loaded)
    for entry in lock.sources:
        if as_json:
            click.echo(entry.model_dump_json(by_alias=True, exclude_none=True))
            continue
        size = sum(f.size or 0 for f in entry.files) / 1024**3
        click.echo(f"{entry.key}: {entry.repo}@{entry.revision} -> {entry.commit[:12]}: {len(entry.files)} "
                   f"file(s), {size:.2f} GiB" + (", gated" if entry.gated else "")
                   + (f", licence {entry.license}" if entry.license else ""))
    log(f"wrote {path}: {len(lock.sources)} source(s) from {hub_endpoint()} in {time.monotonic() - started:.1f} s")
