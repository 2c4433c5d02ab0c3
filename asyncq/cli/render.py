"""Shared pieces of the inspection commands: running them against Redis, and their output.

Each command runs one coroutine with an ``Inspector`` (see ``inspector_command``); an
``AsyncqError`` or a Redis error becomes one ``Error: ...`` line and exit status 1.

On a terminal, tables are drawn with rich. Anywhere else (a pipe, a file, a test) the
output is plain text without colours, in asynq's layout: a header line, a line of dashes
under each header, then one line per row with columns padded by two spaces. Either way,
what Redis holds is shown as text, never obeyed: control characters (a terminal's escape
sequences among them) are printed as ``\\x1b`` escapes, and rich reads no markup in it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import enum
import functools
import json
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from redis.exceptions import AskError, MovedError, RedisError

from asyncq._broker.keys import validate_queue_name
from asyncq.cli.options import connection_options, make_connector
from asyncq.errors import AsyncqError, InvalidQueueNameError
from asyncq.inspector import Inspector

__all__ = [
    "CLI_RETRY_DEADLINE",
    "AliasGroup",
    "ago",
    "binary_text",
    "duration",
    "emit_json",
    "error_rate",
    "fields",
    "heading",
    "inspector_command",
    "json_option",
    "jsonable",
    "placeable",
    "printable",
    "run",
    "table",
    "timestamp",
    "until",
]


T = TypeVar("T")

# Seconds a command keeps retrying an unreachable Redis before it gives up: a command
# line should fail fast (a worker waits longer, since it runs unattended).
CLI_RETRY_DEADLINE = 3.0


def run(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``coro()`` with ``asyncio.run``; asyncq and Redis errors become one-line errors,
    also when they come out of a task group (a command that looks at queues side by side)."""
    try:
        return asyncio.run(coro())
    except Exception as error:
        message = _one_line(_first_of(error))
        if message is None:
            raise
        raise click.ClickException(printable(message)) from None


def _first_of(error: Exception) -> Exception:
    """The first error inside a task group's (nested) group, or the error itself."""
    while isinstance(error, ExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _one_line(error: Exception) -> str | None:
    """What the CLI says about an asyncq or Redis error; None for any other error."""
    if isinstance(error, AsyncqError):
        return str(error)
    if isinstance(error, MovedError | AskError):
        return (
            f"this Redis is a cluster node (it answered {type(error).__name__}: {error}); "
            "connect with --cluster-nodes instead of --redis-url"
        )
    if isinstance(error, RedisError):
        return f"Redis answered: {type(error).__name__}: {error}"
    return None


def inspector_command(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Turn ``async def fn(inspector, **options)`` into a click callback with the connection
    options; apply it closest to the function, below the command's own options."""

    @functools.wraps(fn)
    def command(
        cluster_nodes: str | None,
        redis_url: str | None,
        username: str | None,
        password: str | None,
        tls: bool,
        tls_ca_certs: str | None,
        **options: Any,
    ) -> None:
        async def main() -> None:
            connector = make_connector(
                cluster_nodes, redis_url, username, password, tls, tls_ca_certs,
                retry_deadline=CLI_RETRY_DEADLINE,
            )  # fmt: skip
            async with Inspector(connector) as inspector:
                await fn(inspector, **options)

        run(main)

    return connection_options(command)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: print machine-readable JSON instead of tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


class AliasGroup(click.Group):
    """A group whose commands also answer to other names (``rm`` for ``remove``)."""

    def __init__(self, *args: Any, aliases: Mapping[str, str] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.aliases = dict(aliases or {})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))


def _rich() -> bool:
    return sys.stdout.isatty()


# C0 and C1 control characters, and DEL: a terminal may act on them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with each control character written as an escape (``\\x1b``): task data,
    error messages and names come from whoever wrote to Redis, and an escape sequence in
    them must not recolour, move or retitle the user's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _cell(value: object) -> str:
    # One row per line: a multi-line error message is folded into one line.
    return printable(" ".join(str(value).split("\n"))) if value is not None else ""


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], title: str = "") -> None:
    """Print a table: rich on a terminal, asynq's plain layout otherwise."""
    cells = [[_cell(v) for v in row] for row in rows]
    if _rich():
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        # Text, not str: rich would read "[admin]" in a cell as a style (and drop it), and
        # fail on "[/]".
        drawn = Table(
            title=Text(printable(title)) if title else None, box=box.SIMPLE_HEAD,
            title_justify="left",
        )  # fmt: skip
        for column in columns:
            drawn.add_column(column, min_width=len(column))
        for row in cells:
            drawn.add_row(*map(Text, row))
        Console(highlight=False).print(drawn)
        return
    if title:
        click.echo(printable(title))
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [list(columns), ["-" * len(c) for c in columns], *cells]:
        padded = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=False)]
        click.echo("  ".join([*padded, line[-1]]))


def heading(text: str) -> None:
    """A section title (bold on a terminal)."""
    text = printable(text)
    click.echo(click.style(text, bold=True) if _rich() else text)


def fields(pairs: Sequence[tuple[str, object]]) -> None:
    """``Name:  value`` lines, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0) + 1
    for name, value in pairs:
        label = f"{name}:".ljust(width)
        click.echo(f"{click.style(label, bold=True) if _rich() else label}  {_cell(value)}")


# -- JSON ---------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: datetimes as ISO 8601 UTC, durations as seconds, bytes as
    UTF-8 text when decodable, else ``{"base64": "..."}``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


# -- value formats --------------------------------------------------------------------------


def binary_text(data: bytes | None) -> str:
    """A payload or result for a table: its text, or a note when it is not UTF-8."""
    if not data:
        return ""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, not UTF-8>"
    return text if text.isprintable() else repr(text)[1:-1]


def duration(value: timedelta | float | None) -> str:
    """Go-style duration rounded to the second, with days: ``2d1h2m3s``, ``45s``, ``0s``."""
    if value is None:
        return ""
    seconds = round(value.total_seconds() if isinstance(value, timedelta) else value)
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{days}d" if days else ""
    text += f"{hours}h" if days or hours else ""
    text += f"{minutes}m" if days or hours or minutes else ""
    return f"{sign}{text}{secs}s"


def _now() -> datetime:
    return datetime.now(UTC)


def timestamp(value: datetime | None) -> str:
    """``2025-01-31 12:00:00 UTC``, or empty (the year has four digits, as in Go: the
    earliest time an Inspector reads is ``0001-01-01 00:00:00 UTC``)."""
    if not value:
        return ""
    value = value.astimezone(UTC)
    return f"{value.year:04d}-{value:%m-%d %H:%M:%S} UTC"


def ago(value: datetime | None) -> str:
    """``3m5s ago``, or ``N/A`` for never."""
    return f"{duration(_now() - value)} ago" if value else "N/A"


def until(value: datetime | None) -> str:
    """``in 3m5s``, ``now`` when due, or empty."""
    if value is None:
        return ""
    left = value - _now()
    return "now" if left.total_seconds() < 0.5 else f"in {duration(left)}"


def error_rate(processed: int, failed: int) -> str:
    """Failed over processed as a percentage, ``N/A`` when nothing was processed."""
    return f"{failed / processed * 100:.2f}%" if processed else "N/A"


def placeable(queues: Iterable[str]) -> list[str]:
    """The queue names asyncq can place in a slot. A name asynq accepts and asyncq does
    not (braces, say) is named on stderr and left out, rather than failing the command."""
    kept = []
    for queue in queues:
        try:
            kept.append(validate_queue_name(queue))
        except InvalidQueueNameError as error:
            click.echo(f"skipped queue {queue!r}: {error}", err=True)
    return kept
