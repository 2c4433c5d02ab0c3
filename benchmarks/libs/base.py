"""The interface every library adapter implements (standard library only)."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.measure import Probe
from benchmarks.spec import ChildSpec


class BatchUnsupportedError(Exception):
    """The library has no batch enqueue API (the result is shown as "n/a")."""


class Adapter(ABC):
    """Drives one library: a client that enqueues, or a worker that runs the probe.

    A child process uses either the client half (``open_client`` ... ``close_client``)
    or the worker half (``start_worker`` ... ``stop_worker``), never both.
    """

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        #: Set by ``enqueue_batch`` when the numbers are not from a real batch API.
        self.batch_note = ""

    # -- client ------------------------------------------------------------------------------

    @abstractmethod
    async def open_client(self) -> None:
        """Connect the client (and do whatever the library needs before enqueueing)."""

    @abstractmethod
    async def enqueue(self, enqueued_at: float) -> None:
        """Enqueue one task with the library's normal single-enqueue call."""

    async def enqueue_batch(self, stamps: Sequence[float]) -> None:
        """Enqueue ``len(stamps)`` tasks with the library's batch API, if it has one."""
        raise BatchUnsupportedError

    @abstractmethod
    async def close_client(self) -> None:
        """Release the client."""

    # -- worker ------------------------------------------------------------------------------

    @abstractmethod
    async def start_worker(self, probe: Probe) -> None:
        """Start one worker (concurrency ``spec.concurrency``) whose handler awaits ``probe``;
        return once it is running."""

    @abstractmethod
    async def stop_worker(self) -> None:
        """Stop the worker (gracefully where the library allows it)."""


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel a worker's running task and wait until it has ended (its cancellation is
    the expected way out, so it is not raised)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_for_flag(check: Callable[[], bool], limit_s: float, what: str) -> None:
    """Poll ``check`` every 10 ms until it is true; raise ``TimeoutError`` naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not reached within {limit_s:.0f} s")
        await asyncio.sleep(0.01)
