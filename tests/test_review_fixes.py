"""Hazards found in review: each stays fixed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from asyncq import (
    Client,
    Connector,
    InvalidOptionError,
    RedisConnector,
    ResultNotKeptError,
    Scheduler,
    ServeMux,
    Task,
)
from asyncq._broker.rdb import Broker
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq.testing import RedisServerProcess, eventually
from tests.worker_helpers import gone, key, running_server, task_state


@pytest.fixture
def touchy_server() -> Iterator[RedisServerProcess]:
    # Scripts longer than 100 ms make Redis answer BUSY to everyone else meanwhile.
    with RedisServerProcess(extra_args=["--busy-reply-threshold", "100"]) as server:
        yield server


async def test_a_busy_redis_does_not_kill_the_worker(
    touchy_server: RedisServerProcess, queue_name: str
) -> None:
    ran = asyncio.Event()
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.set()

    def busy_script() -> None:
        with redis.Redis.from_url(touchy_server.url) as blocking:
            blocking.eval(
                "local t = redis.call('TIME') local stop = t[1] + 1 "
                "while tonumber(redis.call('TIME')[1]) <= stop do end return 1",
                0,
            )

    connector = RedisConnector(touchy_server.url, retry_deadline=0.2)
    async with connector, running_server(connector, mux, {queue_name: 1}) as server:
        busy = threading.Thread(target=busy_script)
        busy.start()
        await asyncio.to_thread(busy.join)
        async with Client(connector) as client:
            await client.enqueue(Task("t"), queue=queue_name)
        await eventually(ran.is_set, within=15, what="the worker to run a task after BUSY")
        assert server.fetching


async def test_an_absurd_timeout_cannot_crash_workers(
    connector: Connector, queue_name: str
) -> None:
    with pytest.raises(InvalidOptionError, match="at most 100 years"):
        async with Client(connector) as client:
            await client.enqueue(Task("t"), queue=queue_name, timeout=10**12)
    # A client in another language may still write one: the worker clamps it.
    msg = TaskMessage(type="t", id="huge", queue=queue_name, retry=1, timeout=2**62)
    await connector.client.hset(
        key(queue_name, "t:huge"), mapping={"msg": msg.SerializeToString(), "state": "pending"}
    )
    await connector.client.lpush(key(queue_name, "pending"), "huge")
    await connector.client.sadd("asynq:queues", queue_name)
    ran = asyncio.Event()
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.set()

    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(ran.is_set)


async def test_recovery_leaves_a_task_that_was_dequeued_again(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        info = await client.enqueue(Task("t"), queue=queue_name)
    broker = Broker(connector)
    keys = broker.keys(queue_name)
    now = time.time()
    await broker.dequeue(keys, 1, int(now) + 30)  # a worker holds a fresh lease
    raw = await connector.client.hget(key(queue_name, f"t:{info.id}"), "msg")
    # A recoverer that listed the task before it was dequeued again must not move it.
    moved = await broker.retry(
        keys, info.id, raw, int(now), is_failure=True, now=now, recover_cutoff=int(now) - 30
    )
    assert not moved
    assert await task_state(connector, queue_name, info.id) == "active"


async def test_waiting_on_a_task_that_already_finished_unkept(
    connector: Connector, queue_name: str
) -> None:
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        pass

    async with Client(connector) as client, running_server(connector, mux, {queue_name: 1}):
        info = await client.enqueue(Task("t"), queue=queue_name)
        await eventually(lambda: gone(connector, queue_name, info.id))
        with pytest.raises(ResultNotKeptError):
            await client.wait_result(info, timeout=5)


def test_misfire_grace_must_stay_below_the_fire_lock() -> None:
    with pytest.raises(InvalidOptionError, match="misfire_grace"):
        Scheduler(RedisConnector(), misfire_grace=3600)


async def test_a_fire_missed_during_an_outage_is_enqueued_when_redis_returns(
    queue_name: str,
) -> None:
    from datetime import UTC, datetime

    from asyncq.testing import ManualClock

    server = RedisServerProcess().start()
    try:
        clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
        connector = RedisConnector(server.url, retry_deadline=0.3)
        scheduler = Scheduler(connector, clock=clock)
        scheduler.register("@every 1m", Task("job"), queue=queue_name)
        async with connector:
            server.stop()
            clock.advance(60)
            await scheduler.tick()  # Redis is down: the fire waits
            server.restart()
            clock.advance(5)  # still within misfire_grace
            await scheduler.tick()
            await scheduler.tick()
            assert await connector.client.llen(key(queue_name, "pending")) == 1
    finally:
        server.close()
