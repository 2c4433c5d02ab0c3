"""``asyncq stats``, ``asyncq server ls``, ``asyncq cron ls|history`` and ``asyncq group ls``."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from asyncq.cli.render import (
    ago,
    binary_text,
    duration,
    emit_json,
    error_rate,
    heading,
    inspector_command,
    json_option,
    placeable,
    table,
    timestamp,
    until,
)
from asyncq.errors import QueueNotFoundError
from asyncq.inspector import Inspector, QueueInfo

__all__ = ["cron_group", "group_group", "server_group", "stats"]

STATES = ("active", "pending", "aggregating", "scheduled", "retry", "archived", "completed")
HELP = {"help_option_names": ["-h", "--help"]}


@click.command()
@json_option
@inspector_command
async def stats(inspector: Inspector, as_json: bool) -> None:
    """Show task counts by state and by queue, today's counts, and Redis (or cluster) info."""
    # A task group: if one lookup fails, the others stop before the connection closes.
    async with asyncio.TaskGroup() as group:
        names = placeable(await inspector.queues())
        lookups = [group.create_task(_info(inspector, name)) for name in names]
    infos = [found for lookup in lookups if (found := lookup.result()) is not None]
    by_state = {state: sum(getattr(i, state) for i in infos) for state in STATES}
    processed = sum(i.processed_today for i in infos)
    failed = sum(i.failed_today for i in infos)
    server = await _server_info(inspector)
    if as_json:
        emit_json({
            "states": by_state, "queues": infos,
            "today": {"processed": processed, "failed": failed,
                      "error_rate": failed / processed if processed else None},
            **server,
        })  # fmt: skip
        return
    table(list(STATES), [list(by_state.values())], title="Task Count by State")
    click.echo()
    table(
        ["Queue", "Size", *(s.capitalize() for s in STATES), "Processed", "Failed"],
        [[i.queue + (" (paused)" if i.paused else ""), i.size,
          *(getattr(i, s) for s in STATES), i.processed_today, i.failed_today] for i in infos],
        title="Task Count by Queue",
    )  # fmt: skip
    click.echo()
    day = infos[0].timestamp if infos else None
    table(
        ["processed", "failed", "error rate"],
        [(processed, failed, error_rate(processed, failed))],
        title=f"Daily Stats {day:%Y-%m-%d} UTC" if day else "Daily Stats (UTC)",
    )
    click.echo()
    if "cluster" in server:
        info = server["cluster"]
        table(
            ["State", "Known Nodes", "Cluster Size"],
            [(info["state"], info["known_nodes"], info["size"])],
            title="Redis Cluster Info",
        )
    else:
        info = server["redis"]
        table(
            ["Version", "Uptime", "Connections", "Memory Usage", "Peak Memory Usage"],
            [(info["version"], duration(info["uptime_seconds"]), info["connected_clients"],
              info["used_memory_human"], info["used_memory_peak_human"])],
            title="Redis Info",
        )  # fmt: skip


async def _info(inspector: Inspector, queue: str) -> QueueInfo | None:
    try:
        return await inspector.queue_info(queue)
    except QueueNotFoundError:  # deleted since it was listed
        return None


async def _server_info(inspector: Inspector) -> dict[str, dict[str, Any]]:
    connector = inspector.connector
    if connector.is_cluster:
        raw = await connector.call(lambda c: c.execute_command("CLUSTER INFO"))
        if raw and all(isinstance(v, dict) for v in raw.values()):  # keyed by node
            raw = next(iter(raw.values()))
        return {
            "cluster": {
                "state": raw.get("cluster_state", ""),
                "known_nodes": int(raw.get("cluster_known_nodes", 0)),
                "size": int(raw.get("cluster_size", 0)),
            }
        }
    raw = await connector.execute("INFO")
    return {
        "redis": {
            "version": raw.get("redis_version", ""),
            "uptime_seconds": int(raw.get("uptime_in_seconds", 0)),
            "connected_clients": int(raw.get("connected_clients", 0)),
            "used_memory_human": raw.get("used_memory_human", ""),
            "used_memory_peak_human": raw.get("used_memory_peak_human", ""),
        }
    }


@click.group("server", context_settings=HELP)
def server_group() -> None:
    """Look at running servers (workers)."""


@server_group.command("ls")
@json_option
@inspector_command
async def list_servers(inspector: Inspector, as_json: bool) -> None:
    """List running servers (asyncq and asynq) from their heartbeats."""
    servers = await inspector.servers()
    if as_json:
        emit_json(servers)
    elif not servers:
        click.echo("No running servers")
    else:
        table(
            ["Host", "PID", "State", "Active Workers", "Queues", "Started"],
            [(s.host, s.pid, s.status, f"{len(s.active_workers)}/{s.concurrency}",
              _queues(s.queues), ago(s.started)) for s in servers],
        )  # fmt: skip


def _queues(queues: dict[str, int]) -> str:
    ordered = sorted(queues.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name}:{priority}" for name, priority in ordered)


@click.group("cron", context_settings=HELP)
def cron_group() -> None:
    """Look at periodic tasks registered by schedulers."""


@cron_group.command("ls")
@json_option
@inspector_command
async def list_entries(inspector: Inspector, as_json: bool) -> None:
    """List the entries of running schedulers (asyncq and asynq)."""
    entries = await inspector.scheduler_entries()
    if as_json:
        emit_json(entries)
    elif not entries:
        click.echo("No scheduler entries")
    else:
        table(
            ["EntryID", "Spec", "Type", "Payload", "Options", "Next", "Prev"],
            [(e.id, e.spec, e.task_type, binary_text(e.payload), ", ".join(e.options),
              until(e.next_enqueue), ago(e.prev_enqueue)) for e in entries],
        )  # fmt: skip


@cron_group.command("history")
@click.argument("entry_ids", nargs=-1, required=True, metavar="ENTRY_ID...")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--size", type=click.IntRange(min=1), default=30, show_default=True)
@json_option
@inspector_command
async def entry_history(
    inspector: Inspector, entry_ids: tuple[str, ...], page: int, size: int, as_json: bool
) -> None:
    """Show the enqueues made by scheduler entries, newest first."""
    events = {e: await inspector.scheduler_history(e, page=page, size=size) for e in entry_ids}
    if as_json:
        emit_json(events)
        return
    for index, (entry_id, history) in enumerate(events.items()):
        if index:
            click.echo()
        heading(f"Entry: {entry_id}")
        if not history:
            click.echo("No enqueues")
            continue
        table(["TaskID", "EnqueuedAt"], [(e.task_id, timestamp(e.enqueued_at)) for e in history])


@click.group("group", context_settings=HELP)
def group_group() -> None:
    """Look at aggregation groups."""


@group_group.command("ls")
@click.option("-q", "--queue", required=True, help="The queue.")
@json_option
@inspector_command
async def list_groups(inspector: Inspector, queue: str, as_json: bool) -> None:
    """List a queue's aggregation groups and how many tasks wait in each."""
    groups = await inspector.groups(queue)
    if as_json:
        emit_json(groups)
    elif not groups:
        click.echo(f"No groups in queue {queue!r}")
    else:
        table(["Group", "Size"], [(g.group, g.size) for g in groups])
