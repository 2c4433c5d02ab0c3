"""The base of every periodic component: a loop that runs one step and never dies of it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from asyncq._aio import raise_if_cancelled, wait_unless
from asyncq.errors import ConnectionFailedError

__all__ = ["PeriodicComponent"]


class PeriodicComponent(ABC):
    """Runs ``_tick()`` every ``interval`` seconds until ``stop()``.

    A failing tick is logged and the loop goes on: one Redis hiccup must not stop
    a server's forwarder or recoverer for good.
    """

    name = "component"

    def __init__(self, interval: float, logger: logging.Logger) -> None:
        self.interval = interval
        self.logger = logger
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0  # steps completed: for diagnostics and tests

    def start(self, group: asyncio.TaskGroup) -> None:
        """Start the loop as a child of ``group``."""
        self._task = group.create_task(self._loop(), name=f"asyncq-{self.name}")

    async def stop(self, hurry: asyncio.Event | None = None) -> None:
        """Ask the loop to finish and wait for it: a tick in progress completes, unless
        ``hurry`` is set meanwhile (a tick can wait out a failing node for the connector's
        whole ``retry_deadline``); then it is cut short."""
        self._stopping.set()
        task = self._task
        if task is None:
            return
        if hurry is not None:
            await wait_unless(hurry, [task])
            task.cancel()  # nothing to do if it has ended
        await asyncio.wait({task})

    async def tick_now(self) -> None:
        """Run one step at once (used at start-up and by tests)."""
        await self._safe_tick()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            await self._safe_tick()
            raise_if_cancelled()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the wait ends, and the loop would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._stopping.wait()

    async def _safe_tick(self) -> None:
        try:
            await self._tick()
            self.ticks += 1
        except ConnectionFailedError as error:
            # Redis down or out of reach: expected in an outage, and the error says all
            # there is to say. A traceback per component per step would flood the log.
            self.logger.warning(
                "asyncq %s: step failed; trying again in %.1fs: %s", self.name, self.interval, error
            )
        except Exception:
            self.logger.exception(
                "asyncq %s: step failed; trying again in %.1fs", self.name, self.interval
            )

    @abstractmethod
    async def _tick(self) -> None:
        """One step of the component's work."""
