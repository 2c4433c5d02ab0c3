"""Entry point of the ``asyncq`` command."""

from __future__ import annotations

import click

import asyncq
from asyncq.cli.worker import worker

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """asyncq: run workers and manage queues (wire-compatible with asynq)."""


@cli.command()
def version() -> None:
    """Print the asyncq version."""
    click.echo(f"asyncq {asyncq.__version__}")


cli.add_command(worker)


def main() -> None:
    """Run the CLI (the ``asyncq`` console script)."""
    cli()
