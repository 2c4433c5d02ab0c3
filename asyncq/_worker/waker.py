"""The waker: hears that a task was enqueued and wakes the idle dispatcher at once.

asyncq's scripts publish on the sharded channel ``asynq:{<queue>}:wakeup`` (which
lives in the queue's own slot) whenever they put a task into pending. The waker
holds one subscription per node that owns a served queue. Go's asynq publishes
nothing, so the dispatcher still polls every ``task_check_interval``; without
sharded pub/sub (Redis older than 7) the worker falls back to polling alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

from redis.exceptions import ResponseError

from asyncq._broker.rdb import Broker
from asyncq._cluster.router import QueueRouter
from asyncq._worker.listener import Listener

__all__ = ["Waker"]


class Waker(Listener):
    """Subscribes to the served queues' wake-up channels and calls ``on_wake``."""

    name = "waker"

    def __init__(
        self,
        broker: Broker,
        router: QueueRouter,
        on_wake: Callable[[], None],
        logger: logging.Logger,
    ) -> None:
        super().__init__(logger)
        self.broker = broker
        self.router = router
        self.on_wake = on_wake

    def _keep_trying(self, error: Exception) -> bool:
        if isinstance(error, ResponseError) and "unknown command" in str(error).lower():
            self.logger.info("no sharded pub/sub on this Redis; polling for new tasks")
            return False
        return True

    async def _listen(self) -> None:
        """One listener per node; returns (to resubscribe) as soon as any of them ends."""
        channels: dict[str, list[str]] = defaultdict(list)
        connector = self.broker.connector
        for queue in self.router.queues:
            keys = self.broker.keys(queue)
            channels[connector.node_of(keys.pending)].append(keys.wakeup)
        listeners = [
            asyncio.ensure_future(self._listen_node(address, names))
            for address, names in channels.items()
        ]
        try:
            done, _ = await asyncio.wait(listeners, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()  # raise what ended it
        finally:
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)

    async def _listen_node(self, address: str, channels: list[str]) -> None:
        client = self.broker.connector.node_client(address)
        pubsub = client.pubsub()
        try:
            await pubsub.ssubscribe(*channels)
            self.subscribed.set()
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message["type"]
                if kind == "smessage":
                    self.on_wake()
                elif kind == "sunsubscribe":
                    # The server dropped us: the queue's slot moved to another node.
                    self.on_wake()
                    return
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()
