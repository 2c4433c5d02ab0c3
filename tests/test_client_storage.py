"""Client.enqueue stores every option exactly as asynq v0.26 does, on both topologies."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from asyncq import (
    Client,
    ConnectionFailedError,
    Connector,
    DuplicateTaskError,
    InvalidOptionError,
    Task,
    TaskIdConflictError,
    TaskInfo,
    TaskState,
)
from asyncq._broker.keys import QueueKeys
from asyncq._broker.message import decode_message
from asyncq._broker.scripts import load_script
from asyncq.testing import ManualClock, eventually

pytestmark = pytest.mark.usefixtures("connector")


def prefix(queue: str) -> str:
    return f"asynq:{{{queue}}}:"


async def hgetall(connector: Connector, key: str) -> dict[bytes, bytes]:
    result: dict[bytes, bytes] = await connector.client.hgetall(key)
    return result


async def test_default_enqueue_writes_asynqs_three_fields(
    connector: Connector, queue_name: str
) -> None:
    before = time.time_ns()
    async with Client(connector) as client:
        info = await client.enqueue(Task("email:send", {"to": 1}), queue=queue_name)
    after = time.time_ns()

    assert info.state is TaskState.PENDING and info.queue == queue_name
    assert info.max_retry == 25 and info.timeout == timedelta(minutes=30)
    task_hash = await hgetall(connector, f"{prefix(queue_name)}t:{info.id}")
    assert set(task_hash) == {b"msg", b"state", b"pending_since"}
    assert task_hash[b"state"] == b"pending"
    assert before <= int(task_hash[b"pending_since"]) <= after
    msg = decode_message(task_hash[b"msg"])
    assert (msg.id, msg.type, msg.payload, msg.retry, msg.timeout) == (
        info.id,
        "email:send",
        b'{"to":1}',
        25,
        1800,
    )
    assert await connector.client.lrange(f"{prefix(queue_name)}pending", 0, -1) == [
        info.id.encode()
    ]
    assert await connector.client.sismember("asynq:queues", queue_name)


async def test_options_land_in_the_message(connector: Connector, queue_name: str) -> None:
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    async with Client(connector) as client:
        info = await client.enqueue(
            Task("report", b"\x00raw", headers={"trace-id": "t1"}),
            queue=queue_name,
            max_retry=3,
            timeout=timedelta(seconds=90),
            deadline=deadline,
            retention=timedelta(hours=24),
            task_id="fixed-id-1",
        )
    assert info.id == "fixed-id-1" and info.deadline == deadline
    raw = await connector.client.hget(f"{prefix(queue_name)}t:fixed-id-1", "msg")
    msg = decode_message(raw)
    assert (msg.retry, msg.timeout, msg.deadline, msg.retention) == (3, 90, 1893456000, 86400)
    assert msg.payload == b"\x00raw" and dict(msg.headers) == {"trace-id": "t1"}


async def test_process_in_schedules_with_a_seconds_score(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        before = int(time.time())
        info = await client.enqueue(Task("later"), queue=queue_name, process_in=timedelta(hours=1))
        after = int(time.time())
    assert info.state is TaskState.SCHEDULED
    score = await connector.client.zscore(f"{prefix(queue_name)}scheduled", info.id)
    assert before + 3600 <= score <= after + 3600
    task_hash = await hgetall(connector, f"{prefix(queue_name)}t:{info.id}")
    assert task_hash[b"state"] == b"scheduled" and set(task_hash) == {b"msg", b"state"}
    assert not await connector.client.exists(f"{prefix(queue_name)}pending")


async def test_process_at_in_the_past_is_pending_now(connector: Connector, queue_name: str) -> None:
    async with Client(connector) as client:
        info = await client.enqueue(
            Task("now"), queue=queue_name, process_at=datetime(2001, 1, 1, tzinfo=UTC)
        )
    assert info.state is TaskState.PENDING
    assert await connector.client.llen(f"{prefix(queue_name)}pending") == 1


async def test_unique_blocks_a_duplicate_until_the_lock_expires(
    connector: Connector, queue_name: str
) -> None:
    lock = f"{prefix(queue_name)}unique:sync:" + "f184cb776799d7f8bfcc2796810e627d"
    async with Client(connector) as client:
        first = await client.enqueue(Task("sync", {"to": 1}), queue=queue_name, unique=1)
        assert await connector.client.get(lock) == first.id.encode()
        task_hash = await hgetall(connector, f"{prefix(queue_name)}t:{first.id}")
        assert task_hash[b"unique_key"] == lock.encode()
        with pytest.raises(DuplicateTaskError, match="already queued"):
            await client.enqueue(Task("sync", {"to": 1}), queue=queue_name, unique=1)
        # A different payload is a different task.
        await client.enqueue(Task("sync", {"to": 2}), queue=queue_name, unique=1)

        async def lock_gone() -> bool:
            return not await connector.client.exists(lock)

        await eventually(lock_gone, within=5, what="the unique lock's expiry")
        again = await client.enqueue(Task("sync", {"to": 1}), queue=queue_name, unique=60)
    assert 55 <= await connector.client.ttl(lock) <= 60
    assert await connector.client.llen(f"{prefix(queue_name)}pending") == 3
    assert again.id != first.id


async def test_group_adds_to_the_aggregation_set(connector: Connector, queue_name: str) -> None:
    async with Client(connector) as client:
        info = await client.enqueue(Task("batch"), queue=queue_name, group="g1")
    assert info.state is TaskState.AGGREGATING and info.group == "g1"
    task_hash = await hgetall(connector, f"{prefix(queue_name)}t:{info.id}")
    assert task_hash[b"state"] == b"aggregating" and task_hash[b"group"] == b"g1"
    assert decode_message(task_hash[b"msg"]).group_key == "g1"
    assert await connector.client.zscore(f"{prefix(queue_name)}g:g1", info.id) is not None
    assert await connector.client.smembers(f"{prefix(queue_name)}groups") == {b"g1"}


async def test_scheduled_group_task_keeps_its_group(connector: Connector, queue_name: str) -> None:
    """asynq drops the group of a scheduled task, so it later skips aggregation; asyncq keeps it."""
    async with Client(connector) as client:
        info = await client.enqueue(Task("batch"), queue=queue_name, group="g1", process_in=60)
    assert info.state is TaskState.SCHEDULED
    task_hash = await hgetall(connector, f"{prefix(queue_name)}t:{info.id}")
    assert task_hash[b"group"] == b"g1" and task_hash[b"state"] == b"scheduled"


async def test_reused_task_id_is_refused_without_leaving_a_lock(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        await client.enqueue(Task("a"), queue=queue_name, task_id="same")
        with pytest.raises(TaskIdConflictError, match="'same' is already used"):
            await client.enqueue(Task("a"), queue=queue_name, task_id="same")
        with pytest.raises(TaskIdConflictError):
            await client.enqueue(Task("b", {"x": 1}), queue=queue_name, task_id="same", unique=60)
    keys = [k async for k in _scan(connector, f"{prefix(queue_name)}unique:*")]
    assert keys == [], "an id conflict must not leave a unique lock behind (asynq bug)"
    assert await connector.client.llen(f"{prefix(queue_name)}pending") == 1


@pytest.mark.parametrize(
    "options",
    [
        {"queue": ""},
        {"queue": "bad{name}"},
        {"max_retry": -1},
        {"process_at": datetime(2030, 1, 1, tzinfo=UTC), "process_in": 1},
        {"deadline": datetime(2030, 1, 1)},
        {"colour": "blue"},
    ],
    ids=["blank-queue", "braces", "negative-retry", "at-and-in", "naive", "unknown"],
)
async def test_bad_input_writes_nothing(
    connector: Connector, queue_name: str, options: dict[str, Any]
) -> None:
    options.setdefault("queue", queue_name)
    async with Client(connector) as client:
        with pytest.raises(InvalidOptionError):
            await client.enqueue(Task("x"), **options)
    assert not await connector.client.sismember("asynq:queues", queue_name)
    assert [k async for k in _scan(connector, f"{prefix(queue_name)}*")] == []


async def test_unserialisable_payload_fails_before_any_write(
    connector: Connector, queue_name: str
) -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        Task("x", object())
    assert not await connector.client.sismember("asynq:queues", queue_name)


async def _scan(connector: Connector, pattern: str) -> Any:
    """Every key matching ``pattern`` on every node (SCAN goes to all masters on a cluster)."""
    async for key in connector.client.scan_iter(match=pattern):
        yield key


@pytest.mark.parametrize("script", ["enqueue", "schedule", "add_to_group"])
async def test_a_resent_store_of_the_same_message_is_a_success(
    connector: Connector, queue_name: str, script: str
) -> None:
    """The enqueue-family scripts, sent again after a lost reply (last argument "1"),
    take their own stored message for success; any other message is still a conflict."""
    keys = QueueKeys(queue_name)
    task_key = keys.task("t1")
    script_keys = {
        "enqueue": [task_key, keys.pending],
        "schedule": [task_key, keys.scheduled, keys.groups],
        "add_to_group": [task_key, keys.group("g"), keys.groups],
    }[script]

    def args(msg: bytes, resent: str) -> list[str | bytes | int]:
        by_script: dict[str, list[str | bytes | int]] = {
            "enqueue": [msg, "t1", 1, keys.wakeup, 0, "", 0, resent],
            "schedule": [msg, 2_000_000_000, "t1", "", 0, "", 0, resent],
            "add_to_group": [msg, "t1", 1, "g", 0, "", 0, resent],
        }
        return by_script[script]

    run = partial(connector.run_script, load_script(script), script_keys)
    assert await run(args(b"mine", "0")) == 1
    assert await run(args(b"mine", "0")) == 0  # a first send: the id is taken
    assert await run(args(b"mine", "1")) == 1  # a re-send finds its own message
    assert await run(args(b"other", "1")) == 0  # someone else's task keeps its id


async def test_enqueue_returns_every_field_of_the_task_it_stored(
    connector: Connector, queue_name: str
) -> None:
    # The returned TaskInfo is built field by field in TaskInfo's order; each field here
    # has a value of its own, so a field put in another's place shows.
    clock = ManualClock(1_800_000_000.25)
    deadline = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    task = Task("email:send", {"to": 1}, headers={"trace": "abc"})
    async with Client(connector, clock=clock) as client:
        info = await client.enqueue(
            task, queue=queue_name, max_retry=3, timeout=5, deadline=deadline, retention=60
        )
    assert info == TaskInfo(
        id=info.id,
        queue=queue_name,
        type="email:send",
        payload=b'{"to":1}',
        state=TaskState.PENDING,
        max_retry=3,
        headers={"trace": "abc"},
        timeout=timedelta(seconds=5),
        deadline=deadline,
        next_process_at=datetime.fromtimestamp(1_800_000_000.25, UTC),
        retention=timedelta(seconds=60),
    )
    assert info.headers is not task.headers  # the caller may change its task afterwards


class _TickingClock(ManualClock):
    """A clock that moves one millisecond every time it is read."""

    def time_ns(self) -> int:
        self.advance(0.001)
        return super().time_ns()


async def test_next_process_at_of_a_pending_task_is_when_it_was_stored(
    connector: Connector, queue_name: str
) -> None:
    # Single enqueues made together are written in one group: each TaskInfo says when
    # the group was written, which is the pending_since stored with the task.
    async with Client(connector, clock=_TickingClock(1_800_000_000.0)) as client:
        infos = await asyncio.gather(
            *(client.enqueue(Task("t", {"n": n}), queue=queue_name) for n in range(20))
        )
    for info in infos:
        raw = await connector.client.hget(f"asynq:{{{queue_name}}}:t:{info.id}", "pending_since")
        assert raw is not None
        assert info.next_process_at == datetime.fromtimestamp(int(raw) / 1e9, UTC)
    assert len({info.next_process_at for info in infos}) < len(infos)  # groups share one


async def test_next_process_at_from_enqueue_many_is_when_the_batch_was_stored(
    connector: Connector, queue_name: str
) -> None:
    # Batches are written one after another: each task's TaskInfo says when its own batch
    # was written (its pending_since), not when the call began. Every third task has
    # options of its own and still travels in a batch.
    tasks = [
        (Task("t", {"n": n}), {"max_retry": 2}) if n % 3 == 0 else Task("t", {"n": n})
        for n in range(2_500)
    ]
    async with Client(connector, clock=_TickingClock(1_800_000_000.0)) as client:
        results = await client.enqueue_many(tasks, queue=queue_name)
    infos = [result.info for result in results]
    for info in infos:
        assert info is not None
        raw = await connector.client.hget(f"asynq:{{{queue_name}}}:t:{info.id}", "pending_since")
        assert raw is not None
        assert info.next_process_at == datetime.fromtimestamp(int(raw) / 1e9, UTC)
    assert len({info.next_process_at for info in infos if info is not None}) == 3  # 3 batches


async def test_a_burst_of_first_enqueues_registers_the_queue_once(
    connector: Connector, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 32 calls that all find the queue unregistered share one SADD: counted as sent by
    # this client (the server's own counters also hold other clients' and scripts' SADDs).
    sent: list[tuple[Any, ...]] = []
    execute = connector.execute

    async def counting(*args: Any) -> Any:
        sent.append(args)
        return await execute(*args)

    monkeypatch.setattr(connector, "execute", counting)
    async with Client(connector) as client:
        await asyncio.gather(*(client.enqueue(Task("t"), queue=queue_name) for _ in range(32)))
    assert [args for args in sent if args[0] == "SADD"] == [("SADD", "asynq:queues", queue_name)]
    assert await connector.client.sismember("asynq:queues", queue_name)


async def test_a_failed_registration_is_tried_again_by_the_next_enqueue(
    connector: Connector, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute = connector.execute
    refusals = [ConnectionFailedError("on-purpose:6379", 0.0)]

    async def refusing_once(*args: Any) -> Any:
        if args[0] == "SADD" and refusals:
            raise refusals.pop()
        return await execute(*args)

    monkeypatch.setattr(connector, "execute", refusing_once)
    async with Client(connector) as client:
        with pytest.raises(ConnectionFailedError, match="on-purpose"):
            await client.enqueue(Task("t"), queue=queue_name)
        await client.enqueue(Task("t"), queue=queue_name)
    assert await connector.client.sismember("asynq:queues", queue_name)
