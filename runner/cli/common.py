"""What every ``runner`` command shares: the one-line error, the console, the edition, benchmark, sandbox and
GPU options, and where a matrix name points. Imports no command module."""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path

import click

from runner.errors import ERROR_LIMIT, UserError, cap

class CliError(click.ClickException):
    """A user mistake: one line on stderr, exit code 2, no traceback."""

    exit_code = 2


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


#: the most lines one error prints (a matrix's list of mistakes is capped below it, runner.matrix.faults)
_ERROR_LINES = 40


def _lines(text: str) -> str:
    # each mistake whole on its own line up to the cap (a cut at a character count would cut a list
    # mid-line); the last line stays, where an error says what to do about all of them
    lines = [cap(line, ERROR_LIMIT) for line in text.splitlines()]
    if len(lines) > _ERROR_LINES:
        lines = [*lines[:_ERROR_LINES - 1], f"… and {len(lines) - _ERROR_LINES} more lines", lines[-1]]
    return "\n".join(lines)


def user_errors(fn):
    """Turn the core's ``UserError`` (and a full disk) into a one-line ``CliError``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise CliError(_lines(str(exc))) from None
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


_SANDBOX_OPTION = click.option(
    "--sandbox", "sandbox_kind", type=click.Choice(["auto", "docker", "local"]), default="auto", show_default=True,
    help="Where generated code runs: the pinned sandbox image (docker), this machine (local), or docker "
         "when an engine and the built image are there (auto).")
_EXPECTED_OPTION = click.option(
    "--expected", type=click.Choice(["auto", "upstream"]), default="auto", show_default=True,
    help="Expected outputs: auto re-records a program's in this environment when its reference's floats "
         "drifted (that program alone, upstream's kept beside them); upstream keeps the recorded ones.")

_ASSUME_GPUS_OPTION = click.option(
    "--assume-gpus", metavar="[Nx]KIND", default=None,
    help="Plan for a host with N GPUs of KIND instead of this one's (its CPUs, memory and disk stay this "
         "host's; its Docker engine is assumed): h100-80gb, h100-pcie-80gb, h200-141gb, a100-80gb, a100-40gb, "
         "l40s-48gb, rtx4090-24gb; e.g. 8xh100-80gb.")


def _host_for(assume_gpus: str | None):
    """This host as probed, or the one ``--assume-gpus`` describes (None: let the plan probe)."""
    if assume_gpus is None:
        return None
    from runner.planning.doctor import assumed_host, probe_host

    return assumed_host(assume_gpus, probe_host())


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



def _shipped_or_path(matrix: Path) -> Path:
    """A matrix path, or the name of a shipped one (``demo`` -> ``matrices/demo.toml``)."""
    from runner.paths import matrices_dir

    shipped = matrices_dir() / f"{matrix}.toml"
    return shipped if not matrix.exists() and shipped.is_file() else matrix

