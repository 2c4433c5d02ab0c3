"""Coalescing: calls made at the same moment share one round trip to Redis.

A call that finds no group forming starts one: the group is sent at the end of the
current turn of the event loop, so every call made in that turn joins it. Up to two
groups are in flight at once, so Redis stores one while this side handles the other's
replies; calls that arrive while both are out wait, and go together as soon as one
returns. At idle a call travels alone, a turn of the loop later; under load the groups
grow by themselves, with half as many round trips as one group in flight would need
(each send that wakes a sleeping Redis is costly on a virtual machine).

Groups are sent from tasks of their own, so a caller that is cancelled (a web request
that timed out, say) takes nobody else's call down with it; its own item may still be
written, as with any call whose reply it did not wait for.
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
        self,
        flush: Callable[[list[ItemT]], Awaitable[list[ResultT]]],
        max_group: int = 512,
        max_in_flight: int = 2,
    ) -> None:
        self._flush = flush
        self._max_group = max_group
        self._max_in_flight = max_in_flight
        self._waiting: Waiting[ItemT, ResultT] = []
        self._in_flight = 0
        self._forming = False  # a group goes out at the end of this turn of the loop
        self._senders: set[asyncio.Task[None]] = set()

    async def submit(self, item: ItemT) -> ResultT:
        """Send ``item`` with whatever else is waiting, and return its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        self._waiting.append((item, future))
        if not self._forming and self._in_flight < self._max_in_flight:
            self._forming = True
            loop.call_soon(self._send_group)
        return await future

    def _send_group(self) -> None:
        """Send up to ``max_group`` waiting items, if a group may go now."""
        self._forming = False
        if not self._waiting or self._in_flight >= self._max_in_flight:
            return  # sent already, or a returning group will send them
        group = self._waiting[: self._max_group]
        del self._waiting[: self._max_group]
        self._in_flight += 1  # counted now: the task starts a turn later
        sender = asyncio.get_running_loop().create_task(self._send(group))
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)

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
        finally:
            self._in_flight -= 1
            if not self._forming:
                self._send_group()  # what arrived while both groups were out goes now
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)
