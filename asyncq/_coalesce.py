"""Coalescing: calls made at the same moment share one round trip to Redis.

The first item goes out at once, so a lone call waits for nothing; items that
arrive while a group is in flight go out together as the next group. Under load
the groups grow by themselves, at idle every item travels alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
Waiting = list[tuple[ItemT, "asyncio.Future[ResultT]"]]


class Coalescer(Generic[ItemT, ResultT]):
    """Feeds ``flush`` with groups of items and hands each caller its own result.

    ``flush(items)`` must return one result per item, in order. If it raises, every
    caller of that group gets the error (and may try again on its own).
    """

    def __init__(
        self, flush: Callable[[list[ItemT]], Awaitable[list[ResultT]]], max_group: int = 512
    ) -> None:
        self._flush = flush
        self._max_group = max_group
        self._waiting: Waiting[ItemT, ResultT] = []
        self._in_flight = False
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        """Send ``item`` with whatever else is waiting, and return its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        if self._in_flight:
            self._waiting.append((item, future))
            return await future
        # Nothing in flight: send this item right here, without a detour through a
        # background task, so a lone call costs no extra turn of the event loop.
        self._in_flight = True
        try:
            await self._send([(item, future)])
        finally:
            if self._waiting:
                self._sender = loop.create_task(self._send_waiting())
            else:
                self._in_flight = False
        return future.result()

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                await self._send(group)
        finally:
            self._sender = None
            self._in_flight = False

    async def _send(self, group: Waiting[ItemT, ResultT]) -> None:
        try:
            results = await self._flush([item for item, _ in group])
        except BaseException as error:
            # Handed to every caller of the group; only cancellation goes further.
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)
