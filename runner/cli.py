"""The ``runner`` command line: parses arguments and calls the core. Data on stdout, logs on stderr."""

from __future__ import annotations

import functools
import sys

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

# --- commands: tasks ------------------------------------------------------------------------

# --- commands: models, reproduce, doctor ------------------------------------------------------

# --- commands: report -----------------------------------------------------------------------

# --- commands: clean (Docker) ---------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
