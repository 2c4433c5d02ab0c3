"""The line protocol children use to talk back to the orchestrator on stdout.

Each event is one line: ``@@bench {json}``. Anything else a library prints is ignored,
so library logs cannot be mistaken for results. Standard library only.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

PREFIX = "@@bench "


def emit(event: str, **data: Any) -> None:
    """Write one event line and flush it at once (the orchestrator reads it live)."""
    sys.stdout.write(PREFIX + json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def parse(line: str) -> dict[str, Any] | None:
    """Return the event in ``line``, or ``None`` for a line that is not an event."""
    if not line.startswith(PREFIX):
        return None
    try:
        event = json.loads(line[len(PREFIX) :])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def run_child(main: Callable[[], Coroutine[Any, Any, None]], loop: str = "asyncio") -> int:
    """Run a child's coroutine on ``loop`` ("asyncio" or "uvloop"); report any failure as
    an ``error`` event; return the exit code."""
    try:
        run_on(loop, main())
    except BaseException as error:  # the orchestrator must learn about every failure
        trace = traceback.format_exc()
        sys.stderr.write(trace)  # the child's log file keeps the whole story
        emit("error", error=f"{type(error).__name__}: {error}", traceback=trace)
        return 1
    return 0


def run_on(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run(main)`` on the standard event loop, or on uvloop's."""
    if loop == "uvloop":
        import uvloop  # only the uvloop runs need it installed

        uvloop.run(main)
    elif loop == "asyncio":
        asyncio.run(main)
    else:
        main.close()
        raise ValueError(f"unknown event loop {loop!r} (asyncio or uvloop)")
