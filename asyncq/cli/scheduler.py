"""``asyncq scheduler module:attribute``: run a Scheduler (or a PeriodicTaskManager)."""

from __future__ import annotations

import asyncio
import logging

import click

from asyncq.cli.worker import import_target
from asyncq.errors import AsyncqError
from asyncq.scheduler import PeriodicTaskManager, Scheduler

__all__ = ["scheduler"]


@click.command()
@click.argument("target")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def scheduler(target: str, log_level: str) -> None:
    """Run the Scheduler or PeriodicTaskManager TARGET (module:attribute, e.g. app:scheduler)
    until SIGTERM or SIGINT. It connects with the connector it was built with."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runner = import_target(target)
    if not isinstance(runner, Scheduler | PeriodicTaskManager):
        raise click.ClickException(
            f"{target} is of type {type(runner).__name__}, not an asyncq.Scheduler "
            "or asyncq.PeriodicTaskManager"
        )
    try:
        asyncio.run(runner.run())
    except AsyncqError as error:
        raise click.ClickException(str(error)) from None
