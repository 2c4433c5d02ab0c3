"""arq: ``ArqRedis.enqueue_job`` and one ``Worker(max_jobs=32)``; standalone Redis only.

arq pins ``redis<6``, so it runs in a virtual environment of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func

from benchmarks.libs.base import Adapter, cancel_and_wait, wait_for_flag
from benchmarks.measure import Probe
from benchmarks.spec import TASK_NAME


class ArqAdapter(Adapter):
    """arq with its defaults (poll_delay 0.5 s, results kept 1 h), except ``max_jobs``."""

    def _settings(self) -> RedisSettings:
        return RedisSettings.from_dsn(self.spec.redis_url)

    async def open_client(self) -> None:
        self.pool: ArqRedis = await create_pool(
            self._settings(), default_queue_name=self.spec.queue
        )

    async def enqueue(self, enqueued_at: float) -> None:
        job = await self.pool.enqueue_job(TASK_NAME, enqueued_at)
        if job is None:
            raise RuntimeError("enqueue_job returned None (duplicate job id)")

    async def close_client(self) -> None:
        await self.pool.aclose()

    async def start_worker(self, probe: Probe) -> None:
        async def bench(ctx: dict[str, Any], enqueued_at: float) -> None:
            await probe(enqueued_at)

        self.worker = Worker(
            functions=[func(bench, name=TASK_NAME)],
            queue_name=self.spec.queue,
            redis_settings=self._settings(),
            max_jobs=self.spec.concurrency,
            handle_signals=False,
        )
        self.runner = asyncio.create_task(self.worker.async_run())
        await wait_for_flag(
            lambda: self.runner.done() or self.worker._pool is not None, 10, "arq worker start"
        )
        if self.runner.done():
            self.runner.result()

    async def stop_worker(self) -> None:
        await cancel_and_wait(self.runner)
        await self.worker.close()


ADAPTER = ArqAdapter
