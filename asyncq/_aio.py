"""Small asyncio helpers shared by the connector, the broker and the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["mark_seen", "raise_if_cancelled", "wait_unless"]


def mark_seen(future: asyncio.Future[Any]) -> None:
    """Mark a done future's error as retrieved, so that a failure nobody awaited (its
    callers gave up, or it ran in the background) is not reported by asyncio as "never
    retrieved". Awaiting it still raises the error. For use as a done-callback."""
    if not future.cancelled():
        future.exception()


def raise_if_cancelled() -> None:
    """End a loop whose task is being cancelled even if the cancellation was swallowed
    on its way: a redis-py call can return, or fail with an error of its own, while its
    task is being cancelled, and a loop that went on (a component's, a retry's) would
    hold its task group, and the program's exit, for good or for a whole deadline."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wait_unless(
    event: asyncio.Event, futures: Iterable[asyncio.Future[Any]], within: float | None = None
) -> None:
    """Wait until one of ``futures`` is done, ``event`` is set (a hurried shutdown, say)
    or ``within`` seconds pass; cancels nothing of ``futures``."""
    if event.is_set():
        return
    interrupt = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait(
            {*futures, interrupt}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        interrupt.cancel()
