"""Entry point of the ``asyncq`` command."""

from __future__ import annotations

import click

import asyncq
from asyncq.cli.misc import cron_group, group_group, server_group, stats
from asyncq.cli.queue import queue_group
from asyncq.cli.scheduler import scheduler
from asyncq.cli.task import task_group
from asyncq.cli.worker import worker

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(asyncq.__version__, "--version", "-V", message="asyncq %(version)s")
def cli() -> None:
    """asyncq: run workers and manage queues (wire-compatible with asynq)."""


@cli.command()
def version() -> None:
    """Print the asyncq version."""
    click.echo(f"asyncq {asyncq.__version__}")


cli.add_command(worker)
cli.add_command(scheduler)
cli.add_command(queue_group)
cli.add_command(task_group)
cli.add_command(stats)
cli.add_command(server_group)
cli.add_command(cron_group)
cli.add_command(group_group)


def main() -> None:
    """Run the CLI (the ``asyncq`` console script)."""
    cli()
