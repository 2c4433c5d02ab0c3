"""The base of the pub/sub components: a subscription that comes back after every failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

__all__ = ["Listener"]

RECONNECT_DELAY = 0.5


class Listener(ABC):
    """Runs ``_listen()`` until ``stop()``; when it fails or returns, waits and runs it again.

    ``subscribed`` is set while a subscription is up (subclasses set it), so tests and
    diagnostics can tell when messages will be heard.
    """

    name = "listener"

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, group: asyncio.TaskGroup) -> None:
        self._task = group.create_task(self._run(), name=f"asyncq-{self.name}")

    async def stop(self, hurry: asyncio.Event | None = None) -> None:
        """Stop listening (at once: ``hurry`` changes nothing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except Exception as error:
                if not self._keep_trying(error):
                    return
                self.logger.debug("%s: subscription lost (%s); subscribing again", self.name, error)
            self.subscribed.clear()
            await asyncio.sleep(RECONNECT_DELAY)

    def _keep_trying(self, error: Exception) -> bool:
        """Whether to subscribe again after ``error`` (False ends the component)."""
        return True

    @abstractmethod
    async def _listen(self) -> None:
        """Subscribe and handle messages until the connection ends."""
