"""saq: ``Queue.enqueue`` and one ``Worker(concurrency=32)``; standalone Redis only.

saq's ``Queue.batch()`` is an all-or-abort context around ordinary enqueues, not a
pipelined batch, so the batch scenario is "n/a" for saq.
"""

from __future__ import annotations

import asyncio

from saq import Queue, Worker
from saq.types import Context

from benchmarks.libs.base import Adapter, cancel_and_wait, wait_for_flag
from benchmarks.measure import Probe
from benchmarks.spec import TASK_NAME


class SaqAdapter(Adapter):
    """saq with its defaults (dequeue_timeout 0, results kept 600 s), except concurrency."""

    async def open_client(self) -> None:
        self.queue = Queue.from_url(self.spec.redis_url, name=self.spec.queue)
        await self.queue.connect()

    async def enqueue(self, enqueued_at: float) -> None:
        job = await self.queue.enqueue(TASK_NAME, t=enqueued_at)
        if job is None:
            raise RuntimeError("enqueue returned None (duplicate job key)")

    async def close_client(self) -> None:
        await self.queue.disconnect()

    async def start_worker(self, probe: Probe) -> None:
        async def bench(ctx: Context, *, t: float) -> None:
            await probe(t)

        self.queue = Queue.from_url(self.spec.redis_url, name=self.spec.queue)
        await self.queue.connect()
        self.worker = Worker(
            self.queue, functions=[(TASK_NAME, bench)], concurrency=self.spec.concurrency
        )
        self.runner = asyncio.create_task(self.worker.start())
        await wait_for_flag(
            lambda: self.runner.done() or bool(self.worker.tasks), 10, "saq worker start"
        )
        if self.runner.done():
            self.runner.result()

    async def stop_worker(self) -> None:
        await self.worker.stop()
        await cancel_and_wait(self.runner)
        await self.queue.disconnect()


ADAPTER = SaqAdapter
