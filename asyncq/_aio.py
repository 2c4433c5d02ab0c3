"""Small asyncio helpers shared by the connector, the broker and the worker."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["mark_seen"]


def mark_seen(future: asyncio.Future[Any]) -> None:
    """Mark a done future's error as retrieved, so that a failure nobody awaited (its
    callers gave up, or it ran in the background) is not reported by asyncio as "never
    retrieved". Awaiting it still raises the error. For use as a done-callback."""
    if not future.cancelled():
        future.exception()
