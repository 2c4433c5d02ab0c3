"""The Inspector on both topologies, including state written the way Go's asynq writes it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from asyncq import (
    Client,
    Connector,
    Inspector,
    InvalidOptionError,
    QueueNotEmptyError,
    QueueNotFoundError,
    ServeMux,
    Task,
    TaskDecodeError,
    TaskNotFoundError,
    TaskState,
    TaskStateError,
)
from asyncq._broker.rdb import utc_date
from asyncq._proto.asynq_pb2 import SchedulerEnqueueEvent, SchedulerEntry, TaskMessage
from asyncq.testing import eventually
from asyncq.testing.plugin import ClusterTarget
from tests.worker_helpers import key, running_server, state_is, task_state


async def go_task(
    connector: Connector, queue: str, task_id: str, state: str, **fields: object
) -> None:
    """Write a task hash the way asynq's Go client does (message bytes and fields)."""
    msg = TaskMessage(type="go:task", payload=b'{"x":1}', id=task_id, queue=queue, retry=25,
                      timeout=1800)  # fmt: skip
    mapping: dict[str, object] = {"msg": msg.SerializeToString(), "state": state, **fields}
    await connector.client.hset(key(queue, f"t:{task_id}"), mapping=mapping)
    await connector.client.sadd("asynq:queues", queue)


async def test_queue_info_counts_every_state(connector: Connector, queue_name: str) -> None:
    now = time.time()
    async with Client(connector) as client:
        for i in range(3):
            await client.enqueue(Task("p", {"i": i}), queue=queue_name)
        await client.enqueue(Task("s"), queue=queue_name, process_in=60)
        await client.enqueue(Task("g"), queue=queue_name, group="g1")
    await go_task(connector, queue_name, "r1", "retry")
    await connector.client.zadd(key(queue_name, "retry"), {"r1": now + 30})
    await connector.client.set(key(queue_name, f"processed:{utc_date(now)}"), 7)
    await connector.client.set(key(queue_name, f"failed:{utc_date(now)}"), 2)
    await connector.client.set(key(queue_name, "processed"), 70)
    async with Inspector(connector) as inspector:
        assert queue_name in await inspector.queues()
        info = await inspector.queue_info(queue_name)
        assert (info.pending, info.scheduled, info.retry, info.aggregating, info.groups) == (
            3, 1, 1, 1, 1,
        )  # fmt: skip
        assert info.size == 6 and not info.paused
        assert (info.processed_today, info.failed_today, info.processed_total) == (7, 2, 70)
        assert timedelta(0) < info.latency < timedelta(seconds=60)
        assert info.memory_usage is None or info.memory_usage > 0
        await inspector.pause(queue_name)
        assert (await inspector.queue_info(queue_name)).paused
        with pytest.raises(TaskStateError, match="already paused"):
            await inspector.pause(queue_name)
        await inspector.unpause(queue_name)
        assert [g.size for g in await inspector.groups(queue_name)] == [1]


async def test_unknown_queue_and_task_are_clear_errors(
    connector: Connector, queue_name: str
) -> None:
    async with Inspector(connector) as inspector:
        with pytest.raises(QueueNotFoundError, match=f"queue '{queue_name}' does not exist"):
            await inspector.queue_info(queue_name)
        await go_task(connector, queue_name, "x", "pending")
        with pytest.raises(TaskNotFoundError, match="no task 'nope'"):
            await inspector.task_info(queue_name, "nope")
        with pytest.raises(InvalidOptionError, match="state must be one of"):
            await inspector.list_tasks(queue_name, "running")


async def test_an_id_listed_without_its_task_is_left_out_and_a_stateless_one_named(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        real = await client.enqueue(Task("real"), queue=queue_name)
    # What eviction or a write cut short leaves behind (asynq issue #1144).
    await connector.client.lpush(key(queue_name, "pending"), "ghost")
    async with Inspector(connector) as inspector:
        listed = await inspector.list_tasks(queue_name, "pending")
        assert [task.id for task in listed] == [real.id]
        await connector.client.hdel(key(queue_name, f"t:{real.id}"), "state")
        with pytest.raises(TaskDecodeError, match="has no valid state"):
            await inspector.task_info(queue_name, real.id)


async def test_history_reads_the_daily_counters(connector: Connector, queue_name: str) -> None:
    await go_task(connector, queue_name, "x", "pending")
    today = time.time()
    yesterday = today - 86400
    await connector.client.set(key(queue_name, f"processed:{utc_date(today)}"), 5)
    await connector.client.set(key(queue_name, f"failed:{utc_date(yesterday)}"), 3)
    async with Inspector(connector) as inspector:
        days = await inspector.history(queue_name, 3)
    assert [(d.date, d.processed, d.failed) for d in days] == [
        (utc_date(today), 5, 0),
        (utc_date(yesterday), 0, 3),
        (utc_date(today - 2 * 86400), 0, 0),
    ]


async def test_task_info_reads_go_written_tasks_in_every_state(
    connector: Connector, queue_name: str
) -> None:
    now = time.time()
    await go_task(connector, queue_name, "pend", "pending", pending_since=str(time.time_ns()))
    await connector.client.lpush(key(queue_name, "pending"), "pend")
    await go_task(connector, queue_name, "sched", "scheduled")
    await connector.client.zadd(key(queue_name, "scheduled"), {"sched": int(now) + 3600})
    await go_task(connector, queue_name, "done", "completed", result=b"ok")
    await connector.client.zadd(key(queue_name, "completed"), {"done": int(now) + 3600})
    await go_task(connector, queue_name, "run", "active")
    await connector.client.lpush(key(queue_name, "active"), "run")
    await connector.client.zadd(key(queue_name, "lease"), {"run": int(now) - 5})
    async with Inspector(connector) as inspector:
        pending = await inspector.task_info(queue_name, "pend")
        scheduled = await inspector.task_info(queue_name, "sched")
        completed = await inspector.task_info(queue_name, "done")
        active = await inspector.list_tasks(queue_name, "active")
    assert pending.state is TaskState.PENDING and pending.type == "go:task"
    assert scheduled.next_process_at == datetime.fromtimestamp(int(now) + 3600, UTC)
    assert completed.result == b"ok"
    assert [(t.id, t.is_orphaned) for t in active] == [("run", True)]


async def test_list_tasks_pages_oldest_first(connector: Connector, queue_name: str) -> None:
    async with Client(connector) as client:
        ids = [(await client.enqueue(Task("t"), queue=queue_name)).id for _ in range(5)]
        later = [
            (await client.enqueue(Task("t"), queue=queue_name, process_in=100 + i)).id
            for i in range(3)
        ]
    async with Inspector(connector) as inspector:
        first = await inspector.list_tasks(queue_name, "pending", page=1, size=2)
        second = await inspector.list_tasks(queue_name, "pending", page=2, size=2)
        third = await inspector.list_tasks(queue_name, "pending", page=3, size=2)
        scheduled = await inspector.list_tasks(queue_name, "scheduled")
    assert [t.id for t in first + second + third] == ids
    assert [t.id for t in scheduled] == later


async def test_single_task_actions(connector: Connector, queue_name: str) -> None:
    async with Client(connector) as client:
        scheduled = await client.enqueue(Task("s"), queue=queue_name, process_in=300)
        grouped = await client.enqueue(Task("g"), queue=queue_name, group="g1")
        unique = await client.enqueue(Task("u", {"a": 1}), queue=queue_name, unique=600)
    async with Inspector(connector) as inspector:
        await inspector.run_task(queue_name, scheduled.id)
        assert await task_state(connector, queue_name, scheduled.id) == "pending"
        with pytest.raises(TaskStateError, match="already pending"):
            await inspector.run_task(queue_name, scheduled.id)
        await inspector.archive_task(queue_name, grouped.id)
        assert await task_state(connector, queue_name, grouped.id) == "archived"
        assert await connector.client.smembers(key(queue_name, "groups")) == set()
        with pytest.raises(TaskStateError, match="already archived"):
            await inspector.archive_task(queue_name, grouped.id)
        await inspector.delete_task(queue_name, unique.id)
        assert not await connector.client.exists(key(queue_name, f"t:{unique.id}"))
        assert [
            k async for k in connector.client.scan_iter(match=key(queue_name, "unique:*"))
        ] == []
        with pytest.raises(TaskNotFoundError):
            await inspector.delete_task(queue_name, unique.id)


async def test_running_tasks_cannot_be_deleted_or_archived(
    connector: Connector, queue_name: str
) -> None:
    await go_task(connector, queue_name, "busy", "active")
    await connector.client.lpush(key(queue_name, "active"), "busy")
    async with Inspector(connector) as inspector:
        with pytest.raises(TaskStateError, match="is running"):
            await inspector.delete_task(queue_name, "busy")
        with pytest.raises(TaskStateError, match="is running"):
            await inspector.archive_task(queue_name, "busy")
        with pytest.raises(QueueNotEmptyError, match="running tasks"):
            await inspector.delete_queue(queue_name, force=True)


async def test_bulk_actions_release_locks_and_trim_with_hashes(
    connector: Connector, queue_name: str
) -> None:
    now = int(time.time())
    async with Client(connector) as client:
        for i in range(3):
            await client.enqueue(Task("u", {"i": i}), queue=queue_name, unique=600)
        for i in range(2):
            await client.enqueue(Task("s", {"i": i}), queue=queue_name, process_in=600)
    # An archived task older than 90 days, as a Go server may have left it.
    await go_task(connector, queue_name, "ancient", "archived")
    await connector.client.zadd(key(queue_name, "archived"), {"ancient": now - 91 * 86400})
    async with Inspector(connector) as inspector:
        assert await inspector.archive_all(queue_name, "scheduled") == 2
        assert not await connector.client.exists(key(queue_name, "t:ancient"))  # trimmed, hash too
        assert await inspector.delete_all(queue_name, "pending") == 3
        assert [
            k async for k in connector.client.scan_iter(match=key(queue_name, "unique:*"))
        ] == []
        assert await inspector.run_all(queue_name, "archived") == 2
        assert len(await inspector.list_tasks(queue_name, "pending")) == 2
        with pytest.raises(InvalidOptionError, match="group"):
            await inspector.run_all(queue_name, "aggregating")


async def test_delete_queue_leaves_no_key_behind(connector: Connector, queue_name: str) -> None:
    async with Client(connector) as client:
        await client.enqueue(Task("p"), queue=queue_name, unique=600)
        await client.enqueue(Task("g"), queue=queue_name, group="g1")
        await client.enqueue(Task("s"), queue=queue_name, process_in=60)
    await go_task(connector, queue_name, "kept", "completed")
    await connector.client.zadd(key(queue_name, "completed"), {"kept": time.time() + 600})
    await connector.client.set(key(queue_name, "processed"), 3)
    await connector.client.set(key(queue_name, f"failed:{utc_date(time.time())}"), 1)
    await connector.client.set(key(queue_name, "paused"), 1)
    async with Inspector(connector) as inspector:
        with pytest.raises(QueueNotEmptyError, match="force"):
            await inspector.delete_queue(queue_name)
        await inspector.delete_queue(queue_name, force=True)
        assert queue_name not in await inspector.queues()
    left = [k async for k in connector.client.scan_iter(match=key(queue_name, "*"))]
    assert left == []


async def test_delete_queue_also_deletes_fire_locks_and_dequeue_records(
    connector: Connector, queue_name: str
) -> None:
    """No list names these keys, so deleting the queue left them for minutes: a fire lock
    kept the queue, created again, from getting that fire (the periodic example failed
    when run twice within ten minutes). The queue's name may hold glob characters; keys of
    a queue that the unescaped name would match as a pattern are left alone."""
    odd, neighbour = f"{queue_name}-[x]*", f"{queue_name}-xy"
    async with Client(connector) as client:
        for queue in (odd, neighbour):
            fired = await client.enqueue_once(Task("tick"), {"queue": queue}, ("entry", 1800))
            assert fired is not None
            await connector.client.set(key(queue, "dequeue:token"), "ids", ex=600)
    async with Inspector(connector) as inspector:
        await inspector.delete_queue(odd, force=True)
    tag = f"{{{odd}}}".encode()
    assert [k async for k in connector.client.scan_iter(match="asynq:*") if tag in k] == []
    async with Client(connector) as client:
        again = await client.enqueue_once(Task("tick"), {"queue": odd}, ("entry", 1800))
        assert again is not None
        assert (
            await client.enqueue_once(Task("tick"), {"queue": neighbour}, ("entry", 1800)) is None
        )
    assert await connector.client.exists(key(neighbour, "dequeue:token"))


def hanging_mux() -> tuple[ServeMux, asyncio.Event]:
    """A mux whose "long" handler sets the event it returns, then runs until cancelled."""
    started = asyncio.Event()
    mux = ServeMux()

    @mux.handler("long")
    async def long(task: Task) -> None:
        started.set()
        await asyncio.Event().wait()

    return mux, started


async def test_cancel_reaches_the_worker_running_the_task(
    connector: Connector, queue_name: str
) -> None:
    mux, started = hanging_mux()
    async with Client(connector) as client:
        info = await client.enqueue(Task("long"), queue=queue_name)
    # Listed with the priorities as configured, as asynq's heartbeat lists them (6 and 3,
    # not the 2 and 1 the server serves them by).
    queues = {queue_name: 6, f"{queue_name}-low": 3}
    async with (
        running_server(connector, mux, queues) as server,
        Inspector(connector) as inspector,
    ):
        await eventually(started.is_set)
        await eventually(server.component("subscriber").subscribed.is_set)
        # The heartbeat writes the server's record and its workers together: wait for it.
        await eventually(lambda: _has_worker(inspector, server.identity.server_id, info.id))
        records = [s for s in await inspector.servers() if s.id == server.identity.server_id]
        assert records and records[0].queues == queues
        await inspector.cancel(info.id)
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))
    async with Inspector(connector) as inspector:
        task = await inspector.task_info(queue_name, info.id)
    assert task.last_error.startswith("TaskCanceledError") and task.retried == 1


async def test_a_task_left_saying_active_in_no_list_can_be_run_archived_or_deleted(
    connector: Connector, queue_name: str
) -> None:
    """asynq's scripts can leave a task's hash saying active while it is in no list (a
    lease lost in the middle of a write, asynq #1051). Refused as running, it could not
    be run, archived or deleted, and nothing else would ever take it back."""
    for task_id in ("to-run", "to-archive", "to-delete", "running"):
        await go_task(connector, queue_name, task_id, "active")
    await connector.client.lpush(key(queue_name, "active"), "running")
    async with Inspector(connector) as inspector:
        await inspector.run_task(queue_name, "to-run")
        await inspector.archive_task(queue_name, "to-archive")
        await inspector.delete_task(queue_name, "to-delete")
        with pytest.raises(TaskStateError, match="running"):
            await inspector.delete_task(queue_name, "running")
    assert await connector.client.lrange(key(queue_name, "pending"), 0, -1) == [b"to-run"]
    assert await task_state(connector, queue_name, "to-archive") == "archived"
    assert not await connector.client.exists(key(queue_name, "t:to-delete"))
    assert await task_state(connector, queue_name, "running") == "active"


async def test_a_cancel_right_after_a_stray_message_on_the_channel_still_arrives(
    connector: Connector, queue_name: str
) -> None:
    """A message on asynq:cancel that is not text (another program's) ended the worker's
    listening: a cancel sent in the half second before it listened again was lost."""
    mux, started = hanging_mux()
    async with Client(connector) as client:
        info = await client.enqueue(Task("long"), queue=queue_name)
    async with (
        running_server(connector, mux, {queue_name: 1}) as server,
        Inspector(connector) as inspector,
    ):
        await eventually(started.is_set)
        await eventually(server.component("subscriber").subscribed.is_set)
        await connector.execute("PUBLISH", "asynq:cancel", b"\xff\xfe")
        await inspector.cancel(info.id)
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))


async def test_scheduler_entries_written_by_go_are_listed(connector: Connector) -> None:
    scheduler_key = "asynq:schedulers:{host:1:sched-test}"
    entry = SchedulerEntry(
        id="entry-1", spec="@every 30s", task_type="report", task_payload=b"{}",
        enqueue_options=['Queue("reports")', "MaxRetry(3)"],
        next_enqueue_time=Timestamp(seconds=int(time.time()) + 30),
        prev_enqueue_time=Timestamp(seconds=-62135596800),  # Go's zero time: never
    )  # fmt: skip
    await connector.client.lpush(scheduler_key, entry.SerializeToString())
    await connector.client.zadd("asynq:schedulers", {scheduler_key: int(time.time()) + 60})
    event = SchedulerEnqueueEvent(task_id="t-1", enqueue_time=Timestamp(seconds=int(time.time())))
    await connector.client.zadd("asynq:scheduler_history:entry-1", {event.SerializeToString(): 1})
    try:
        async with Inspector(connector) as inspector:
            entries = [e for e in await inspector.scheduler_entries() if e.id == "entry-1"]
            history = await inspector.scheduler_history("entry-1")
        assert entries[0].spec == "@every 30s" and entries[0].prev_enqueue is None
        assert entries[0].options == ['Queue("reports")', "MaxRetry(3)"]
        assert [e.task_id for e in history] == ["t-1"]
    finally:
        await connector.client.zrem("asynq:schedulers", scheduler_key)
        await connector.client.delete(scheduler_key, "asynq:scheduler_history:entry-1")


async def test_cluster_slot_and_nodes_match_cluster_shards(
    cluster_connector: Connector, redis_cluster: ClusterTarget
) -> None:
    if redis_cluster.harness is None:
        pytest.skip("needs the harness's own cluster to know its layout")
    async with Inspector(cluster_connector) as inspector:
        for queue, slot in (("images", 9450), ("notifications", 16340), ("webhooks", 4418)):
            assert inspector.cluster_key_slot(queue) == slot
            nodes = await inspector.cluster_nodes(queue)
            master, replicas = redis_cluster.harness.slot_owner(slot)
            assert [n.address for n in nodes] == [master, *replicas]
            assert nodes[0].role == "master" and len(nodes[0].id) == 40


async def test_cluster_nodes_without_cluster_shards_agree(cluster_connector: Connector) -> None:
    """Redis 6.2 has no CLUSTER SHARDS: the CLUSTER NODES fallback gives the same answer."""
    async with Inspector(cluster_connector) as inspector:
        for queue in ("images", "notifications", "webhooks"):
            slot = inspector.cluster_key_slot(queue)
            from_shards = await inspector.cluster_nodes(queue)
            fallback = await inspector._nodes_from_cluster_nodes(queue, slot)
            assert [(n.id, n.address, n.role) for n in fallback] == [
                (n.id, n.address, n.role) for n in from_shards
            ]


async def test_cluster_nodes_on_a_single_redis_is_a_clear_error(
    standalone_connector: Connector,
) -> None:
    async with Inspector(standalone_connector) as inspector:
        with pytest.raises(InvalidOptionError, match="needs a Redis Cluster"):
            await inspector.cluster_nodes("images")


async def _has_worker(inspector: Inspector, server_id: str, task_id: str) -> bool:
    for record in await inspector.servers():
        if record.id == server_id:
            return task_id in [w.task_id for w in record.active_workers]
    return False
