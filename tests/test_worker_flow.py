"""How a worker schedules work: concurrency, priorities, pauses, leases, recovery, shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest

from asyncq import Client, Connector, LeaseExpiredError, ServeMux, Task
from asyncq._broker.groups import GroupBroker
from asyncq._broker.rdb import Broker
from asyncq._proto.asynq_pb2 import ServerInfo, TaskMessage, WorkerInfo
from asyncq.testing import ManualClock, eventually
from tests.worker_helpers import (
    counter,
    key,
    running_server,
    state_is,
    task_message,
    task_state,
    write_like_go,
)


async def _enqueue(connector: Connector, queue: str, count: int, task_type: str = "t") -> list[str]:
    async with Client(connector) as client:
        return [
            (await client.enqueue(Task(task_type, {"i": i}), queue=queue)).id for i in range(count)
        ]


async def test_concurrency_limit_is_reached_and_never_exceeded(
    connector: Connector, queue_name: str
) -> None:
    running = 0
    peak = 0
    done = 0
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)  # the work itself
        running -= 1
        done += 1

    await _enqueue(connector, queue_name, 40)
    async with running_server(connector, mux, {queue_name: 1}, concurrency=3):
        await eventually(lambda: done == 40, within=20)
    assert peak == 3


async def test_weighted_priorities_share_dequeues_by_weight(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    high, low = f"{queue_name}-a", f"{queue_name}-b"
    order: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        order.append(task.queue)

    await _enqueue(connector, high, 240)
    await _enqueue(connector, low, 240)
    async with running_server(connector, mux, {high: 3, low: 1}, concurrency=1):
        await eventually(lambda: len(order) >= 200, within=20)
    # A dequeue that failed falls through to the next queue: that would be no draw.
    assert not [r for r in caplog.records if "dequeue from" in r.getMessage()]
    # 200 draws: a fair 3:1 draw leaves 0.6-0.9 about once in a million runs (with 80
    # draws, about once in 800, which this test once did).
    share = order[:200].count(high) / 200
    assert 0.6 <= share <= 0.9, f"share of the weight-3 queue was {share:.2f}, expected ~0.75"


async def test_strict_priority_drains_higher_queues_first(
    connector: Connector, queue_name: str
) -> None:
    high, low = f"{queue_name}-hi", f"{queue_name}-lo"
    order: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        order.append(task.queue)

    await _enqueue(connector, low, 15)
    await _enqueue(connector, high, 15)
    async with running_server(
        connector, mux, {high: 2, low: 1}, concurrency=1, strict_priority=True
    ):
        await eventually(lambda: len(order) == 30, within=20)
    assert order == [high] * 15 + [low] * 15


async def test_paused_queue_waits_until_resumed(connector: Connector, queue_name: str) -> None:
    paused, other = f"{queue_name}-p", f"{queue_name}-o"
    ran: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.append(task.queue)

    await connector.client.set(key(paused, "paused"), int(time.time()))
    (held,) = await _enqueue(connector, paused, 1)
    async with running_server(connector, mux, {paused: 1, other: 1}) as server:
        for expected in (1, 2):  # two rounds of work elsewhere: the paused queue was looked at
            await _enqueue(connector, other, 1)
            await eventually(lambda n=expected: ran.count(other) == n)  # type: ignore[misc]
        assert ran == [other, other]
        assert await task_state(connector, paused, held) == "pending"
        await server.broker.unpause(server.broker.keys(paused))
        await eventually(lambda: paused in ran)


async def test_extending_leases_never_revives_one_the_recoverer_removed(
    connector: Connector, queue_name: str
) -> None:
    """asynq's ExtendLease is ``ZADD XX``: a task whose lease the recoverer took away (and
    requeued) must not get one back from the worker still running it."""
    from asyncq._broker.rdb import Broker

    broker = Broker(connector)
    keys = broker.keys(queue_name)
    await connector.execute("ZADD", keys.lease, 100, "held")
    await broker.extend_leases(keys, ["held", "taken-back"], 5000)
    leases = await connector.execute("ZRANGE", keys.lease, 0, -1, "WITHSCORES")
    assert leases == [b"held", b"5000"]


async def test_heartbeat_publishes_records_and_extends_leases(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock()
    release = asyncio.Event()
    started = asyncio.Event()
    mux = ServeMux()

    @mux.handler("long")
    async def long(task: Task) -> None:
        started.set()
        await release.wait()

    (task_id,) = await _enqueue(connector, queue_name, 1, "long")
    async with running_server(
        connector, mux, {queue_name: 1}, concurrency=2, clock=clock
    ) as server:
        await eventually(started.is_set)
        first = await connector.client.zscore(key(queue_name, "lease"), task_id)
        assert first == int(clock.time()) + 30
        clock.advance(10)
        await eventually(lambda: _lease_is(connector, queue_name, task_id, int(clock.time()) + 30))
        server_key = server.identity.server_key
        assert server_key.encode() in await connector.client.zrange("asynq:servers", 0, -1)
        info = ServerInfo.FromString(await connector.client.get(server_key))
        assert (info.concurrency, dict(info.queues), info.status) == (2, {queue_name: 1}, "active")
        assert (info.host, info.pid, info.server_id) == (
            server.identity.host,
            server.identity.pid,
            server.identity.server_id,
        )
        await eventually(lambda: _has_worker(connector, server.identity.workers_key, task_id))
        raw = await connector.client.hget(server.identity.workers_key, task_id)
        worker = WorkerInfo.FromString(raw)
        assert (worker.task_type, worker.queue) == ("long", queue_name)
        release.set()
    assert server_key.encode() not in await connector.client.zrange("asynq:servers", 0, -1)
    assert not await connector.client.exists(server_key)


async def test_a_handler_is_stopped_when_redis_refuses_to_extend_its_lease(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An error reply (here WRONGTYPE; in life OOM under maxmemory, NOPERM, MISCONF) must
    not keep a handler running past its lease, when the recoverer may start it again."""
    clock = ManualClock()
    started, cancelled = asyncio.Event(), asyncio.Event()
    mux = ServeMux()

    @mux.handler("long")
    async def long(task: Task) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await _enqueue(connector, queue_name, 1, "long")
    async with running_server(connector, mux, {queue_name: 1}, clock=clock):
        await eventually(started.is_set)
        lease_key = key(queue_name, "lease")
        await connector.client.delete(lease_key)
        await connector.client.set(lease_key, "not a sorted set")  # every ZADD now fails
        try:
            await eventually(lambda: "could not extend leases" in caplog.text)
            assert not cancelled.is_set(), "the lease has not run out yet"
            clock.advance(31)  # past the 30 s lease that was never extended
            await eventually(cancelled.is_set, what="the handler to be stopped")
        finally:
            await connector.client.delete(lease_key)  # so that the shutdown can write


async def test_recoverer_takes_back_expired_leases_and_orphans(
    connector: Connector, queue_name: str
) -> None:
    now = int(time.time())
    for task_id, lease in (("expired", now - 100), ("orphan", None), ("exhausted", now - 100)):
        msg = TaskMessage(type="t", id=task_id, queue=queue_name, retry=25, timeout=60)
        if task_id == "exhausted":
            msg.retry, msg.retried = 2, 2
        await connector.client.hset(
            key(queue_name, f"t:{task_id}"),
            mapping={"msg": msg.SerializeToString(), "state": "active"},
        )
        await connector.client.lpush(key(queue_name, "active"), task_id)
        if lease is not None:
            await connector.client.zadd(key(queue_name, "lease"), {task_id: lease})
    # The worker serves nothing else; its recoverer runs once at start.
    async with running_server(connector, ServeMux(), {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, "orphan", "retry"))
        await eventually(lambda: state_is(connector, queue_name, "expired", "retry"))
        await eventually(lambda: state_is(connector, queue_name, "exhausted", "archived"))
    for task_id in ("expired", "orphan"):
        msg = await task_message(connector, queue_name, task_id)
        assert msg.retried == 1 and msg.error_msg.startswith("LeaseExpiredError")
    assert await connector.client.llen(key(queue_name, "active")) == 0
    assert await connector.client.zcard(key(queue_name, "lease")) == 0


async def test_a_lost_task_on_its_last_try_is_archived_even_if_not_a_failure(
    connector: Connector, queue_name: str
) -> None:
    """asynq's recoverer archives a task whose retries are used up, whatever its
    is_failure says; asyncq retried it without counting, so it could come back for good."""
    now = int(time.time())
    for task_id, retried in (("last-try", 2), ("earlier", 0)):
        msg = TaskMessage(type="t", id=task_id, queue=queue_name, retry=2, retried=retried)
        await connector.client.hset(
            key(queue_name, f"t:{task_id}"),
            mapping={"msg": msg.SerializeToString(), "state": "active"},
        )
        await connector.client.lpush(key(queue_name, "active"), task_id)
        await connector.client.zadd(key(queue_name, "lease"), {task_id: now - 100})
    options = {"is_failure": lambda error: not isinstance(error, LeaseExpiredError)}
    async with running_server(connector, ServeMux(), {queue_name: 1}, **options):
        await eventually(lambda: state_is(connector, queue_name, "last-try", "archived"))
        await eventually(lambda: state_is(connector, queue_name, "earlier", "retry"))
    assert (await task_message(connector, queue_name, "earlier")).retried == 0  # not counted


async def test_a_task_of_blank_type_from_another_writer_is_retried_not_stuck(
    connector: Connector, queue_name: str
) -> None:
    """asynq's clients refuse a blank task type, but a task written by hand or by another
    client can have one. The worker and the recoverer retry it like a task of a type with
    no handler; working out its retry once failed at every try, leaving it active."""
    now = int(time.time())
    for task_id, state in (("blank-pending", "pending"), ("blank-lost", "active")):
        msg = TaskMessage(type="", id=task_id, queue=queue_name, retry=3)
        await connector.client.hset(
            key(queue_name, f"t:{task_id}"),
            mapping={"msg": msg.SerializeToString(), "state": state},
        )
        await connector.client.lpush(key(queue_name, state), task_id)
    await connector.client.zadd(key(queue_name, "lease"), {"blank-lost": now - 100})
    async with running_server(connector, ServeMux(), {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, "blank-pending", "retry"))
        await eventually(lambda: state_is(connector, queue_name, "blank-lost", "retry"))
    ran = await task_message(connector, queue_name, "blank-pending")
    assert ran.retried == 1 and "no handler is registered for task type ''" in ran.error_msg
    lost = await task_message(connector, queue_name, "blank-lost")
    assert lost.retried == 1 and lost.error_msg.startswith("LeaseExpiredError")
    assert await connector.client.llen(key(queue_name, "active")) == 0


async def test_a_queue_whose_keys_cannot_be_read_does_not_stop_recovery_of_the_others(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer's key of the wrong type in one queue failed the recoverer's whole
    pass, at every pass: the tasks of the queues after it were never taken back."""
    broken = f"{queue_name}-broken"
    stale_set = key(broken, "g:batch:0b3c")
    await connector.client.set(stale_set, "not a sorted set")
    await connector.client.zadd(key(broken, "aggregation_sets"), {stale_set: 1})
    msg = TaskMessage(type="t", id="lost", queue=queue_name, retry=25)
    await connector.client.hset(
        key(queue_name, "t:lost"), mapping={"msg": msg.SerializeToString(), "state": "active"}
    )
    await connector.client.lpush(key(queue_name, "active"), "lost")
    await connector.client.zadd(key(queue_name, "lease"), {"lost": int(time.time()) - 100})
    async with running_server(connector, ServeMux(), {broken: 2, queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, "lost", "retry"))
    assert f"could not recover the tasks of queue {broken}" in caplog.text


async def test_a_listed_aggregation_set_name_without_a_set_id_is_only_unlisted(
    connector: Connector, queue_name: str
) -> None:
    """asynq's reclaim script failed on such a name (another writer's), at every pass."""
    group = key(queue_name, "g:batch")
    await connector.client.zadd(group, {"kept": 1})
    await connector.client.zadd(key(queue_name, "aggregation_sets"), {group: 1})
    broker = Broker(connector)
    assert await GroupBroker(broker).reclaim_stale_sets(broker.keys(queue_name), time.time())
    assert await connector.client.zcard(key(queue_name, "aggregation_sets")) == 0
    assert await connector.client.zrange(group, 0, -1) == [b"kept"]


async def test_a_task_key_of_another_type_in_pending_loses_none_of_its_batch(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An id in pending whose task key another writer filled with a string failed the
    dequeue after it had taken the whole batch off pending: every task of the batch was
    lost, in neither pending nor active. Now that id alone is dropped, and so is an id
    with no task hash at all, each with a warning that says so (it was silent)."""
    mux = ServeMux()
    ran: list[str] = []

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.append(task.id)

    for n in range(8):
        await write_like_go(connector, queue_name, f"good-{n}")
        if n == 4:
            await connector.client.set(key(queue_name, "t:bad"), "not a hash")
            await connector.client.lpush(key(queue_name, "pending"), "bad", "hashless")
    async with running_server(connector, mux, {queue_name: 1}, concurrency=20):
        await eventually(lambda: len(ran) == 8)
    assert sorted(ran) == [f"good-{n}" for n in range(8)]
    for dropped in ("bad", "hashless"):
        assert f"task {dropped} was pending without a stored task" in caplog.text
    assert await connector.client.llen(key(queue_name, "pending")) == 0
    assert await connector.client.get(key(queue_name, "t:bad")) == b"not a hash"


async def test_a_task_id_that_is_not_utf8_holds_back_no_other_task(
    connector: Connector, queue_name: str
) -> None:
    """Another program's task id that is not UTF-8 failed reading the whole dequeue: every
    task of the batch stayed leased to nobody, and the recoverer then failed on the queue
    at every pass, so they were never taken back. Now that one id alone is left where it
    is (and logged), and the others run and are recovered."""
    ran: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.append(task.id)

    bad = b"bad\xff\xfe"
    msg = TaskMessage(type="t", id="bad", queue=queue_name, retry=3).SerializeToString()
    await write_like_go(connector, queue_name, "good-0")
    await connector.client.hset(key(queue_name, "t:").encode() + bad, mapping={"msg": msg})
    await connector.client.lpush(key(queue_name, "pending"), bad)
    await write_like_go(connector, queue_name, "good-1")
    lost = TaskMessage(type="t", id="lost", queue=queue_name, retry=3)
    await connector.client.hset(
        key(queue_name, "t:lost"), mapping={"msg": lost.SerializeToString(), "state": "active"}
    )
    await connector.client.lpush(key(queue_name, "active"), "lost", bad)
    await connector.client.zadd(key(queue_name, "lease"), {"lost": int(time.time()) - 100})
    async with running_server(connector, mux, {queue_name: 1}, concurrency=20):
        await eventually(lambda: sorted(ran) == ["good-0", "good-1"])
        await eventually(lambda: state_is(connector, queue_name, "lost", "retry"))


async def test_recoverer_archives_abandoned_tasks_it_cannot_read(
    connector: Connector, queue_name: str
) -> None:
    """A task left active whose message is unreadable, or names another task, can never
    be retried: it is archived as it is, instead of being listed again at every pass."""
    now = int(time.time())
    other = TaskMessage(type="t", id="other", queue=queue_name, retry=25, timeout=60)
    stored = {"garbled": b"\xff\xfe not protobuf", "copy": other.SerializeToString()}
    for task_id, raw in stored.items():
        await connector.client.hset(
            key(queue_name, f"t:{task_id}"), mapping={"msg": raw, "state": "active"}
        )
        await connector.client.lpush(key(queue_name, "active"), task_id)
    await connector.client.zadd(key(queue_name, "lease"), {"garbled": now - 100})  # "copy": none
    async with running_server(connector, ServeMux(), {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, "garbled", "archived"))
        await eventually(lambda: state_is(connector, queue_name, "copy", "archived"))
    for task_id, raw in stored.items():
        assert await connector.client.hget(key(queue_name, f"t:{task_id}"), "msg") == raw
    assert await connector.client.llen(key(queue_name, "active")) == 0
    assert await connector.client.zcard(key(queue_name, "lease")) == 0
    assert not await connector.client.exists(key(queue_name, "t:other"))


async def test_due_scheduled_task_runs_and_grouped_one_joins_its_group(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock()
    ran: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.append(task.id)

    async with Client(connector) as client:
        plain = await client.enqueue(Task("t"), queue=queue_name, process_in=30)
        grouped = await client.enqueue(Task("t"), queue=queue_name, process_in=30, group="g")
    async with running_server(connector, mux, {queue_name: 1}, clock=clock):
        clock.advance(31)
        await eventually(lambda: ran == [plain.id])
        await eventually(lambda: state_is(connector, queue_name, grouped.id, "aggregating"))
    assert await connector.client.zscore(key(queue_name, "g:g"), grouped.id) is not None
    assert await connector.client.smembers(key(queue_name, "groups")) == {b"g"}


async def test_shutdown_requeues_unfinished_tasks_at_the_head(
    connector: Connector, queue_name: str
) -> None:
    started = asyncio.Event()
    mux = ServeMux()

    @mux.handler("t")
    async def endless(task: Task) -> None:
        started.set()
        await asyncio.Event().wait()

    ids = await _enqueue(connector, queue_name, 3)
    async with running_server(connector, mux, {queue_name: 1}, concurrency=1, shutdown_timeout=0.2):
        await eventually(started.is_set)
    pending = [i.decode() for i in await connector.client.lrange(key(queue_name, "pending"), 0, -1)]
    assert sorted(pending) == sorted(ids)
    assert pending[-1] == ids[0], "the interrupted task goes back to the head (popped next)"
    assert await task_state(connector, queue_name, ids[0]) == "pending"
    assert await connector.client.llen(key(queue_name, "active")) == 0
    assert await connector.client.zcard(key(queue_name, "lease")) == 0
    assert await counter(connector, key(queue_name, "processed")) == 0


async def test_handler_ignoring_cancellation_cannot_block_shutdown_and_its_task_is_requeued(
    connector: Connector, queue_name: str
) -> None:
    started, finish, returned = asyncio.Event(), asyncio.Event(), asyncio.Event()
    mux = ServeMux()

    @mux.handler("t")
    async def stubborn(task: Task) -> None:
        started.set()
        while not finish.is_set():
            try:
                await finish.wait()
            except asyncio.CancelledError:
                continue  # deliberately ignores cancellation
        returned.set()

    (task_id,) = await _enqueue(connector, queue_name, 1)
    async with running_server(connector, mux, {queue_name: 1}, shutdown_timeout=0.2):
        await eventually(started.is_set)
        began = time.monotonic()
    stopping = time.monotonic() - began
    # As asynq does: back at the head of pending at once, for another worker to run.
    assert await task_state(connector, queue_name, task_id) == "pending"
    assert await connector.client.lrange(key(queue_name, "pending"), 0, -1) == [task_id.encode()]
    assert await connector.client.llen(key(queue_name, "active")) == 0
    assert await connector.client.zcard(key(queue_name, "lease")) == 0
    assert stopping < 10, f"shutdown took {stopping:.2f}s"
    finish.set()
    await eventually(returned.is_set)
    # The abandoned handler returned normally, yet nothing was written for its task.
    assert await task_state(connector, queue_name, task_id) == "pending"


async def _lease_is(connector: Connector, queue: str, task_id: str, score: int) -> bool:
    lease: float | None = await connector.client.zscore(key(queue, "lease"), task_id)
    return lease == score


async def _has_worker(connector: Connector, workers_key: str, task_id: str) -> bool:
    return bool(await connector.client.hexists(workers_key, task_id))
