"""asyncq: ``Client.enqueue`` / ``Client.enqueue_many`` and one ``Server`` with a ServeMux."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncq
from benchmarks.libs.base import Adapter
from benchmarks.measure import Probe, chunks
from benchmarks.spec import TASK_NAME


class AsyncqAdapter(Adapter):
    """asyncq with its defaults, except concurrency and the one queue it serves."""

    def _connector(self) -> asyncq.Connector:
        if self.spec.is_cluster:
            return asyncq.RedisClusterConnector(self.spec.cluster_nodes)
        return asyncq.RedisConnector(self.spec.redis_url)

    def _task(self, enqueued_at: float) -> asyncq.Task:
        return asyncq.Task(TASK_NAME, {"t": enqueued_at})

    async def open_client(self) -> None:
        self.client = asyncq.Client(self._connector())
        await self.client.__aenter__()

    async def enqueue(self, enqueued_at: float) -> None:
        await self.client.enqueue(self._task(enqueued_at), queue=self.spec.queue)

    async def enqueue_batch(self, stamps: Sequence[float]) -> None:
        tasks = [self._task(t) for t in stamps]
        enqueue_many = getattr(self.client, "enqueue_many", None)
        if enqueue_many is None:
            # The batch API is newer than some checkouts: say so rather than fail.
            self.batch_note = "Client.enqueue_many missing: gather of enqueue"
            await asyncio.gather(*(self.client.enqueue(t, queue=self.spec.queue) for t in tasks))
            return
        for part in chunks(tasks, self.spec.batch_size):
            results = await enqueue_many(part, queue=self.spec.queue)
            errors = [r.error for r in results if r.error is not None]
            if errors or len(results) != len(part):
                raise RuntimeError(
                    f"enqueue_many: {len(errors)} of {len(part)} failed "
                    f"({len(results)} results); first error: {errors[0] if errors else None!r}"
                )

    async def close_client(self) -> None:
        await self.client.aclose()

    async def start_worker(self, probe: Probe) -> None:
        async def handle(task: asyncq.Task) -> None:
            await probe(task.json()["t"])

        mux = asyncq.ServeMux()
        mux.handle(TASK_NAME, handle)
        self.server = asyncq.Server(
            self._connector(),
            concurrency=self.spec.concurrency,
            queues={self.spec.queue: 1},
        )
        await self.server.start(mux)

    async def stop_worker(self) -> None:
        await self.server.shutdown()


ADAPTER = AsyncqAdapter
