"""Waiting on a condition with a deadline, instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 5.0,
    interval: float = 0.01,
    what: str = "condition",
) -> None:
    """Return as soon as ``predicate()`` is true; raise ``AssertionError`` after ``within`` s.

    ``predicate`` may be a plain function or a coroutine function.
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {within:g}s")
        await asyncio.sleep(interval)
