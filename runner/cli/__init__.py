"""The ``runner`` command line: parses arguments and calls the core. Data on stdout, logs on stderr.

This package is the top layer: it may import every other part of ``runner``, and only ``runner.__main__`` imports it.
``main`` is the command group; each ``*_commands`` module holds one group's commands (``common`` what they
share), and they are attached here, so no command module imports this one.
"""

from __future__ import annotations

import click

from runner import __version__
from runner.cli import data_commands, model_commands, run_commands, task_commands
from runner.cli.common import _EDITION_NAMES  # noqa: F401 - the edition choices, which a test compares with the registry


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
    """Lock and prepare the model files a matrix needs.

    \b
    Example:
      runner models prepare matrices/demo.toml
      runner models lock matrices/paper.toml --check
    """



data.add_command(data_commands.data_fetch)
for command in (run_commands.reproduce, run_commands.doctor, run_commands.report, run_commands.clean,
                task_commands.score):
    main.add_command(command)
for command in (task_commands.tasks_list, task_commands.tasks_check, task_commands.tasks_rebaseline):
    tasks.add_command(command)
for command in (model_commands.models_prepare, model_commands.models_lock):
    models.add_command(command)
