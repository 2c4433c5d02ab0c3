"""``asyncq queue``: list, inspect, pause, resume and delete queues."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from asyncq.cli.render import (
    AliasGroup,
    duration,
    emit_json,
    error_rate,
    fields,
    heading,
    inspector_command,
    json_option,
    placeable,
    printable,
    table,
)
from asyncq.errors import AsyncqError
from asyncq.inspector import ClusterNode, Inspector, QueueInfo

__all__ = ["queue_group"]

T = TypeVar("T")

STATE_COLUMNS = ("active", "pending", "aggregating", "scheduled", "retry", "archived", "completed")


@click.group(
    "queue",
    cls=AliasGroup,
    aliases={"unpause": "resume", "remove": "rm", "delete": "rm"},
    context_settings={"help_option_names": ["-h", "--help"]},
)
def queue_group() -> None:
    """Manage queues."""


@queue_group.command("ls")
@click.option(
    "--cluster", is_flag=True, help="Show each queue's cluster slot and the nodes that hold it."
)
@json_option
@inspector_command
async def list_queues(inspector: Inspector, cluster: bool, as_json: bool) -> None:
    """List the queues (with --cluster: their slot and nodes, master first)."""
    names = await inspector.queues()
    if not cluster:
        if as_json:
            emit_json(names)
        elif names:
            click.echo("\n".join(map(printable, names)))
        return
    if not inspector.connector.is_cluster:
        raise click.ClickException(
            "--cluster needs a Redis Cluster: connect with --cluster-nodes, not --redis-url"
        )
    names = placeable(names)
    # A task group: if one lookup fails, the others stop before the connection closes.
    async with asyncio.TaskGroup() as group:
        lookups = [group.create_task(inspector.cluster_nodes(name)) for name in names]
    nodes = [lookup.result() for lookup in lookups]
    slots = [inspector.cluster_key_slot(name) for name in names]
    if as_json:
        emit_json(
            [
                {"queue": q, "slot": s, "nodes": n}
                for q, s, n in zip(names, slots, nodes, strict=True)
            ]
        )
        return
    table(
        ["Queue", "Cluster KeySlot", "Cluster Nodes"],
        [(q, s, _nodes(n)) for q, s, n in zip(names, slots, nodes, strict=True)],
    )


def _nodes(nodes: list[ClusterNode]) -> str:
    # asynq's documented layout: [{<node id> <host:port>} ...], the master first.
    return "[" + " ".join(f"{{{n.id} {n.address}}}" for n in nodes) + "]"


@queue_group.command("inspect")
@click.argument("queues", nargs=-1, required=True)
@json_option
@inspector_command
async def inspect_queues(inspector: Inspector, queues: tuple[str, ...], as_json: bool) -> None:
    """Show the sizes, state and today's counts of QUEUES."""
    found, failed = await _gathered(queues, inspector.queue_info)
    if as_json:
        emit_json(list(found.values()))
    else:
        for index, info in enumerate(found.values()):
            if index:
                click.echo()
            _print_info(info)
    if failed:
        raise click.exceptions.Exit(1)


def _print_info(info: QueueInfo) -> None:
    heading("Queue Info")
    memory = "unknown" if info.memory_usage is None else f"{info.memory_usage} bytes"
    fields(
        [
            ("Name", info.queue),
            ("Size", info.size),
            ("Groups", info.groups),
            ("Paused", "yes" if info.paused else "no"),
            ("Latency", duration(info.latency)),
            ("Memory Usage", memory),
        ]
    )
    click.echo()
    table(STATE_COLUMNS, [[getattr(info, state) for state in STATE_COLUMNS]],
          title="Task Count by State")  # fmt: skip
    click.echo()
    table(
        ["processed", "failed", "error rate"],
        [(info.processed_today, info.failed_today,
          error_rate(info.processed_today, info.failed_today))],
        title=f"Daily Stats {info.timestamp:%Y-%m-%d} UTC",
    )  # fmt: skip


@queue_group.command("history")
@click.argument("queues", nargs=-1, required=True)
@click.option(
    "-x", "--days", type=click.IntRange(1, 90), default=10, show_default=True,
    help="Number of days, today first.",
)  # fmt: skip
@json_option
@inspector_command
async def queue_history(
    inspector: Inspector, queues: tuple[str, ...], days: int, as_json: bool
) -> None:
    """Show processed and failed counts per UTC day of QUEUES."""
    histories, failed = await _gathered(queues, lambda name: inspector.history(name, days))
    if as_json:
        emit_json(histories)
    else:
        for index, (name, stats) in enumerate(histories.items()):
            if index:
                click.echo()
            heading(f"Queue: {name}")
            table(
                ["Date (UTC)", "Processed", "Failed", "Error Rate"],
                [(d.date, d.processed, d.failed, error_rate(d.processed, d.failed)) for d in stats],
            )
    if failed:
        raise click.exceptions.Exit(1)


async def _gathered(
    names: tuple[str, ...], read: Callable[[str], Awaitable[T]]
) -> tuple[dict[str, T], bool]:
    """``read`` each queue in turn; a queue that fails is named on stderr and the others
    are still shown (as asynq's CLI does). Returns what was read and whether any failed."""
    found: dict[str, T] = {}
    failed = False
    for name in names:
        try:
            found[name] = await read(name)
        except AsyncqError as error:
            click.echo(printable(f"Error: {error}"), err=True)
            failed = True
    return found, failed


async def _each(
    names: tuple[str, ...], action: Callable[[str], Awaitable[None]], done: str
) -> None:
    """Apply ``action`` to every queue; report each failure on one line, exit 1 if any."""

    async def act(name: str) -> None:
        await action(name)
        click.echo(f"{done} queue {name!r}")

    _, failed = await _gathered(names, act)
    if failed:
        raise click.exceptions.Exit(1)


@queue_group.command("pause")
@click.argument("queues", nargs=-1, required=True)
@inspector_command
async def pause_queues(inspector: Inspector, queues: tuple[str, ...]) -> None:
    """Stop workers (asyncq and asynq) from taking tasks from QUEUES."""
    await _each(queues, inspector.pause, "Paused")


@queue_group.command("resume")
@click.argument("queues", nargs=-1, required=True)
@inspector_command
async def resume_queues(inspector: Inspector, queues: tuple[str, ...]) -> None:
    """Let workers take tasks from QUEUES again (alias: unpause)."""
    await _each(queues, inspector.unpause, "Resumed")


@queue_group.command("rm")
@click.argument("queues", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Delete the queues' tasks too.")
@inspector_command
async def remove_queues(inspector: Inspector, queues: tuple[str, ...], force: bool) -> None:
    """Delete QUEUES; refuses a queue with tasks unless --force (aliases: remove, delete).

    A queue with running tasks is never deleted."""

    async def remove(name: str) -> None:
        await inspector.delete_queue(name, force=force)

    await _each(queues, remove, "Deleted")
