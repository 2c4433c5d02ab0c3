"""streaq: ``task.enqueue()`` / ``Worker.enqueue_many`` and one ``Worker(concurrency=32)``.

On a cluster streaq needs ``cluster_nodes=`` and a hash-tagged queue name (the
orchestrator passes ``{...}``), so the whole queue lives in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from streaq import Worker

from benchmarks.libs.base import Adapter, cancel_and_wait, wait_for_flag
from benchmarks.measure import Probe, chunks
from benchmarks.spec import TASK_NAME


class StreaqAdapter(Adapter):
    """streaq with its defaults (pickle, results kept 5 min, plain asyncio), except concurrency."""

    def _worker(self) -> Worker[Any]:
        common: dict[str, Any] = {
            "concurrency": self.spec.concurrency,
            "queue_name": self.spec.queue,
        }
        if self.spec.is_cluster:
            return Worker(cluster_nodes=self.spec.node_addresses(), **common)
        return Worker(redis_url=self.spec.redis_url, **common)

    def _register(self, probe: Probe | None) -> None:
        async def bench(t: float) -> None:
            if probe is not None:
                await probe(t)

        self.task = self.worker.task(name=TASK_NAME)(bench)

    async def open_client(self) -> None:
        self.worker = self._worker()
        self._register(None)
        self.stack = contextlib.AsyncExitStack()
        await self.stack.enter_async_context(self.worker)

    async def enqueue(self, enqueued_at: float) -> None:
        await self.task.enqueue(enqueued_at)

    async def enqueue_batch(self, stamps: Sequence[float]) -> None:
        for part in chunks(stamps, self.spec.batch_size):
            await self.worker.enqueue_many([self.task.enqueue(t) for t in part])

    async def close_client(self) -> None:
        await self.stack.aclose()

    async def start_worker(self, probe: Probe) -> None:
        self.worker = self._worker()
        self._register(probe)
        self.runner = asyncio.create_task(self.worker.run_async())
        await wait_for_flag(
            lambda: self.runner.done() or self.worker._running, 10, "streaq worker start"
        )
        if self.runner.done():
            self.runner.result()

    async def stop_worker(self) -> None:
        await cancel_and_wait(self.runner)


ADAPTER = StreaqAdapter
