"""The waker: hears that a task was enqueued and wakes the idle dispatcher at once.

asyncq's scripts publish on the sharded channel ``asynq:{<queue>}:wakeup`` (which
lives in the queue's own slot) whenever they put a task into pending. The waker
holds one subscription per node that owns a served queue. Go's asynq publishes
nothing, so the dispatcher still polls every ``task_check_interval``; without
sharded pub/sub (Redis older than 7) the worker falls back to polling alone.

The waker subscribes only while the dispatcher needs it. An idle dispatcher mostly
waits inside Redis (see ``watches``), and then a wake-up is pure cost: the script
publishes before Redis answers the watch, so the message reaches the worker first and
holds up the watch's reply. The dispatcher says when it waits the ordinary way
(``WakeUpDemand.waiting``); the waker subscribes then, wakes the dispatcher once when the
subscription is up (a task may have landed before it), and lets the subscription go
once ``linger`` seconds have passed since such a wait ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from redis.exceptions import ResponseError

from asyncq._broker.rdb import Broker
from asyncq._cluster.router import QueueRouter
from asyncq._worker.listener import Listener

__all__ = ["LINGER", "WakeUpDemand", "Waker"]

# How long a subscription outlives the last ordinary wait: a worker that switches
# between watching and waiting (a paused queue, handlers filling most slots) keeps it.
LINGER = 5.0


class WakeUpDemand:
    """Whether the dispatcher waits on wake-up messages, shared with the waker."""

    def __init__(self) -> None:
        self._needed = asyncio.Event()
        self._waiting = 0
        self._last_wait_end = -float("inf")

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around an ordinary wait of the dispatcher (not in a watch)."""
        self._waiting += 1
        self._needed.set()
        try:
            yield
        finally:
            self._waiting -= 1
            self._last_wait_end = time.monotonic()

    def unneeded_for(self) -> float:
        """Seconds since the last ordinary wait ended (0 during one)."""
        if self._waiting:
            return 0.0
        return time.monotonic() - self._last_wait_end

    async def wait_needed(self) -> None:
        """Return once an ordinary wait has begun since ``consume``."""
        await self._needed.wait()

    def consume(self) -> None:
        """Forget the waits seen so far (the waker is letting its subscription go)."""
        self._needed.clear()


class Waker(Listener):
    """Subscribes to the served queues' wake-up channels while the dispatcher needs
    them, and calls ``on_wake`` for each message."""

    name = "waker"

    def __init__(
        self,
        broker: Broker,
        router: QueueRouter,
        on_wake: Callable[[], None],
        demand: WakeUpDemand,
        logger: logging.Logger,
        linger: float = LINGER,
    ) -> None:
        super().__init__(logger)
        self.broker = broker
        self.router = router
        self.on_wake = on_wake
        self.demand = demand
        self.linger = linger

    def _keep_trying(self, error: Exception) -> bool:
        if isinstance(error, ResponseError) and "unknown command" in str(error).lower():
            self.logger.info("no sharded pub/sub on this Redis; polling for new tasks")
            return False
        return True

    async def _listen(self) -> None:
        """Subscribe whenever the dispatcher needs it; returns (to subscribe again
        after a pause) only when a node's subscription ends or fails."""
        while True:
            await self.demand.wait_needed()
            lapsed = await self._listen_while_needed()
            if not lapsed:
                return
            self.subscribed.clear()

    async def _listen_while_needed(self) -> bool:
        """One listener per node, until the demand lapses (True) or one of them ends."""
        channels: dict[str, list[str]] = defaultdict(list)
        connector = self.broker.connector
        for queue in self.router.queues:
            keys = self.broker.keys(queue)
            channels[connector.node_of(keys.pending)].append(keys.wakeup)
        ready = [asyncio.Event() for _ in channels]
        listeners = [
            asyncio.ensure_future(self._listen_node(address, names, up))
            for (address, names), up in zip(channels.items(), ready, strict=True)
        ]
        lapse = asyncio.ensure_future(self._until_lapsed(ready))
        try:
            done, _ = await asyncio.wait([*listeners, lapse], return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()  # raise what ended it
            return lapse in done
        finally:
            for task in [*listeners, lapse]:
                task.cancel()
            await asyncio.gather(*listeners, lapse, return_exceptions=True)

    async def _until_lapsed(self, ready: list[asyncio.Event]) -> None:
        """Mark the waker subscribed once every node is, wake the dispatcher for what
        landed before that, then return when no ordinary wait came for ``linger``."""
        for up in ready:
            await up.wait()
        self.subscribed.set()
        self.on_wake()
        while True:
            remaining = self.linger - self.demand.unneeded_for()
            if remaining <= 0:
                self.demand.consume()
                return
            await asyncio.sleep(max(remaining, 0.05))

    async def _listen_node(self, address: str, channels: list[str], up: asyncio.Event) -> None:
        client = self.broker.connector.node_client(address)
        pubsub = client.pubsub()
        try:
            # One command per channel: Redis refuses an SSUBSCRIBE whose channels
            # hash to different slots, even when one node holds them all.
            for channel in channels:
                await pubsub.ssubscribe(channel)
            unconfirmed = len(channels)
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message["type"]
                if kind == "smessage":
                    self.on_wake()
                elif kind == "ssubscribe":
                    unconfirmed -= 1
                    if not unconfirmed:  # Redis ran them all: no wake-up is missed now
                        up.set()
                elif kind == "sunsubscribe":
                    # The server dropped us: the queue's slot moved to another node.
                    self.on_wake()
                    return
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()
