"""No library: ``LPUSH`` to a list and one ``BLPOP`` loop, through redis-py's asyncio client.

This is the pickup floor, not a competitor: the fewest steps a Redis-based queue can take
from an enqueue call to a running handler (one command each way, nothing stored beside
the message, no lease, no acknowledgement). Its pickup latency at the benchmark's low
rate is a reference for the latency columns on the machine (not a hard bound: it is one
plain consumer, measured at another moment), as the method's own rate is for the
one-by-one column.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as redis_asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster

from benchmarks.libs.base import Adapter, cancel_and_wait
from benchmarks.measure import Probe

# A blocked BLPOP returns after this many seconds with nothing, so a stop is noticed.
_WAIT_S = 1


class BareAdapter(Adapter):
    """One connection each way; the worker runs each message's probe as it pops it."""

    def _redis(self) -> Any:
        if self.spec.is_cluster:
            nodes = [ClusterNode(host, port) for host, port in self.spec.node_addresses()]
            return RedisCluster(startup_nodes=nodes)
        return redis_asyncio.Redis.from_url(self.spec.redis_url)

    async def open_client(self) -> None:
        self.client = self._redis()

    async def enqueue(self, enqueued_at: float) -> None:
        await self.client.lpush(self.spec.queue, json.dumps({"t": enqueued_at}))

    async def close_client(self) -> None:
        await self.client.aclose()

    async def start_worker(self, probe: Probe) -> None:
        self.worker = self._redis()
        await self.worker.ping()  # connected before "ready", as the libraries' workers are
        self.loop = asyncio.create_task(self._pop_forever(probe))

    async def _pop_forever(self, probe: Probe) -> None:
        while True:
            popped = await self.worker.blpop([self.spec.queue], timeout=_WAIT_S)
            if popped is not None:
                await probe(json.loads(popped[1])["t"])

    async def stop_worker(self) -> None:
        await cancel_and_wait(self.loop)
        await self.worker.aclose()


ADAPTER = BareAdapter
