"""Go's text formats that asynq's tools parse: durations, ``time.UnixDate``, option strings.

A scheduler entry stores its enqueue options as Go ``Option.String()`` output
(``Queue("x")``, ``Timeout(1m30s)``, ...); asynq's CLI and web UI parse them back,
so asyncq writes exactly the same text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

__all__ = ["go_duration", "go_option_strings", "go_quote", "go_unix_date", "parse_go_duration"]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def go_duration(seconds: float) -> str:
    """Format like Go's ``time.Duration.String()``: 90 -> "1m30s", 3600 -> "1h0m0s"."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _trim(nanos / size) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _trim(rest / 1e9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim(value: float) -> str:
    # Go prints the fraction with as many digits as needed and no trailing zeros.
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_go_duration(text: str) -> float:
    """Parse a Go duration ("1h30m", "45s", "500ms") into seconds."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty duration")
    position, total = 0, 0.0
    for match in _DURATION.finditer(stripped):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(stripped):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    return total


def go_quote(text: str) -> str:
    """Go's ``%q`` for the plain strings queue and group names are."""
    return json.dumps(text, ensure_ascii=False)


def go_unix_date(moment: datetime) -> str:
    """Go's ``time.UnixDate`` layout (``Mon Jan _2 15:04:05 MST 2006``), in UTC."""
    utc = moment.astimezone(UTC)
    return f"{utc:%a %b} {utc.day:>2} {utc:%H:%M:%S} UTC {utc.year}"


def _seconds(value: object) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    assert isinstance(value, int | float)
    return float(value)


def _date(value: object) -> str:
    assert isinstance(value, datetime)
    return go_unix_date(value)


# asyncq option -> (asynq option name, how Go prints its value), in asynq's own order.
_GO_OPTIONS: list[tuple[str, str, Callable[[object], str]]] = [
    ("queue", "Queue", lambda v: go_quote(str(v))),
    ("max_retry", "MaxRetry", str),
    ("timeout", "Timeout", lambda v: go_duration(_seconds(v))),
    ("deadline", "Deadline", _date),
    ("unique", "Unique", lambda v: go_duration(_seconds(v))),
    ("process_at", "ProcessAt", _date),
    ("process_in", "ProcessIn", lambda v: go_duration(_seconds(v))),
    ("task_id", "TaskID", lambda v: go_quote(str(v))),
    ("retention", "Retention", lambda v: go_duration(_seconds(v))),
    ("group", "Group", lambda v: go_quote(str(v))),
]


def go_option_strings(options: Mapping[str, object]) -> list[str]:
    """asynq's ``Option.String()`` of each enqueue option, in asynq's own order (an option
    given as ``None`` is left out, as enqueueing leaves it out)."""
    return [
        f"{go_name}({render(options[name])})"
        for name, go_name, render in _GO_OPTIONS
        if options.get(name) is not None
    ]
