"""Aggregation groups: each trigger, asynq's bugs fixed, and no task lost to a crash."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest

from asyncq import Client, Connector, Inspector, ServeMux, Task
from asyncq._broker.groups import GroupBroker
from asyncq._broker.rdb import Broker
from asyncq.testing import ManualClock, eventually
from tests.worker_helpers import key, running_server, task_message


def aggregate(group: str, tasks: list[Task]) -> Task:
    return Task("batch", {"group": group, "items": [t.json() for t in tasks]})


def batch_mux(batches: list[dict[str, Any]]) -> ServeMux:
    mux = ServeMux()

    @mux.handler("batch")
    async def handle(task: Task) -> None:
        batches.append(task.json())

    return mux


GROUPS = {"group_aggregator": aggregate, "group_check_interval": 0.02}


async def test_max_size_triggers_aggregation(connector: Connector, queue_name: str) -> None:
    batches: list[dict[str, Any]] = []
    async with Client(connector) as client:
        infos = [
            await client.enqueue(Task("item", {"n": n}), queue=queue_name, group="g")
            for n in range(3)
        ]
    async with running_server(
        connector, batch_mux(batches), {queue_name: 1}, group_max_size=3, **GROUPS
    ):
        await eventually(lambda: len(batches) == 1)
    # Tasks added in the same second come in id order, as in asynq: compare as a set.
    assert [b["group"] for b in batches] == ["g"]
    assert sorted(item["n"] for item in batches[0]["items"]) == [0, 1, 2]
    for info in infos:  # the originals are gone once the aggregated task is stored
        assert not await connector.client.exists(key(queue_name, f"t:{info.id}"))
    assert await connector.client.smembers(key(queue_name, "groups")) == set()
    assert await connector.client.zcard(key(queue_name, "aggregation_sets")) == 0


async def test_an_aggregation_slower_than_its_set_deadline_is_not_enqueued_twice(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock()
    batches: list[dict[str, Any]] = []
    release, calls, returned = asyncio.Event(), [], []

    async def slow(group: str, tasks: list[Task]) -> Task:
        calls.append(len(tasks))
        if len(calls) == 1:
            await release.wait()  # slow I/O, or a paused process
        returned.append(len(calls))
        return aggregate(group, tasks)

    async with Client(connector) as client:
        for n in range(3):
            await client.enqueue(Task("item", {"n": n}), queue=queue_name, group="g")
    async with running_server(
        connector, batch_mux(batches), {queue_name: 1}, clock=clock, group_max_size=3,
        group_aggregator=slow, group_check_interval=0.02, recoverer_interval=0.05,
    ):  # fmt: skip
        try:
            await eventually(lambda: calls == [3])
            clock.advance(121)  # past the set's deadline: the recoverer puts the tasks back
            await eventually(lambda: _back_in_the_group(connector, queue_name, 3))
        finally:
            release.set()  # the first call ends, late
        await eventually(lambda: calls == [3, 3], what="the group aggregated again")
        await eventually(lambda: len(returned) == 2 and len(batches) >= 1)
        await eventually(lambda: _queue_is_idle(connector, queue_name))
    assert len(batches) == 1, "one aggregated task, not one per call"


async def _back_in_the_group(connector: Connector, queue: str, count: int) -> bool:
    client = connector.client
    reclaimed = not await client.zcard(key(queue, "aggregation_sets"))
    return reclaimed and await client.zcard(key(queue, "g:g")) == count


async def _queue_is_idle(connector: Connector, queue: str) -> bool:
    client = connector.client
    return not await client.llen(key(queue, "pending")) and not await client.llen(
        key(queue, "active")
    )


async def test_an_aggregator_that_raises_for_one_group_does_not_hold_up_the_others(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    batches: list[dict[str, Any]] = []

    def picky(group: str, tasks: list[Task]) -> Task:
        if group == "bad":
            raise RuntimeError("cannot aggregate this one")
        return aggregate(group, tasks)

    async with Client(connector) as client:
        for group in ("bad", "good"):  # "bad" comes first in the pass
            for n in range(2):
                await client.enqueue(Task("item", {"n": n}), queue=queue_name, group=group)
    async with running_server(
        connector, batch_mux(batches), {queue_name: 1}, group_max_size=2,
        group_aggregator=picky, group_check_interval=0.02,
    ):  # fmt: skip
        await eventually(lambda: [b["group"] for b in batches] == ["good"])
        # The failed set waits for the recoverer, in its aggregation set, not lost. (The
        # good one is deleted after its aggregated task is enqueued, so a fast worker can
        # run that task first: wait for the deletion.)
        sets = key(queue_name, "aggregation_sets")
        await eventually(lambda: _count_is(connector.client.zcard(sets), 1))
        assert await connector.client.zcard(sets) == 1
    # The log names the group and what happens to its tasks (not a failed step).
    assert "group_aggregator raised for group bad" in caplog.text
    assert "step failed" not in caplog.text


async def test_max_delay_and_grace_period_trigger_aggregation(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock()
    batches: list[dict[str, Any]] = []
    async with Client(connector, clock=clock) as client:
        await client.enqueue(Task("item", {"n": 1}), queue=queue_name, group="slow")
        clock.advance(20)
        await client.enqueue(Task("item", {"n": 2}), queue=queue_name, group="slow")
    options = {**GROUPS, "group_max_delay": 30, "group_grace_period": 25, "clock": clock}
    async with running_server(connector, batch_mux(batches), {queue_name: 1}, **options) as server:
        clock.advance(5)  # oldest waited 25 s, newest 5 s: nothing yet
        aggregator = server.component("aggregator")
        seen = aggregator.ticks
        await eventually(lambda: aggregator.ticks >= seen + 2, what="two aggregator checks")
        assert batches == []
        clock.advance(6)  # oldest waited 31 s > max delay
        await eventually(lambda: len(batches) == 1)
        async with Client(connector, clock=clock) as client:
            await client.enqueue(Task("item", {"n": 3}), queue=queue_name, group="slow")
        clock.advance(26)  # the group was emptied and refilled; now its grace has passed
        await eventually(lambda: len(batches) == 2)
    assert [b["items"] for b in batches] == [[{"n": 1}, {"n": 2}], [{"n": 3}]]


async def test_scheduled_grouped_task_is_still_aggregated(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock()
    batches: list[dict[str, Any]] = []
    async with Client(connector, clock=clock) as client:
        await client.enqueue(Task("item", {"n": 1}), queue=queue_name, group="g", process_in=10)
    options = {**GROUPS, "group_grace_period": 5, "clock": clock}
    async with running_server(connector, batch_mux(batches), {queue_name: 1}, **options):
        clock.advance(11)  # due: the forwarder moves it into its group
        await eventually(lambda: _in_group(connector, queue_name, "g"))
        clock.advance(6)  # grace passed
        await eventually(lambda: len(batches) == 1)
    assert batches[0]["items"] == [{"n": 1}]


async def test_a_crash_mid_aggregation_loses_no_task(connector: Connector, queue_name: str) -> None:
    clock = ManualClock()
    async with Client(connector, clock=clock) as client:
        for n in range(2):
            await client.enqueue(Task("item", {"n": n}), queue=queue_name, group="g")
    # An aggregator takes the group into a set and dies before enqueueing anything.
    groups = GroupBroker(Broker(connector))
    keys = Broker(connector).keys(queue_name)
    set_key = f"{keys.group('g')}:{uuid.uuid4()}"
    assert await groups.check(keys, "g", set_key, max_size=0, max_delay=0, grace=0,
                              now=clock.time() + 1)  # fmt: skip
    # The group stays listed while its set is out (see the next test).
    assert await connector.client.smembers(key(queue_name, "groups")) == {b"g"}
    batches: list[dict[str, Any]] = []
    clock.advance(121)  # the set's deadline passed: the recoverer gives the tasks back
    options = {**GROUPS, "group_grace_period": 1, "recoverer_interval": 0.05, "clock": clock}
    async with running_server(connector, batch_mux(batches), {queue_name: 1}, **options):
        await eventually(lambda: len(batches) == 1)
    assert sorted(item["n"] for item in batches[0]["items"]) == [0, 1]


# What asynq's recoverer does with a set past its deadline, written here from its documented
# semantics: the tasks go back into their group, but the group is not listed again.
ASYNQ_STYLE_RECLAIM = """
for _, set_key in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])) do
  local group_key = string.match(set_key, "^(.*):[^:]*$")
  local entries = redis.call("ZRANGE", set_key, 0, -1, "WITHSCORES")
  for i = 1, #entries, 2 do
    redis.call("ZADD", group_key, entries[i + 1], entries[i])
  end
  redis.call("DEL", set_key)
  redis.call("ZREM", KEYS[1], set_key)
end
"""


async def test_a_set_asynq_reclaims_is_still_aggregated_and_the_group_then_unlisted(
    connector: Connector, queue_name: str
) -> None:
    """An asyncq aggregator dies holding a set, and a Go server's recoverer reclaims it
    first. asynq unlists an emptied group when it makes the set and does not list it
    again when reclaiming: the tasks then waited for another task to join the group."""
    clock = ManualClock()
    async with Client(connector, clock=clock) as client:
        for n in range(2):
            await client.enqueue(Task("item", {"n": n}), queue=queue_name, group="g")
    broker = Broker(connector)
    keys = broker.keys(queue_name)
    set_key = f"{keys.group('g')}:{uuid.uuid4()}"
    assert await GroupBroker(broker).check(keys, "g", set_key, max_size=0, max_delay=0, grace=0,
                                           now=clock.time() + 1)  # fmt: skip
    clock.advance(121)
    reclaim = connector.client.register_script(ASYNQ_STYLE_RECLAIM)
    await reclaim(keys=[key(queue_name, "aggregation_sets")], args=[int(clock.time())])
    assert await connector.client.zcard(key(queue_name, "g:g")) == 2
    batches: list[dict[str, Any]] = []
    options = {**GROUPS, "group_grace_period": 1, "clock": clock}
    async with running_server(connector, batch_mux(batches), {queue_name: 1}, **options):
        clock.advance(2)
        await eventually(lambda: len(batches) == 1)
        # Aggregated and its set deleted: a later check finds it empty and unlists it.
        await eventually(lambda: _count_is(connector.client.scard(key(queue_name, "groups")), 0))
    assert sorted(item["n"] for item in batches[0]["items"]) == [0, 1]


@pytest.mark.parametrize("by", ["run_task", "run_all"])
async def test_a_grouped_task_run_by_hand_retries_on_its_own(
    connector: Connector, queue_name: str, by: str
) -> None:
    """Its retry used to go back into the group (the forwarder sends a task whose hash has
    a group back there), to be aggregated instead of run again."""
    clock = ManualClock()
    calls: list[int] = []
    mux = ServeMux()

    @mux.handler("item")
    async def item(task: Task) -> None:
        calls.append(task.retried)
        if task.retried == 0:
            raise RuntimeError("first try fails")

    async with Client(connector, clock=clock) as client:
        info = await client.enqueue(Task("item"), queue=queue_name, group="g")
    async with Inspector(connector) as inspector:
        if by == "run_task":
            await inspector.run_task(queue_name, info.id)
        else:
            assert await inspector.run_all(queue_name, "aggregating", group="g") == 1
    async with running_server(connector, mux, {queue_name: 1}, clock=clock):
        await eventually(lambda: _count_is(_retries(connector, queue_name), 1))
        clock.advance(60)  # the retry is due
        await eventually(lambda: calls == [0, 1], what="the retry run on its own")


async def _retries(connector: Connector, queue: str) -> int:
    return int(await connector.client.zcard(key(queue, "retry")))


# What asynq's forwarder does with a due scheduled task whose hash names a group, written
# here from its documented semantics: into the group, without listing the group.
ASYNQ_STYLE_FORWARD = """
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])) do
  local group = redis.call("HGET", ARGV[2] .. id, "group")
  redis.call("ZADD", ARGV[3] .. group, ARGV[1], id)
  redis.call("ZREM", KEYS[1], id)
  redis.call("HSET", ARGV[2] .. id, "state", "aggregating")
end
"""


async def test_checks_while_a_grouped_task_is_scheduled_keep_its_group_listed(
    connector: Connector, queue_name: str
) -> None:
    """The group is listed when the task is scheduled, so that it is found after asynq's
    forwarder moves the task in; a check of the still-empty group must not unlist it."""
    clock = ManualClock()
    async with Client(connector, clock=clock) as client:
        await client.enqueue(Task("item", {"n": 1}), queue=queue_name, group="g", process_in=30)
    broker = Broker(connector)
    keys = broker.keys(queue_name)
    set_key = f"{keys.group('g')}:{uuid.uuid4()}"
    for _ in range(2):
        assert not await GroupBroker(broker).check(
            keys, "g", set_key, max_size=0, max_delay=0, grace=0, now=clock.time()
        )
    clock.advance(31)
    forward = connector.client.register_script(ASYNQ_STYLE_FORWARD)
    now = int(clock.time())
    await forward(
        keys=[key(queue_name, "scheduled")], args=[now, keys.task_prefix, keys.group_prefix]
    )
    assert await connector.client.smembers(key(queue_name, "groups")) == {b"g"}
    batches: list[dict[str, Any]] = []
    options = {**GROUPS, "group_grace_period": 1, "clock": clock}
    async with running_server(connector, batch_mux(batches), {queue_name: 1}, **options):
        clock.advance(2)
        await eventually(lambda: len(batches) == 1)


async def test_a_grouped_task_of_blank_type_reaches_the_aggregator(
    connector: Connector, queue_name: str
) -> None:
    """A grouped task another writer stored with a blank type (asynq's clients refuse
    one) is handed to the aggregator as it is; it once failed every aggregation of its
    group, which then never ran."""
    seen: list[list[str]] = []

    def collect(group: str, tasks: list[Task]) -> Task:
        seen.append(sorted(task.type for task in tasks))
        return aggregate(group, [])

    async with Client(connector) as client:
        infos = [
            await client.enqueue(Task("item", {"n": n}), queue=queue_name, group="g")
            for n in range(2)
        ]
    msg = await task_message(connector, queue_name, infos[0].id)
    msg.type = ""
    await connector.client.hset(key(queue_name, f"t:{infos[0].id}"), "msg", msg.SerializeToString())
    batches: list[dict[str, object]] = []
    options = {**GROUPS, "group_aggregator": collect, "group_max_size": 2}
    async with running_server(connector, batch_mux(batches), {queue_name: 1}, **options):
        await eventually(lambda: len(batches) == 1)
    assert seen == [["", "item"]]


async def _in_group(connector: Connector, queue: str, group: str) -> bool:
    return bool(await connector.client.zcard(key(queue, f"g:{group}")))


async def _count_is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected
