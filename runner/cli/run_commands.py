"""The ``runner reproduce``, ``doctor``, ``report`` and ``clean`` commands: plan and run a matrix, render its
report, and clean up what a killed run left behind."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.cli.common import (_ASSUME_GPUS_OPTION, _EXPECTED_OPTION, _SANDBOX_OPTION, CliError, _console,
                               _edition_option, _gpu_ids, _host_for, _run_name, _shipped_or_path, log, user_errors)
from runner.errors import UserError

_ASSUME_CPUS_OPTION = click.option(
    "--assume-cpus", type=click.IntRange(min=1), metavar="N", default=None,
    help="Plan for a host with N CPU cores (judging runs one worker per core) instead of this one's; "
         "with --assume-gpus for a whole node.")


@click.command()
@click.argument("matrix", required=False, type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["demo"]), help="A shipped matrix: demo = matrices/demo.toml.")
@click.option("--all", "run_all", is_flag=True, help="The paper matrix (matrices/paper.toml).")
@click.option("--name", default=None, help="Run directory name (default: the matrix's name).")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--fresh", is_flag=True, help="Delete what an earlier run of this name left and start over.")
@click.option("--backend", default=None, help="Where servers run: local or docker (default: the matrix's).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many tasks per cell.")
@click.option("--cell", "cell_ids", multiple=True, metavar="ID",
              help="Only this cell (repeatable), as `models prepare --cell`; `runner doctor MATRIX` lists the ids.")
@click.option("--skip-unrunnable", is_flag=True, help="Skip cells this host cannot run instead of refusing.")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print the plan (cells, GPU memory, disk, hours) and write nothing: exit 0 if every cell "
                   "can run (or, with --skip-unrunnable, some can), 1 if some cannot.")
@click.option("--dry-run", "dry_run", is_flag=True,
              help="The plan, and per cell its locked source, its exact launch (argv, environment, image, config "
                   "files), its first request and each check's verdict; writes nothing; exit as --plan.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON line per cell.")
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
@_ASSUME_GPUS_OPTION
@_ASSUME_CPUS_OPTION
@_edition_option(default_help="the matrix's edition")
@user_errors
def reproduce(matrix: Path | None, preset: str | None, run_all: bool, name: str | None, runs_dir: Path,
              fresh: bool, backend: str | None, limit: int | None, cell_ids: tuple[str, ...], skip_unrunnable: bool,
              plan_only: bool,
              dry_run: bool, as_json: bool, sandbox_kind: str, expected: str, allow_unsandboxed: bool,
              ray_address: str | None, parallel_cells: int | None, gpu_ids: list[int] | None, assume_gpus: str | None,
              assume_cpus: int | None, edition: str | None) -> None:
    """Run a matrix: per cell serve, generate, evaluate, time; resumes an interrupted run.

    It plans first (the plan `runner doctor MATRIX` shows): a run that cannot go as asked prints the
    whole plan and refuses before anything is written. MATRIX is a path or a shipped name (demo, paper).

    \b
    Example:
      runner reproduce --preset demo
      runner reproduce --all --plan            # what the paper's matrix needs here; writes nothing
      runner reproduce --all --plan --assume-gpus 8xh100-80gb --assume-cpus 64  # ... on a node of eight H100s
      runner reproduce --all --dry-run --json --assume-gpus 8xh100-80gb  # each cell's source, launch, request
      runner reproduce matrices/demo.toml --name demo-2 --limit 4
      runner reproduce demo --cell qwen2.5-coder-0.5b/llamacpp/f16/baseline --cell qwen2.5-coder-0.5b/llamacpp/q2_k/baseline
      runner reproduce --all --backend docker --skip-unrunnable
      runner reproduce --all --ray auto        # cells over a Ray cluster's GPU nodes
      runner reproduce --all --parallel-cells 4  # four cells at once on this host's GPUs
      runner reproduce --all --edition 2025    # SimCoPilot as the paper's repository scores it
    """
    import signal


    from runner.matrix import load_matrix
    from runner.paths import matrices_dir
    from runner.running.progress import RichEvents, summary_table
    from runner.running.run import RunOptions, reproduce as run_matrix

    chosen = [m for m in (matrix, preset, run_all or None) if m]
    if len(chosen) != 1:
        raise UserError("give exactly one of MATRIX, --preset demo or --all")
    _run_name(name)
    path = _shipped_or_path(matrix) if matrix else matrices_dir() / ("paper.toml" if run_all else f"{preset}.toml")
    loaded = load_matrix(path).with_edition(edition)
    if cell_ids:  # the matrix's own order; an unknown id is refused with the ids there are
        chosen_ids = {loaded.cell(cell_id).id for cell_id in cell_ids}
        loaded = loaded.model_copy(update={"cells": [c for c in loaded.cells if c.id in chosen_ids]})
    _check_runs_dir(runs_dir)
    if gpu_ids is not None and not ray_address and assume_gpus is None:
        _check_gpu_ids(gpu_ids)
    if parallel_cells is not None:
        if ray_address:
            raise UserError("--parallel-cells is for this host; on a Ray cluster every cell that fits runs at once")
        loaded = loaded.model_copy(update={"settings": loaded.settings.model_copy(
            update={"parallel_cells": parallel_cells})})
    if gpu_ids is not None and ray_address:
        raise UserError("--gpus is for this host; on a Ray cluster each node offers its own GPUs")
    for flag, value in (("--assume-gpus", assume_gpus), ("--assume-cpus", assume_cpus)):
        if value is not None and (not (plan_only or dry_run) or ray_address or gpu_ids is not None):
            raise UserError(f"{flag} {value}: plans for a host that is not this one, so it runs nothing: "
                            "use it with --plan or --dry-run, without --ray or --gpus")
    plan = _reproduce_plan(loaded, backend=backend, limit=limit, name=name, ray_address=ray_address,
                           runs_dir=runs_dir, host=_planned_host(assume_gpus, assume_cpus),
                           skip_unrunnable=skip_unrunnable)
    if as_json and not dry_run:
        raise UserError("--json goes with --dry-run (one JSON line per cell)")
    if dry_run:
        sys.exit(_dry_run(loaded, plan, backend=backend or loaded.backend, as_json=as_json))
    if plan_only:
        click.echo("\n".join(plan.lines()))
        sys.exit(plan.exit_code)
    if plan.exit_code:
        # the whole plan, never cut, then the one line that says what to do
        click.echo("\n".join(plan.lines(refusal=False)))
        raise CliError(plan.refusal())
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

def _check_runs_dir(runs_dir: Path) -> None:
    """A ``UserError`` for a ``--runs-dir`` that exists and is not a folder."""
    if runs_dir.exists() and not runs_dir.is_dir():
        raise UserError(f"--runs-dir {runs_dir}: is a file, not a folder; give a folder for the runs (default: runs)")


def _check_gpu_ids(gpu_ids: list[int]) -> None:
    """A ``UserError`` for ``--gpus`` ids this host does not have."""
    from runner.planning.doctor import probe_host

    host = probe_host()
    absent = [i for i in gpu_ids if i >= len(host.gpus)]
    if absent:
        have = (f"has {len(host.gpus)} GPUs (ids 0 to {len(host.gpus) - 1})" if host.gpus
                else f"has no GPU ({host.gpu_note})")
        raise UserError(f"--gpus {','.join(map(str, gpu_ids))}: no GPU {', '.join(map(str, absent))} here: this "
                        f"host {have}; give ids it has, or leave --gpus out")


def _planned_host(assume_gpus: str | None, assume_cpus: int | None):
    """The host ``--assume-gpus`` and ``--assume-cpus`` describe (None: neither given, the plan probes)."""
    host = _host_for(assume_gpus)
    if assume_cpus is None:
        return host
    from runner.planning.doctor import probe_host

    host = host or probe_host()
    gpus = host.assumed or (f"this host's {len(host.gpus)} GPUs" if host.gpus else "no GPU")
    return host.model_copy(update={"cpu_count": assume_cpus,
                                   "assumed": f"{gpus}, {assume_cpus} CPU cores (--assume-cpus {assume_cpus})"})


def _dry_run(loaded, plan, *, backend: str, as_json: bool) -> int:
    """Print the dry run (``runner.planning.dryrun``); the exit code: 0 when every cell is runnable, else 1."""
    from runner.planning import dryrun
    from runner.serving.lock import load_lock

    tasks = None
    if plan.data and plan.data[0].present:
        from runner.benchmarks import load_benchmark
        from runner.planning.selection import select_tasks

        tasks = select_tasks(load_benchmark(loaded.benchmark, loaded.edition), loaded.tasks)
    cells = dryrun.dry_run(loaded, plan, backend=backend, lock=load_lock(loaded), tasks=tasks)
    if as_json:
        for cell in cells:
            click.echo(cell.model_dump_json())
    else:
        click.echo("\n".join(plan.lines(refusal=False) + dryrun.lines(cells)))
        ready = sum(c.runnable for c in cells)
        skipped = (f"; --skip-unrunnable: the run skips the other {len(cells) - ready}"
                   if plan.skip_unrunnable and 0 < ready < len(cells) else "")
        click.echo(f"\ndry run: {ready} of {len(cells)} cells runnable{skipped}; nothing was written")
    # the plan's rule (Plan.exit_code), on the dry run's verdicts, which add the launch and request checks
    failed = [c for c in cells if not c.runnable]
    return 1 if plan.problems or len(failed) == len(cells) or (failed and not plan.skip_unrunnable) else 0


def _reproduce_plan(loaded, *, backend: str | None, limit: int | None, name: str | None, ray_address: str | None,
                    runs_dir: Path | None = None, host=None, skip_unrunnable: bool = False):
    """``runner.planning.plan.make_plan`` for ``reproduce``'s options (on the Ray cluster with ``--ray``); the
    runs in ``runs_dir`` made on this hardware give the estimates where they measured the same cells."""
    from runner.planning.plan import make_plan

    executor = None
    if ray_address:
        from runner.executors import get_executor

        executor = get_executor("ray", address=ray_address)
    try:
        return make_plan(loaded, backend=backend, executor=executor, limit=limit, name=name, runs_dir=runs_dir,
                         host=host, skip_unrunnable=skip_unrunnable)
    finally:
        if executor is not None:
            executor.close()



@click.command()
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
@click.option("--skip-unrunnable", is_flag=True,
              help="Plan as `reproduce --skip-unrunnable` runs: exit 0 when some cell can run.")
@_ASSUME_GPUS_OPTION
@_ASSUME_CPUS_OPTION
@user_errors
def doctor(matrix: Path | None, backend: str | None, ray_address: str | None, as_json: bool, runs_dir: Path,
           take_check: bool, skip_unrunnable: bool, assume_gpus: str | None, assume_cpus: int | None) -> None:
    """Say what this host offers (GPUs, Docker, disk, Java, servers, the sandbox's self-check, the benchmark data,
    its unavailable tasks and unscoreable programs, HF_TOKEN) and plan a matrix's cells.

    The plan is the one `runner reproduce MATRIX --plan` prints. Unscoreable programs are the environment
    check's verdicts as cached (a run takes the check first; --check-environment takes it now).
    Exit as `reproduce MATRIX --plan`: 1 when some cell of MATRIX cannot run (with --skip-unrunnable: when none can).

    \b
    Example:
      runner doctor
      runner doctor paper --backend docker
      runner doctor matrices/paper.toml --ray auto
      runner doctor paper --assume-gpus 8xh100-80gb --assume-cpus 64
    """
    import json

    from rich.markup import escape
    from rich.table import Table

    from runner.planning.checks import data_check, sandbox_check, scoring_check, token_check
    from runner.planning.doctor import probe_host
    from runner.planning.plan import make_plan, validate_backend

    validate_backend(backend)
    _check_runs_dir(runs_dir)
    if ray_address:
        for flag, value in (("--assume-gpus", assume_gpus), ("--assume-cpus", assume_cpus)):
            if value is not None:
                raise UserError(f"{flag} {value}: plans for one host, --ray on a cluster's nodes; give one of them")
        _doctor_ray(matrix, backend, ray_address, as_json, skip_unrunnable)
        return

    host = _planned_host(assume_gpus, assume_cpus) or probe_host()
    plan = loaded = None
    if matrix is not None:
        from runner.matrix import load_matrix

        loaded = load_matrix(_shipped_or_path(matrix))
        plan = make_plan(loaded, backend=backend, host=host, runs_dir=runs_dir, skip_unrunnable=skip_unrunnable)
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
        checks = Table("check", "", title=f"an assumed host: {host.assumed}" if host.assumed else "this host")
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
            click.echo("\n".join(plan.lines()))
    if plan is not None:
        sys.exit(plan.exit_code)


def _doctor_ray(matrix: Path | None, backend: str | None, address: str, as_json: bool,
                skip_unrunnable: bool = False) -> None:
    import json

    from rich.table import Table

    from runner.executors import get_executor
    from runner.planning.plan import make_plan

    executor = get_executor("ray", address=address)
    try:
        nodes = executor.nodes()
        plan = None
        if matrix is not None:
            from runner.matrix import load_matrix

            plan = make_plan(load_matrix(_shipped_or_path(matrix)), backend=backend, executor=executor,
                             skip_unrunnable=skip_unrunnable)
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
            click.echo("\n".join(plan.lines()))
    if plan is not None:
        sys.exit(plan.exit_code)


# --- commands: report -----------------------------------------------------------------------


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for index.html, README.md, results.csv/json, comparisons.csv/json, load_points.csv/json and plots/ "
                   "[default: report/RUN "
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
    for path in paths.files:
        click.echo(str(path))

# --- commands: clean (local servers, Docker) ------------------------------------------------



@click.command()
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
    from runner.infra.docker_engine import docker_client

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


