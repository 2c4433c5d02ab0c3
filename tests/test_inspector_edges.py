"""Inspector operations at the edges asynq's own tools meet: tasks an aggregator holds,
ids whose task is gone, corrupt records, queues paused before their first task."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from asyncq import Client, Connector, Inspector, Task, TaskStateError
from asyncq._broker.groups import GroupBroker
from asyncq._broker.keys import scheduler_history_key
from asyncq._broker.rdb import Broker
from asyncq._proto.asynq_pb2 import SchedulerEnqueueEvent, ServerInfo
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
