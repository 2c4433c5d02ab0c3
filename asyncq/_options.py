"""Enqueue options: checked and turned into stored values before anything is written.

Defaults and meanings are asynq's (``client.go``): queue ``default``, 25 retries,
a 30-minute timeout when neither timeout nor deadline is given, and so on. Every
check raises ``InvalidOptionError`` with what to do instead.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from asyncq._broker.keys import validate_queue_name
from asyncq.errors import InvalidOptionError

__all__ = [
    "DEFAULT_MAX_RETRY",
    "DEFAULT_TIMEOUT",
    "MAX_RETRY",
    "EnqueueOptions",
    "ResolvedOptions",
    "new_task_id",
    "new_task_ids",
    "resolve",
]

DEFAULT_QUEUE = "default"
DEFAULT_MAX_RETRY = 25
MAX_RETRY = 2**31 - 1  # the message's retry field is an int32
DEFAULT_TIMEOUT = 1800  # seconds; asynq's default when neither timeout nor deadline is set

Duration = timedelta | int | float
MAX_DURATION = 100 * 365 * 86400  # seconds; longer values are mistakes, and break date maths


class EnqueueOptions(TypedDict, total=False):
    """The keyword options of ``Client.enqueue``; durations are ``timedelta`` or seconds.
    ``None`` is the same as leaving an option out (its default)."""

    queue: str | None
    max_retry: int | None
    timeout: Duration | None
    deadline: datetime | None
    unique: Duration | None
    process_at: datetime | None
    process_in: Duration | None
    task_id: str | None
    retention: Duration | None
    group: str | None


_OPTION_NAMES = tuple(EnqueueOptions.__annotations__)


@dataclass(frozen=True, slots=True)
class ResolvedOptions:
    """Options after checking, in the units asynq stores (whole seconds)."""

    queue: str
    task_id: str
    generated_id: bool
    max_retry: int
    timeout: int
    deadline: int
    unique_ttl: int
    process_at: float | None
    retention: int
    group: str


# A UUID4's byte 6 starts with the version, 4 (0100 in binary), and its byte 8 with the
# variant, 10 in binary; the other 122 bits are random. These tables set those bits.
_VERSION_4 = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_VARIANT_10 = bytes((byte & 0x3F) | 0x80 for byte in range(256))

# Ids made ahead, 256 from one read of the system's randomness instead of one read each
# (a read is a system call, and an enqueue needs a fresh id every time). A forked child
# starts with none, so it never hands out an id its parent also holds. list.pop and
# list.extend are atomic, so threads never share an id either.
_ID_BATCH = 256
# A UUID's text: 36 characters, the 32 hex digits in groups of 8-4-4-4-12 between dashes.
_UUID_LENGTH = 36
_DIGIT_PLACES = [d + (d >= 8) + (d >= 12) + (d >= 16) + (d >= 20) for d in range(32)]
_ready_ids: list[str] = []
if hasattr(os, "register_at_fork"):  # absent where processes are never forked (Windows)
    os.register_at_fork(after_in_child=_ready_ids.clear)


def new_task_id() -> str:
    """A random UUID4 in its usual text form (asynq's default task id), made quickly."""
    while True:
        try:
            return _ready_ids.pop()
        except IndexError:
            # Another thread may empty the list between this refill and the pop (without
            # the GIL they truly run at once): then refill again.
            _ready_ids.extend(new_task_ids(_ID_BATCH))


def new_task_ids(count: int) -> list[str]:
    """``count`` random UUID4s in text form, from one read of the system's randomness.

    The hex digits of all ids are moved into their text places by 32 strided copies for
    the whole batch (each a loop in C), rather than five slices and a format per id:
    about a third of the time per id in batches of 256.
    """
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_10)
    digits = raw.hex().encode()
    text = bytearray(b"-" * (_UUID_LENGTH * count))
    for digit, place in enumerate(_DIGIT_PLACES):
        text[place::_UUID_LENGTH] = digits[digit::32]
    joined = text.decode()
    return [joined[i : i + _UUID_LENGTH] for i in range(0, _UUID_LENGTH * count, _UUID_LENGTH)]


def _seconds(name: str, value: object, *, minimum: float, longest: float = MAX_DURATION) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidOptionError(
            f"{name} must be a timedelta or a number of seconds, got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < minimum:
        raise InvalidOptionError(f"{name} must be at least {minimum:g} second(s), got {seconds:g}")
    if seconds > longest:
        raise InvalidOptionError(f"{name} must be at most 100 years, got {seconds:g} seconds")
    return seconds


def _aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidOptionError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidOptionError(
            f"{name} is a naive datetime; give it a timezone, e.g. datetime.now(timezone.utc) "
            "or dt.replace(tzinfo=timezone.utc), so it cannot be misread"
        )
    return value


def _name(label: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidOptionError(f"{label} must be a non-blank str, got {value!r}")
    return value


def check_names(options: Mapping[str, object]) -> None:
    """Refuse option names ``enqueue`` does not know, suggesting the closest one."""
    for key in options:
        if key not in _OPTION_NAMES:
            close = difflib.get_close_matches(key, _OPTION_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidOptionError(
                f"unknown enqueue option {key!r}{hint} (known: {', '.join(_OPTION_NAMES)})"
            )


def resolve(options: Mapping[str, object], now: float) -> ResolvedOptions:
    """Check ``options`` and compute the stored values, with ``now`` in Unix seconds. An
    option given as ``None`` takes its default, as if it were left out: code that passes
    its own optional values through (``deadline=job.deadline``) needs no branches."""
    check_names(options)
    if None in options.values():
        options = {name: value for name, value in options.items() if value is not None}
    queue = validate_queue_name(options.get("queue", DEFAULT_QUEUE))

    max_retry = options.get("max_retry", DEFAULT_MAX_RETRY)
    if not isinstance(max_retry, int) or isinstance(max_retry, bool) or max_retry < 0:
        raise InvalidOptionError(f"max_retry must be a whole number >= 0, got {max_retry!r}")
    if max_retry > MAX_RETRY:
        raise InvalidOptionError(
            f"max_retry must be at most {MAX_RETRY} (it is stored as a 32-bit number), "
            f"got {max_retry!r}"
        )

    if "process_at" in options and "process_in" in options:
        raise InvalidOptionError("give process_at or process_in, not both")
    process_at: float | None = None
    if "process_at" in options:
        process_at = _aware("process_at", options["process_at"]).timestamp()
    elif "process_in" in options:
        process_at = now + _seconds("process_in", options["process_in"], minimum=0)

    timeout = 0
    if "timeout" in options:
        # Stored in whole seconds: a shorter timeout would be stored as "none".
        timeout = int(_seconds("timeout", options["timeout"], minimum=1, longest=math.inf))
        if timeout > MAX_DURATION:
            raise InvalidOptionError("timeout must be at most 100 years; use deadline= instead")
    deadline = 0
    if "deadline" in options:
        deadline = int(_aware("deadline", options["deadline"]).timestamp())
        if deadline <= 0:
            raise InvalidOptionError("deadline must be after 1970-01-01")
    if not timeout and not deadline:
        timeout = DEFAULT_TIMEOUT

    unique_ttl = 0
    if "unique" in options:
        unique = _seconds("unique", options["unique"], minimum=1)
        # asynq: a scheduled unique task holds its lock until process time + TTL.
        start = process_at if process_at is not None and process_at > now else now
        unique_ttl = max(int(start + unique - now), 1)

    retention = int(_seconds("retention", options.get("retention", 0), minimum=0))
    if retention == 0 and options.get("retention"):
        # Stored in whole seconds: a shorter retention would be stored as "none".
        raise InvalidOptionError("retention must be 0 (none) or at least 1 second")
    group = _name("group", options["group"]) if "group" in options else ""

    if "task_id" in options:
        task_id, generated = _name("task_id", options["task_id"]), False
    else:
        task_id, generated = new_task_id(), True

    return ResolvedOptions(
        queue=queue,
        task_id=task_id,
        generated_id=generated,
        max_retry=max_retry,
        timeout=timeout,
        deadline=deadline,
        unique_ttl=unique_ttl,
        process_at=process_at,
        retention=retention,
        group=group,
    )
