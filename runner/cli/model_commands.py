"""The ``runner models`` commands: ``prepare`` gets every cell's model files ready; ``lock`` resolves a matrix's
Hugging Face sources to a lock beside it, or checks the lock against the Hub and the matrix."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from runner.cli.common import _console, _shipped_or_path, log, user_errors


@click.command("prepare")
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
    from runner.serving.models import prepare

    loaded = load_matrix(_shipped_or_path(matrix))
    cells = [loaded.cell(cell_id) for cell_id in cell_ids] if cell_ids else loaded.cells
    if runnable_only:
        from runner.planning.doctor import plan_cells

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



@click.command("lock")
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
    from runner.matrix import load_matrix
    from runner.serving.lock import load_lock, write_lock
    from runner.serving.lock_hub import check, hub_endpoint, resolve

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
