"""taskiq with taskiq-redis: ``task.kiq()`` and one ``Receiver(max_async_tasks=32)``.

Standalone uses ``RedisStreamBroker``; the cluster uses ``RedisStreamClusterBroker``,
the stream broker taskiq-redis offers for Redis Cluster. No result backend is set, which
is taskiq's default. taskiq has no batch enqueue API.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from taskiq import AsyncBroker
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker, RedisStreamClusterBroker

from benchmarks.libs.base import Adapter
from benchmarks.measure import Probe
from benchmarks.spec import TASK_NAME


class TaskiqAdapter(Adapter):
    """taskiq's worker defaults (as ``taskiq worker`` sets them), except ``max_async_tasks``."""

    def _broker(self) -> AsyncBroker:
        if self.spec.is_cluster:
            return RedisStreamClusterBroker(
                url=f"redis://{self.spec.cluster_nodes[0]}", queue_name=self.spec.queue
            )
        return RedisStreamBroker(url=self.spec.redis_url, queue_name=self.spec.queue)

    async def open_client(self) -> None:
        self.broker = self._broker()

        @self.broker.task(task_name=TASK_NAME)
        async def bench(t: float) -> None:  # the client only needs the name and signature
            return None

        self.task = bench
        # startup() creates the consumer group at "$" before any message is added, so a
        # worker started later still sees every task.
        await self._startup()

    async def _startup(self) -> None:
        await self.broker.startup()
        if isinstance(self.broker, RedisStreamClusterBroker):
            # Its startup() closes the cluster client on the way out (``async with
            # self.redis``); concurrent calls on the closed client then fail (kiq raises
            # SendTaskError). Reconnecting once, before any concurrency, avoids that.
            await self.broker.redis.initialize()

    async def enqueue(self, enqueued_at: float) -> None:
        await self.task.kiq(enqueued_at)

    async def close_client(self) -> None:
        await self.broker.shutdown()

    async def start_worker(self, probe: Probe) -> None:
        self.broker = self._broker()
        self.broker.is_worker_process = True

        @self.broker.task(task_name=TASK_NAME)
        async def bench(t: float) -> None:
            await probe(t)

        self.executor = ThreadPoolExecutor()
        receiver = Receiver(
            broker=self.broker,
            executor=self.executor,
            max_async_tasks=self.spec.concurrency,
            run_startup=False,
        )
        await self._startup()
        self.finish = asyncio.Event()
        self.runner = asyncio.create_task(receiver.listen(self.finish))
        await asyncio.sleep(0)
        if self.runner.done():
            self.runner.result()

    async def stop_worker(self) -> None:
        self.finish.set()
        try:
            await asyncio.wait_for(self.runner, 5)
        except (TimeoutError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await self.broker.shutdown()
            self.executor.shutdown(wait=False)


ADAPTER = TaskiqAdapter
