"""Coalescing: calls made at the same moment share one round trip to Redis.

When nothing is on its way and calls come one at a time (the last send carried a single
call), a call goes out at once, from the caller's own task: light traffic waits for
nothing. Otherwise calls form a group, sent at the end of the current turn of the loop,
so every call made in that turn joins it. Up to two groups (or lone calls) are in flight
at once, so Redis stores one while this side handles the other's replies; calls that
arrive while both are out wait, and go together as soon as one returns.

Under load the two groups should be about the same size: then each side works while the
other does. So when enough calls are out or waiting, a group takes half of them (the rest
follow as soon as there is room); and the first call after a group came back does not go
alone, which would leave all the others in one big group (measured: 32 callers settled
into groups of 1 and 31, with this side idle a tenth of the time; halves of 16 gave a
third more calls per second). Every group costs a send, a reply and a task on this side,
though, so halves are at least ``smallest_half`` calls, or half that many when fewer
callers are about: 20 callers go as two groups of 10 (as one group of 20, with the
second send idle, they were slower: see docs/performance.md), but 32 callers no longer
settle into groups of 8, twice the sends for the same calls. (Callers that come back
spread over several turns still send smaller groups now and then, as before.)

Groups are sent from tasks of their own, so a caller that is cancelled (a web request
that timed out, say) takes nobody else's call down with it; its own item may still be
written, as with any call whose reply it did not wait for.

``flush`` is told when the oldest call of its group was made (``time.monotonic()``), so
that a call's time limit counts from the call, not from when its group left: calls that
waited while two groups were stuck on a failing node must not wait a whole limit more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
# Each waiting call: its item, its caller's future, and when it was made.
Waiting = list[tuple[ItemT, "asyncio.Future[ResultT]", float]]
Flush = Callable[[list[ItemT], float], Awaitable[list[ResultT]]]


class Coalescer(Generic[ItemT, ResultT]):
    """Feeds ``flush`` with groups of items and hands each caller its own result.

    ``flush(items, since)`` must return one result per item, in order; ``since`` is the
    monotonic time the oldest of them was submitted. If it raises, every caller of that
    group gets the error (and may try again on its own).
    """

    def __init__(
        self,
        flush: Flush[ItemT, ResultT],
        max_group: int = 512,
        max_in_flight: int = 2,
        smallest_half: int = 16,
    ) -> None:
        if min(max_group, max_in_flight, smallest_half) < 1:
            raise ValueError("max_group, max_in_flight and smallest_half must be at least 1")
        self._flush = flush
        self._max_group = max_group
        self._max_in_flight = max_in_flight
        self._smallest_half = smallest_half
        # Calls carried by the last send: 1 says traffic is light (a rough sign only).
        self._last_send_size = 1
        self._waiting: Waiting[ItemT, ResultT] = []
        self._in_flight = 0  # sends on their way (lone calls and groups)
        self._calls_out = 0  # calls those sends carry
        self._load = self._last_about = 0  # calls about at recent returns (see _returned)
        self._forming = False  # a group goes out at the end of this turn of the loop
        self._senders: set[asyncio.Task[None]] = set()

    def submit(self, item: ItemT) -> Awaitable[ResultT]:
        """Send ``item`` now if nothing is out and traffic is light, else with whatever
        else is waiting; await what this returns, at once, for the item's result. (A lone
        call counts as on its way from this moment: an awaitable dropped unawaited would
        hold its place for good.)"""
        if self._in_flight == 0 and not self._forming and self._last_send_size == 1:
            self._in_flight += 1  # counted now, so calls later in this turn form a group
            self._calls_out += 1
            return self._alone(item)
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future, time.monotonic()))
        if not self._forming and self._in_flight < self._max_in_flight:
            self._start_group()
        return future

    async def _alone(self, item: ItemT) -> ResultT:
        try:
            (result,) = await self._flush([item], time.monotonic())
            return result
        finally:
            self._returned(1)

    def _start_group(self) -> None:
        """Start the sender of the next group. Its first step runs at the end of this turn
        of the loop, and takes every item that has arrived by then."""
        self._forming = True
        self._in_flight += 1  # its place is taken now; its calls are counted when it goes
        sender = asyncio.get_running_loop().create_task(self._send())
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)

    async def _send(self) -> None:
        self._forming = False
        group = self._waiting[: self._group_limit()]
        del self._waiting[: len(group)]
        self._calls_out += len(group)
        self._last_send_size = len(group)
        if self._waiting and self._in_flight < self._max_in_flight:
            self._start_group()  # more than one group's worth arrived in this turn
        try:
            results = await self._flush([item for item, _, _ in group], group[0][2])
            if len(results) != len(group):
                raise RuntimeError(f"flush gave {len(results)} results for {len(group)} items")
        except BaseException as error:
            # Handed to every caller of the group; only cancellation goes further.
            for _, future, _ in group:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        finally:
            self._returned(len(group))
        for (_, future, _), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _group_limit(self) -> int:
        """The most waiting calls the group now leaving may take: half of all calls out or
        waiting, so that the two sends in flight carry about as many each, when that
        makes halves of at least ``smallest_half`` calls, or of half that many when fewer
        callers are about; otherwise all of them.

        So 32 calls go as 16 and 16, and a lone call out with 31 waiting as 16 now and 15
        when the lone call is back; groups of 11 and 21 become 16 and 16 within a round.
        20 callers go as two groups of 10, not as one group of 20 (the other send idle) or
        in groups of 1 and 19 by turns. Fewer than ``smallest_half`` calls go whole: a
        small burst goes at once, none of it waiting for a send to come back. And 16 calls
        waiting with nothing out, when twice ``smallest_half`` were about a moment ago, are
        half of a crowd whose other half is on its way back, and go whole: split, 32
        callers settled into groups of 8.
        """
        calls = len(self._waiting) + self._calls_out
        if self._max_in_flight == 1 or calls < self._smallest_half:
            return self._max_group
        crowd = 2 * self._smallest_half
        if calls < crowd and self._calls_out == 0 and self._load >= crowd:
            return self._max_group
        return min((calls + 1) // 2, self._max_group)

    def _returned(self, calls: int) -> None:
        # How many calls were about when this send came back (the most of the last two):
        # the sign of how many callers there are, which the calls waiting now may not show.
        about = self._calls_out + len(self._waiting)
        self._load, self._last_about = max(about, self._last_about), about
        self._in_flight -= 1
        self._calls_out -= calls
        if self._waiting and not self._forming:
            self._start_group()  # what arrived while both were out goes now
