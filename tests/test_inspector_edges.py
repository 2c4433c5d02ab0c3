"""Inspector operations at the edges asynq's own tools meet: tasks an aggregator holds,
ids whose task is gone, corrupt records, queues paused before their first task."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import asyncq.inspector as inspector_module
from asyncq import Client, Connector, Inspector, Task, TaskInfo, TaskStateError
from asyncq._broker.groups import GroupBroker
from asyncq._broker.keys import scheduler_history_key
from asyncq._broker.rdb import Broker
from asyncq._proto.asynq_pb2 import (
    SchedulerEnqueueEvent,
    SchedulerEntry,
    ServerInfo,
    TaskMessage,
    WorkerInfo,
)
from tests.worker_helpers import key

CORRUPT = b"\x0a\x05ab"  # a field that says five bytes follow, and two do


async def _held_by_an_aggregator(connector: Connector, queue: str) -> tuple[str, str]:
    """A grouped task just moved into an aggregation set, as between an aggregator's check
    and its delete (its state is still 'aggregating'); returns its id and the set's key."""
    async with Client(connector) as client:
        task = await client.enqueue(Task("g", {"n": 1}), queue=queue, group="g1")
    broker = Broker(connector)
    keys = broker.keys(queue)
    set_key = f"{keys.group('g1')}:set-{uuid.uuid4()}"
    checked = await GroupBroker(broker).check(
        keys, "g1", set_key, max_size=1, max_delay=0, grace=0, now=time.time()
    )
    assert checked
    return task.id, set_key


@pytest.mark.parametrize("operation", ["run_task", "archive_task", "delete_task"])
async def test_a_task_an_aggregator_holds_is_refused_and_left_where_it_is(
    connector: Connector, queue_name: str, operation: str
) -> None:
    """Moved anyway, it would be both pending (or archived) and in the set the aggregator
    reads and then deletes, or back in its group if the set is reclaimed."""
    task_id, set_key = await _held_by_an_aggregator(connector, queue_name)
    async with Inspector(connector) as inspector:
        with pytest.raises(TaskStateError, match="is being aggregated right now"):
            await getattr(inspector, operation)(queue_name, task_id)
    assert await connector.client.zrange(set_key, 0, -1) == [task_id.encode()]
    task_key = key(queue_name, f"t:{task_id}")
    assert await connector.client.hget(task_key, "state") == b"aggregating"
    assert await connector.client.llen(key(queue_name, "pending")) == 0
    assert await connector.client.zcard(key(queue_name, "archived")) == 0


async def test_run_all_and_archive_all_drop_ids_whose_task_is_gone(
    connector: Connector, queue_name: str
) -> None:
    """Such ids (asynq leaves some, eviction others) used to become hashes with a state and
    no message: listed as a task with no id, counted, and never deleted."""
    async with Client(connector) as client:
        real = await client.enqueue(Task("r"), queue=queue_name, process_in=600)
    now = int(time.time())
    await connector.client.zadd(key(queue_name, "scheduled"), {"ghost-1": now + 60})
    await connector.client.zadd(key(queue_name, "archived"), {"ghost-2": now})
    async with Inspector(connector) as inspector:
        assert await inspector.archive_all(queue_name, "scheduled") == 1
        assert [t.id for t in await inspector.list_tasks(queue_name, "archived")] == [real.id]
        assert await inspector.run_all(queue_name, "archived") == 1
        assert [t.id for t in await inspector.list_tasks(queue_name, "pending")] == [real.id]
        assert (await inspector.queue_info(queue_name)).size == 1
    for ghost in ("ghost-1", "ghost-2"):
        assert not await connector.client.exists(key(queue_name, f"t:{ghost}"))


async def test_a_corrupt_task_is_left_out_of_its_page_and_logged(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As asynq's listings skip bad data: one corrupt task used to fail the whole page."""
    async with Client(connector) as client:
        ids = [(await client.enqueue(Task("t"), queue=queue_name)).id for _ in range(3)]
    await connector.client.hset(key(queue_name, f"t:{ids[1]}"), "msg", CORRUPT)
    # A hash whose state field was lost is listed in the state it is listed under.
    await connector.client.hdel(key(queue_name, f"t:{ids[2]}"), "state")
    with caplog.at_level(logging.WARNING, logger="asyncq.inspector"):
        async with Inspector(connector) as inspector:
            listed = await inspector.list_tasks(queue_name, "pending")
    assert [(t.id, t.state.value) for t in listed] == [(ids[0], "pending"), (ids[2], "pending")]
    assert ids[1] in caplog.text


async def test_corrupt_server_and_scheduler_records_are_left_out(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt heartbeat used to end `asyncq server ls` in a traceback."""
    live = int(time.time()) + 60
    good, bad = f"asynq:servers:{{{queue_name}-good}}", f"asynq:servers:{{{queue_name}-bad}}"
    info = ServerInfo(host=queue_name, pid=1, server_id=f"{queue_name}-good", concurrency=3)
    history = scheduler_history_key(f"{queue_name}-entry")
    event = SchedulerEnqueueEvent(task_id="kept", enqueue_time=Timestamp(seconds=live))
    try:
        await connector.execute("ZADD", "asynq:servers", live, good, live, bad)
        await connector.execute("SET", good, info.SerializeToString(), "EX", 60)
        await connector.execute("SET", bad, CORRUPT, "EX", 60)
        await connector.execute("ZADD", history, 1, CORRUPT, 2, event.SerializeToString())
        with caplog.at_level(logging.WARNING, logger="asyncq.inspector"):
            async with Inspector(connector) as inspector:
                servers = [s.id for s in await inspector.servers() if s.host == queue_name]
                events = await inspector.scheduler_history(f"{queue_name}-entry")
    finally:
        await connector.execute("ZREM", "asynq:servers", good, bad)
        for name in (good, bad, history):
            await connector.execute("DEL", name)
    assert servers == [f"{queue_name}-good"]
    assert [e.task_id for e in events] == ["kept"]
    assert bad in caplog.text


async def test_a_queue_can_be_paused_before_its_first_task_and_resumed_after_asynq(
    connector: Connector, queue_name: str
) -> None:
    """asynq's PauseQueue does not ask for the queue to exist; a queue its tools paused
    before the first enqueue could not be resumed from asyncq."""
    async with Inspector(connector) as inspector:
        await inspector.pause(queue_name)
        assert await connector.client.exists(key(queue_name, "paused"))
        await inspector.unpause(queue_name)
        assert not await connector.client.exists(key(queue_name, "paused"))
        await connector.client.set(key(queue_name, "paused"), int(time.time()), nx=True)  # asynq's
        await inspector.unpause(queue_name)
        with pytest.raises(TaskStateError, match="is not paused"):
            await inspector.unpause(queue_name)
    assert not await connector.client.exists(key(queue_name, "paused"))


async def test_a_page_far_past_the_end_is_empty(connector: Connector, queue_name: str) -> None:
    """Lua's numbers are doubles: such a page used to fail with Redis's 'value is not an
    integer'. asynq answers an empty page."""
    async with Client(connector) as client:
        await client.enqueue(Task("t"), queue=queue_name)
        await client.enqueue(Task("t"), queue=queue_name, process_in=60)
    async with Inspector(connector) as inspector:
        for state in ("pending", "scheduled"):
            assert await inspector.list_tasks(queue_name, state, page=10**15, size=1000) == []
            huge = await inspector.list_tasks(queue_name, state, page=1, size=10**18)
            assert len(huge) == 1


# -- data other writers can leave: times, rows, names and counters asyncq would not write ------

LATEST = datetime.max.replace(tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


async def _store(
    connector: Connector, queue: str, msg: TaskMessage, state: str, score: float
) -> None:
    """A task as another writer (a Go client, a hand-written HSET) could store it."""
    await connector.client.hset(
        key(queue, f"t:{msg.id}"), mapping={"msg": msg.SerializeToString(), "state": state}
    )
    await connector.client.zadd(key(queue, state), {msg.id: score})
    await connector.client.sadd("asynq:queues", queue)


async def test_times_past_what_a_datetime_holds_read_as_the_earliest_or_latest_it_holds(
    connector: Connector, queue_name: str
) -> None:
    """Go's tools print any int64 time; such a deadline, failure or completion time, a
    schedule written in milliseconds, or a huge timeout or retention used to end the
    listing and `task inspect` in OSError, ValueError or OverflowError."""
    now = time.time()
    odd = {
        "late": TaskMessage(deadline=INT64_MAX, last_failed_at=INT64_MAX, completed_at=INT64_MAX),
        "early": TaskMessage(deadline=INT64_MIN, last_failed_at=-(10**12)),
        "long": TaskMessage(timeout=INT64_MAX, retention=INT64_MAX),
        "negative": TaskMessage(timeout=INT64_MIN, retention=INT64_MIN),
        "ms": TaskMessage(deadline=253402300800),  # the first second of year 10000
    }
    for task_id, msg in odd.items():
        msg.id, msg.type, msg.queue = task_id, "t", queue_name
        score = now * 1000 if task_id == "ms" else now + 60  # "ms": a score in milliseconds
        await _store(connector, queue_name, msg, "scheduled", score)
    async with Inspector(connector) as inspector:
        listed = {t.id: t for t in await inspector.list_tasks(queue_name, "scheduled")}
        assert listed == {i: await inspector.task_info(queue_name, i) for i in odd}
    late, early, long, negative, ms = (listed[i] for i in odd)
    assert late.deadline == late.last_failed_at == late.completed_at == LATEST
    assert early.deadline == early.last_failed_at == EARLIEST
    assert long.timeout == long.retention == timedelta.max
    assert negative.timeout == negative.retention == timedelta.min
    assert ms.deadline == ms.next_process_at == LATEST


async def test_server_and_scheduler_times_past_what_a_datetime_holds_are_clamped(
    connector: Connector, queue_name: str
) -> None:
    """A heartbeat or scheduler record with a huge Timestamp (another writer's) used to
    fail `server ls`, `cron ls` and `cron history` with a traceback."""
    live = int(time.time()) + 60
    server = f"asynq:servers:{{{queue_name}}}"
    workers = f"asynq:workers:{{{queue_name}}}"
    scheduler = f"asynq:schedulers:{{{queue_name}}}"
    history = scheduler_history_key(f"{queue_name}-entry")
    info = ServerInfo(host=queue_name, server_id=queue_name, start_time=Timestamp(seconds=2**62))
    worker = WorkerInfo(task_id="w", start_time=Timestamp(seconds=-(2**62)),
                        deadline=Timestamp(seconds=2**40))  # fmt: skip
    entry = SchedulerEntry(id=f"{queue_name}-entry", next_enqueue_time=Timestamp(seconds=2**40),
                           prev_enqueue_time=Timestamp(seconds=2**40))  # fmt: skip
    event = SchedulerEnqueueEvent(task_id="e", enqueue_time=Timestamp(seconds=2**40))
    try:
        await connector.execute("ZADD", "asynq:servers", live, server)
        await connector.execute("SET", server, info.SerializeToString(), "EX", 60)
        await connector.execute("HSET", workers, "w", worker.SerializeToString())
        await connector.execute("ZADD", "asynq:schedulers", live, scheduler)
        await connector.execute("RPUSH", scheduler, entry.SerializeToString())
        await connector.execute("ZADD", history, 1, event.SerializeToString())
        async with Inspector(connector) as inspector:
            [found] = [s for s in await inspector.servers() if s.host == queue_name]
            [listed] = [e for e in await inspector.scheduler_entries() if e.id == entry.id]
            events = await inspector.scheduler_history(entry.id)
    finally:
        await connector.execute("ZREM", "asynq:servers", server)
        await connector.execute("ZREM", "asynq:schedulers", scheduler)
        for name in (server, workers, scheduler, history):
            await connector.execute("DEL", name)
    assert found.started == LATEST
    assert [(w.started, w.deadline) for w in found.active_workers] == [(EARLIEST, LATEST)]
    assert listed.next_enqueue == listed.prev_enqueue == LATEST
    assert [(e.task_id, e.enqueued_at) for e in events] == [("e", LATEST)]


async def test_a_row_that_fails_in_any_way_is_left_out_of_its_page_and_logged(
    connector: Connector,
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a corrupt message was left out; any other failure reading one row (whatever
    another writer stored) failed the whole page, and `task ls` with it."""
    async with Client(connector) as client:
        ids = [(await client.enqueue(Task("t"), queue=queue_name)).id for _ in range(3)]
    real = inspector_module.task_info

    def failing_for_one(msg: TaskMessage, *args: Any) -> TaskInfo:
        if msg.id == ids[1]:
            raise RuntimeError("unreadable row")
        return real(msg, *args)

    monkeypatch.setattr(inspector_module, "task_info", failing_for_one)
    with caplog.at_level(logging.WARNING, logger="asyncq.inspector"):
        async with Inspector(connector) as inspector:
            listed = await inspector.list_tasks(queue_name, "pending")
    assert [t.id for t in listed] == [ids[0], ids[2]]
    assert ids[1] in caplog.text and "RuntimeError: unreadable row" in caplog.text


async def test_an_id_or_state_that_is_not_utf8_does_not_fail_its_page(
    connector: Connector, queue_name: str
) -> None:
    """Such a member of a queue's set (another writer's) failed the listing with
    UnicodeDecodeError. With a task it is listed (by its message's id); without, left out."""
    async with Client(connector) as client:
        real = await client.enqueue(Task("t"), queue=queue_name, process_in=60)
    odd_id = b"odd-\xff"
    msg = TaskMessage(id="odd", type="t", queue=queue_name)
    await connector.client.hset(
        key(queue_name, "t:").encode() + odd_id,
        mapping={"msg": msg.SerializeToString(), "state": b"\xfe"},
    )
    score = time.time() + 120
    await connector.client.zadd(key(queue_name, "scheduled"), {odd_id: score, b"\xff": score})
    async with Inspector(connector) as inspector:
        listed = await inspector.list_tasks(queue_name, "scheduled")
    assert [(t.id, t.state.value) for t in listed] == [(real.id, "scheduled"), ("odd", "scheduled")]


async def test_global_set_members_that_are_not_utf8_are_skipped_and_logged(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One such member of asynq:queues, asynq:servers or asynq:schedulers (no asynq or
    asyncq writes one) made `stats`, `queue ls`, `server ls` and `cron ls` fail with
    UnicodeDecodeError."""
    odd = b"\xff" + queue_name.encode()
    live = int(time.time()) + 60
    async with Client(connector) as client:
        await client.enqueue(Task("t"), queue=queue_name)
    try:
        await connector.execute("SADD", "asynq:queues", odd)
        await connector.execute("ZADD", "asynq:servers", live, odd)
        await connector.execute("ZADD", "asynq:schedulers", live, odd)
        with caplog.at_level(logging.WARNING, logger="asyncq.inspector"):
            async with Inspector(connector) as inspector:
                queues = await inspector.queues()
                await inspector.servers()
                await inspector.scheduler_entries()
    finally:
        await connector.execute("SREM", "asynq:queues", odd)
        await connector.execute("ZREM", "asynq:servers", odd)
        await connector.execute("ZREM", "asynq:schedulers", odd)
    assert queue_name in queues
    for name in ("asynq:queues", "asynq:servers", "asynq:schedulers"):
        assert f"{odd!r} in {name}: its name is not UTF-8" in caplog.text


async def test_counters_that_are_not_whole_numbers_read_leniently(
    connector: Connector, queue_name: str
) -> None:
    """A counter or pending_since that is not a number cut the stats script's reply short
    ('not enough values to unpack' in `queue inspect` and `stats`), and a daily counter
    of "1.5" failed `queue history`. A fraction now counts its whole part, garbage 0."""
    async with Client(connector) as client:
        task = await client.enqueue(Task("t"), queue=queue_name)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    await connector.client.set(key(queue_name, "processed"), "abc")
    await connector.client.set(key(queue_name, "failed"), "12.7")
    await connector.client.set(key(queue_name, f"processed:{day}"), "1.5")
    await connector.client.set(key(queue_name, f"failed:{day}"), "x")
    await connector.client.hset(key(queue_name, f"t:{task.id}"), "pending_since", "soon")
    async with Inspector(connector) as inspector:
        info = await inspector.queue_info(queue_name)
        [today] = await inspector.history(queue_name, 1)
    assert (info.processed_total, info.failed_total) == (0, 12)
    assert (info.processed_today, info.failed_today) == (1, 0)
    assert (info.pending, info.latency) == (1, timedelta(0))
    assert (today.date, today.processed, today.failed) == (day, 1, 0)
