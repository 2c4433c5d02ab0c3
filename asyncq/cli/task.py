"""``asyncq task``: list, inspect, run, archive, delete, cancel and enqueue tasks."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Any, cast

import click

from asyncq._options import MAX_RETRY, EnqueueOptions
from asyncq.cli.render import (
    AliasGroup,
    binary_text,
    duration,
    emit_json,
    fields,
    inspector_command,
    json_option,
    table,
    timestamp,
    until,
)
from asyncq.client import Client
from asyncq.inspector import STATES, Inspector
from asyncq.task import Task, TaskInfo

__all__ = ["task_group"]


@click.group(
    "task",
    cls=AliasGroup,
    aliases={"rm": "delete", "remove": "delete"},
    context_settings={"help_option_names": ["-h", "--help"]},
)
def task_group() -> None:
    """Manage tasks."""


def queue_option(fn: click.decorators.FC) -> click.decorators.FC:
    return click.option("-q", "--queue", required=True, help="The queue of the task(s).")(fn)


def id_option(fn: click.decorators.FC) -> click.decorators.FC:
    return click.option("-i", "--id", "task_id", required=True, help="The task's id.")(fn)


def group_option(fn: click.decorators.FC) -> click.decorators.FC:
    return click.option("-g", "--group", default="", help="The group (aggregating tasks).")(fn)


def _need_group(state: str, group: str) -> None:
    if state == "aggregating" and not group:
        raise click.UsageError("--state aggregating needs --group (see: asyncq group ls)")


COLUMNS = {
    "pending": [],
    "active": ["Lease Expired"],
    "scheduled": ["Process In"],
    "retry": ["Next Retry", "Last Error", "Last Failed", "Retried", "Max Retry"],
    "archived": ["Last Failed", "Last Error"],
    "completed": ["Completed At", "Result"],
    "aggregating": ["Group"],
}


def _row(state: str, t: TaskInfo) -> list[object]:
    extra: dict[str, list[object]] = {
        "pending": [],
        "active": ["yes" if t.is_orphaned else "no"],
        "scheduled": [until(t.next_process_at)],
        "retry": [until(t.next_process_at), t.last_error, timestamp(t.last_failed_at),
                  t.retried, t.max_retry],
        "archived": [timestamp(t.last_failed_at), t.last_error],
        "completed": [timestamp(t.completed_at), binary_text(t.result)],
        "aggregating": [t.group],
    }  # fmt: skip
    return [t.id, t.type, binary_text(t.payload), *extra[state]]


@task_group.command("ls")
@queue_option
@click.option("-s", "--state", required=True, type=click.Choice(STATES))
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--size", type=click.IntRange(min=1), default=30, show_default=True,
              help="Tasks per page.")  # fmt: skip
@group_option
@json_option
@inspector_command
async def list_tasks(
    inspector: Inspector, queue: str, state: str, page: int, size: int, group: str, as_json: bool
) -> None:
    """List one page of a queue's tasks in a state, oldest first."""
    _need_group(state, group)
    tasks = await inspector.list_tasks(queue, state, page=page, size=size, group=group)
    if as_json:
        emit_json(tasks)
    elif not tasks:
        click.echo(
            f"No {state} tasks in queue {queue!r}" + (f" on page {page}" if page > 1 else "")
        )
    else:
        table(["ID", "Type", "Payload", *COLUMNS[state]], [_row(state, t) for t in tasks])


@task_group.command("inspect")
@queue_option
@id_option
@json_option
@inspector_command
async def inspect_task(inspector: Inspector, queue: str, task_id: str, as_json: bool) -> None:
    """Show everything stored about one task."""
    t = await inspector.task_info(queue, task_id)
    if as_json:
        emit_json(t)
        return
    headers = ", ".join(f"{k}={v}" for k, v in sorted(t.headers.items()))
    rows: list[tuple[str, object]] = [
        ("Queue", t.queue), ("ID", t.id), ("Type", t.type), ("State", t.state.value),
        ("Group", t.group), ("Retried", f"{t.retried}/{t.max_retry}"),
        ("Next Process At", timestamp(t.next_process_at)), ("Timeout", duration(t.timeout)),
        ("Deadline", timestamp(t.deadline)),
        ("Retention", duration(t.retention) if t.retention else ""),
        ("Last Failed", timestamp(t.last_failed_at)), ("Last Error", t.last_error),
        ("Completed At", timestamp(t.completed_at)), ("Headers", headers),
        ("Payload", binary_text(t.payload)), ("Result", binary_text(t.result)),
    ]  # fmt: skip
    if t.state.value == "active":
        rows.insert(4, ("Lease Expired", "yes" if t.is_orphaned else "no"))
    fields([(name, value) for name, value in rows if value not in ("", None)])


@task_group.command("run")
@queue_option
@id_option
@inspector_command
async def run_task(inspector: Inspector, queue: str, task_id: str) -> None:
    """Make a waiting task (scheduled, retry, archived, completed, aggregating) pending."""
    await inspector.run_task(queue, task_id)
    click.echo(f"Task {task_id} is now pending")


@task_group.command("archive")
@queue_option
@id_option
@inspector_command
async def archive_task(inspector: Inspector, queue: str, task_id: str) -> None:
    """Archive a task that waits (pending, scheduled, retry, aggregating)."""
    await inspector.archive_task(queue, task_id)
    click.echo(f"Task {task_id} is now archived")


@task_group.command("delete")
@queue_option
@id_option
@inspector_command
async def delete_task(inspector: Inspector, queue: str, task_id: str) -> None:
    """Delete a task that is not running (aliases: rm, remove)."""
    await inspector.delete_task(queue, task_id)
    click.echo(f"Task {task_id} is deleted")


@task_group.command("cancel")
@click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
@inspector_command
async def cancel_tasks(inspector: Inspector, task_ids: tuple[str, ...]) -> None:
    """Ask the workers running these tasks to cancel them (best effort, like asynq).

    A cancelled task fails with TaskCanceledError and is retried as usual."""
    for task_id in task_ids:
        await inspector.cancel(task_id)
        click.echo(f"Sent a cancel request for task {task_id}")


@task_group.command("runall")
@queue_option
@click.option("-s", "--state", required=True,
              type=click.Choice(["scheduled", "retry", "archived", "aggregating"]))  # fmt: skip
@group_option
@inspector_command
async def run_all(inspector: Inspector, queue: str, state: str, group: str) -> None:
    """Make every task in a state pending."""
    _need_group(state, group)
    count = await inspector.run_all(queue, state, group=group)
    click.echo(f"{count} {state} task(s) are now pending")


@task_group.command("archiveall")
@queue_option
@click.option("-s", "--state", required=True,
              type=click.Choice(["pending", "scheduled", "retry", "aggregating"]))  # fmt: skip
@group_option
@inspector_command
async def archive_all(inspector: Inspector, queue: str, state: str, group: str) -> None:
    """Archive every task in a state."""
    _need_group(state, group)
    count = await inspector.archive_all(queue, state, group=group)
    click.echo(f"{count} {state} task(s) are now archived")


@task_group.command("deleteall")
@queue_option
@click.option(
    "-s", "--state", required=True,
    type=click.Choice(["pending", "scheduled", "retry", "archived", "completed", "aggregating"]),
)  # fmt: skip
@group_option
@inspector_command
async def delete_all(inspector: Inspector, queue: str, state: str, group: str) -> None:
    """Delete every task in a state."""
    _need_group(state, group)
    count = await inspector.delete_all(queue, state, group=group)
    click.echo(f"{count} {state} task(s) are deleted")


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic since click 8.2
    """Seconds (``90``, ``2.5``) or a Go-style duration (``90s``, ``5m``, ``1h30m``, ``500ms``)."""

    name = "duration"
    _PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            if not text or self._PART.sub("", text):
                self.fail(f"{value!r} is not a duration: give seconds or e.g. 90s, 5m, 1h30m")
            scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
            seconds = sum(float(n) * scale[unit] for n, unit in self._PART.findall(text))
        if not math.isfinite(seconds) or seconds < 0:
            self.fail(f"{value!r} is not a duration of zero seconds or more")
        try:
            return timedelta(seconds=seconds)
        except OverflowError:
            self.fail(f"{value!r} is too long a duration")


class Rfc3339(click.ParamType):  # type: ignore[type-arg]
    """A time with a zone, RFC 3339: ``2030-01-31T09:00:00Z`` or ``...+02:00``."""

    name = "rfc3339"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            when = datetime.fromisoformat(str(value).strip().upper())
        except ValueError:
            self.fail(f"{value!r} is not an RFC 3339 time such as 2030-01-31T09:00:00Z")
        if when.tzinfo is None:
            self.fail(f"{value!r} has no time zone; end it with Z or an offset such as +02:00")
        return when


def _json_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            json.loads(value)
        except ValueError as error:
            raise click.BadParameter(f"not JSON: {error}") from None
    return value


@task_group.command("enqueue")
@click.option("-t", "--type", "task_type", required=True, help="The task type.")
@click.option("-l", "--payload", callback=_json_text, help="The payload, JSON text (stored as is).")
@click.option("-q", "--queue", default="default", show_default=True)
@click.option("-i", "--id", "task_id", help="The task id [default: a new UUID].")
@click.option(
    "-r", "--retry", type=click.IntRange(min=0, max=MAX_RETRY), help="Max retries [default: 25]."
)
@click.option(
    "--timeout", "handler_timeout", type=Duration(), help="Time the handler may run [default: 30m]."
)
@click.option("--deadline", type=Rfc3339(), help="Time by which the handler must finish.")
@click.option("--unique", type=Duration(), help="Refuse duplicates for this long.")
@click.option("--process-at", type=Rfc3339(), help="Run at this time.")
@click.option("--process-in", type=Duration(), help="Run after this delay.")
@click.option("--retention", type=Duration(), help="Keep the task as completed this long.")
@click.option("-g", "--group", help="Aggregation group.")
@json_option
@inspector_command
async def enqueue_task(
    inspector: Inspector, task_type: str, payload: str | None, queue: str, task_id: str | None,
    retry: int | None, handler_timeout: timedelta | None, deadline: datetime | None,
    unique: timedelta | None, process_at: datetime | None, process_in: timedelta | None,
    retention: timedelta | None, group: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Enqueue a task; durations are seconds or like 90s, 5m, 1h30m, times RFC 3339."""
    given = {"task_id": task_id, "max_retry": retry, "timeout": handler_timeout,
             "deadline": deadline, "unique": unique, "process_at": process_at,
             "process_in": process_in, "retention": retention, "group": group}  # fmt: skip
    options = {"queue": queue, **{k: v for k, v in given.items() if v is not None}}
    try:
        task = Task.from_bytes(task_type, None if payload is None else payload.encode())
    except ValueError as error:  # a blank type, say
        raise click.BadParameter(str(error), param_hint="'-t' / '--type'") from None
    async with Client(inspector.connector) as client:
        info = await client.enqueue(task, **cast(EnqueueOptions, options))
    if as_json:
        emit_json(info)
    else:
        click.echo(f"Enqueued task {info.id} in queue {info.queue!r}: {info.state.value}")
