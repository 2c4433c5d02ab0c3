"""An idle worker waits inside Redis (a watch per queue) and takes a new task at once."""

from __future__ import annotations

import asyncio
import gc
import logging
import operator
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from asyncq import (
    Client,
    Connector,
    Inspector,
    RedisClusterConnector,
    RedisConnector,
    ServeMux,
    Server,
    Task,
)
from asyncq._cluster.slots import queue_slot
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq.testing import LocalRedisCluster, ManualClock, RedisServerProcess, eventually
from asyncq.testing.plugin import StandaloneTarget
from tests.worker_helpers import counter, key, running_server, signalling_mux, write_like_go

# Long enough that only a watch (not the poll) can start a task within a test.
NO_POLL = 60.0


async def _blocked_watches(connector: Connector, queue: str) -> list[int]:
    """Ids of the connections blocked in BLMOVE on the node that holds ``queue``."""
    node = connector.node_client(connector.node_of(key(queue, "pending")))
    try:
        clients = await node.client_list()
    finally:
        await node.aclose()
    return [int(c["id"]) for c in clients if c.get("cmd") == "blmove" and "b" in c["flags"]]


async def _blmove_calls(connector: Connector, queue: str) -> int:
    node = connector.node_client(connector.node_of(key(queue, "pending")))
    try:
        stats = await node.info("commandstats")
    finally:
        await node.aclose()
    return int(stats.get("cmdstat_blmove", {}).get("calls", 0))


async def test_idle_worker_takes_a_task_from_a_go_client_at_once(
    connector: Connector, queue_name: str
) -> None:
    """Go clients publish no wake-up, and the poll is a minute away: the watch does it."""
    mux, ran = signalling_mux()

    async with running_server(connector, mux, {queue_name: 1}, task_check_interval=NO_POLL):
        await eventually(lambda: _has_watch(connector, queue_name), what="the watch")
        await write_like_go(connector, queue_name, "go-1")
        await eventually(ran.is_set, within=10, what="the task to start without the poll")
        await eventually(lambda: _processed(connector, queue_name, 1), what="the ack")


async def test_a_worker_with_fewer_free_slots_than_queues_still_takes_go_tasks_at_once(
    connector: Connector, queue_name: str
) -> None:
    """One slot for three queues (a CPU-count default, or a busy worker): two watches ask
    for no task and only wake the worker, which then dequeues; never two tasks at once."""
    queues = [f"{queue_name}-{n}" for n in "abc"]
    running: list[str] = []
    seen: list[str] = []
    overlapped = False
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        nonlocal overlapped
        overlapped = overlapped or bool(running)
        running.append(task.id or "")
        await asyncio.sleep(0)  # let another task start here, were the slot not taken
        running.remove(task.id or "")
        seen.append(task.id or "")

    async with running_server(
        connector, mux, dict.fromkeys(queues, 1), concurrency=1, task_check_interval=NO_POLL
    ):
        for queue in queues:
            await eventually(partial(_has_watch, connector, queue), what=f"a watch on {queue}")
        for queue in reversed(queues):  # the last queues' watches ask for no task
            task_id = f"go-{queue}"
            await write_like_go(connector, queue, task_id)
            await eventually(partial(operator.contains, seen, task_id), within=10, what=task_id)
    assert not overlapped, "more tasks at once than the concurrency"


async def _burst_like_go(connector: Connector, queues: list[str], per_queue: int) -> None:
    """``per_queue`` Go-style tasks into each queue, landing at one moment (one MULTI on a
    single Redis), while the worker waits in its watches."""
    async with connector.client.pipeline(transaction=True) as multi:
        for queue in queues:
            for n in range(per_queue):
                task_id = f"{queue}-{n}"
                msg = TaskMessage(type="t", id=task_id, queue=queue, retry=25, timeout=1800)
                multi.hset(
                    key(queue, f"t:{task_id}"),
                    mapping={"msg": msg.SerializeToString(), "state": "pending"},
                )
                multi.lpush(key(queue, "pending"), task_id)
        await multi.execute()


@pytest.mark.parametrize("strict", [False, True], ids=["weighted", "strict"])
async def test_a_burst_into_every_queue_never_runs_more_tasks_than_the_concurrency(
    standalone_connector: Connector, queue_name: str, strict: bool
) -> None:
    """Tasks land in all three queues at once while two slots wait in three watches: at
    most two run at a time, and in strict mode the two first are the highest queue's."""
    connector = standalone_connector
    queues = [f"{queue_name}-{n}" for n in "abc"]
    started: list[str] = []
    running = 0
    most = 0
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        nonlocal running, most
        started.append(task.queue or "")
        running += 1
        most = max(most, running)
        for _ in range(5):  # let other tasks start meanwhile, were slots free
            await asyncio.sleep(0)
        running -= 1

    priorities = dict(zip(queues, [3, 2, 1], strict=True))
    async with running_server(
        connector, mux, priorities, concurrency=2, strict_priority=strict,
        task_check_interval=NO_POLL,
    ):  # fmt: skip
        for queue in queues:
            await eventually(partial(_has_watch, connector, queue), what=f"a watch on {queue}")
        await _burst_like_go(connector, queues, 2)
        await eventually(lambda: len(started) == 6, within=10, what="all six tasks")
    assert most <= 2, f"{most} tasks at once with concurrency 2"
    if strict:
        assert started[:2] == [queues[0], queues[0]], started


async def test_watches_on_several_queues_lose_no_task(
    connector: Connector, queue_name: str
) -> None:
    queues = [f"{queue_name}-{n}" for n in "abc"]
    seen: Counter[str] = Counter()
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        seen[task.queue or ""] += 1

    async with running_server(
        connector, mux, dict.fromkeys(queues, 1), concurrency=4, task_check_interval=NO_POLL
    ):
        for queue in queues:
            await eventually(partial(_has_watch, connector, queue), what=f"a watch on {queue}")
        async with Client(connector) as client:
            await client.enqueue_many([Task("t", {"n": n}) for n in range(5)], queue=queues[1])
            await eventually(lambda: seen[queues[1]] == 5, within=10, what="the first batch")
            # The other watches were released and armed again: each queue still answers.
            for queue in (queues[0], queues[2]):
                await client.enqueue(Task("t"), queue=queue)
            await eventually(lambda: sum(seen.values()) == 7, within=10, what="the others")
    for queue in queues:
        assert await connector.client.zcard(key(queue, "lease")) == 0
        assert await connector.client.llen(key(queue, "active")) == 0
    assert seen == {queues[0]: 1, queues[1]: 5, queues[2]: 1}


async def test_after_a_watch_empties_the_queue_the_worker_waits_again_at_once(
    connector: Connector, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a low rate each task costs one trip: the worker does not look again at the queue
    its watch has just emptied, although each task's wake-up message arrives meanwhile."""
    handled: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        handled.append(task.id or "")

    async with running_server(
        connector, mux, {queue_name: 1}, task_check_interval=NO_POLL
    ) as server:
        await eventually(lambda: _has_watch(connector, queue_name), what="the watch")
        plain_dequeues = _record_plain_dequeues(server, monkeypatch)
        async with Client(connector) as client:
            for n in range(1, 6):
                await client.enqueue(Task("t"), queue=queue_name)  # publishes a wake-up
                await eventually(partial(_handled, handled, n), within=10, what=f"task {n}")
                await eventually(lambda: _has_watch(connector, queue_name), what="a new watch")
    assert plain_dequeues == []


def _handled(handled: list[str], count: int) -> bool:
    return len(handled) == count


def _record_plain_dequeues(server: Server, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record each dequeue the server makes outside a watch (the arguments of each)."""
    calls: list[object] = []
    dequeue = server.broker.dequeue

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await dequeue(*args, **kwargs)

    monkeypatch.setattr(server.broker, "dequeue", recorded)
    return calls


async def test_shutdown_releases_the_watches(connector: Connector, queue_name: str) -> None:
    """A watch blocks for the whole poll interval unless it is released: shutdown does."""
    async with running_server(connector, ServeMux(), {queue_name: 1}, task_check_interval=NO_POLL):
        await eventually(lambda: _has_watch(connector, queue_name), what="the watch")
        started = time.monotonic()
    assert time.monotonic() - started < NO_POLL / 2, "shutdown waited for the watch to time out"
    await eventually(lambda: _no_watch(connector, queue_name), what="the watch connection to go")


async def test_a_killed_watch_connection_is_replaced(connector: Connector, queue_name: str) -> None:
    mux, ran = signalling_mux()

    async with running_server(connector, mux, {queue_name: 1}, task_check_interval=NO_POLL):
        await eventually(lambda: _has_watch(connector, queue_name), what="the watch")
        (watch_id,) = await _blocked_watches(connector, queue_name)
        node = connector.node_client(connector.node_of(key(queue_name, "pending")))
        try:
            await node.client_kill_filter(_id=str(watch_id))
        finally:
            await node.aclose()
        await eventually(
            lambda: _watch_other_than(connector, queue_name, watch_id), what="a new watch"
        )
        await write_like_go(connector, queue_name, "go-2")
        await eventually(ran.is_set, within=10, what="the task to start through the new watch")


async def test_a_watch_whose_replies_are_lost_still_runs_what_its_dequeue_took(
    connector: Connector, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch connection drops just as Redis answers: its dequeue has run and leased
    the task, but the worker never read the reply. The worker sends the same dequeue
    again, gets the task back, and runs it now, not when its minute-long lease ends."""
    mux, ran = signalling_mux()

    async with running_server(
        connector, mux, {queue_name: 1}, task_check_interval=NO_POLL, lease_duration=60
    ) as server:
        await eventually(lambda: _has_watch(connector, queue_name), what="the watch")
        assert server._dispatcher is not None
        link = server._dispatcher.watches._watches[queue_name].link

        def drop_the_connection(data: bytes) -> None:
            assert link._transport is not None
            link._transport.abort()  # as if the network failed with the replies in it

        monkeypatch.setattr(link, "data_received", drop_the_connection)
        await write_like_go(connector, queue_name, "lost-reply")
        await eventually(ran.is_set, within=10, what="the task to run before its lease ends")
        await eventually(lambda: _processed(connector, queue_name, 1), what="the ack")
    assert await connector.client.zcard(key(queue_name, "lease")) == 0


async def test_a_paused_queue_does_not_make_the_watch_spin(
    connector: Connector, queue_name: str
) -> None:
    """A paused queue with a task wakes every watch at once; the worker then waits one
    poll interval the ordinary way instead of watching again straight away."""
    interval = 0.3
    mux, ran = signalling_mux()

    async with Client(connector) as client, Inspector(connector) as inspector:
        await client.enqueue(Task("t"), queue=queue_name)
        await inspector.pause(queue_name)
        before = await _blmove_calls(connector, queue_name)
        async with running_server(connector, mux, {queue_name: 1}, task_check_interval=interval):
            started = time.monotonic()
            await eventually(
                lambda: _blmove_calls_reach(connector, queue_name, before + 5),
                within=20,
                what="five watches",
            )
            elapsed = time.monotonic() - started
        assert not ran.is_set()
    # Five watches need four ordinary waits in between. The first may end early: the
    # waker subscribes for it and then wakes the worker once, for what landed before
    # that. A spinning loop would have made thousands of calls in that time.
    assert elapsed >= 3 * interval * 0.9, f"five watches in {elapsed:.3f}s: the loop spins"


async def test_two_idle_workers_run_each_task_once(
    standalone_connector: Connector, queue_name: str
) -> None:
    """Every blocked worker is answered; the dequeue script gives each task to one."""
    runs: Counter[str] = Counter()
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        runs[task.id or ""] += 1

    connector = standalone_connector
    options = {"task_check_interval": NO_POLL}
    async with (
        running_server(connector, mux, {queue_name: 1}, **options),
        running_server(connector, mux, {queue_name: 1}, **options),
        Client(connector) as client,
    ):
        await eventually(lambda: _watch_count(connector, queue_name, 2), what="two watches")
        for n in range(20):
            await client.enqueue(Task("t", {"n": n}), queue=queue_name)
        await eventually(lambda: sum(runs.values()) >= 20, within=10, what="every task")
        await eventually(lambda: _processed(connector, queue_name, 20), what="the acks")
    assert len(runs) == 20 and set(runs.values()) == {1}


async def test_the_worker_that_loses_a_task_to_another_waits_again_at_once(
    standalone_connector: Connector, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both idle workers are woken by each task and one takes it. The other finds pending
    empty again, so it waits again straight away: no dequeue of its own on the way (each
    would cost Redis a script call per task and idle worker)."""
    handled: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        handled.append(task.id or "")

    connector = standalone_connector
    options = {"task_check_interval": NO_POLL}
    async with (
        running_server(connector, mux, {queue_name: 1}, **options) as first,
        running_server(connector, mux, {queue_name: 1}, **options) as second,
        Client(connector) as client,
    ):
        await eventually(lambda: _watch_count(connector, queue_name, 2), what="two watches")
        plain_dequeues = [_record_plain_dequeues(s, monkeypatch) for s in (first, second)]
        for n in range(1, 6):
            await client.enqueue(Task("t"), queue=queue_name)  # publishes a wake-up
            await eventually(partial(_handled, handled, n), within=10, what=f"task {n}")
            await eventually(lambda: _watch_count(connector, queue_name, 2), what="both again")
    assert plain_dequeues == [[], []]


async def test_an_idle_worker_follows_its_queue_through_a_failover(
    own_cluster: LocalRedisCluster,
) -> None:
    """The master a watch blocks on is killed: the worker neither stops nor hangs, and
    picks up a task from the promoted replica."""
    queue = "watched"
    ran: list[int] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.append(task.json()["n"])

    async with (
        RedisClusterConnector(own_cluster.seeds, retry_deadline=30.0) as connector,
        running_server(connector, mux, {queue: 1}, task_check_interval=1.0),
        Client(connector) as client,
    ):
        await client.enqueue(Task("t", {"n": 1}), queue=queue)
        await eventually(lambda: ran == [1], within=10, what="the first task")
        await eventually(lambda: _has_watch(connector, queue), what="the watch")
        slot = queue_slot(queue)
        old_master = own_cluster.kill_master_of_slot(slot)
        await asyncio.to_thread(own_cluster.wait_for_failover, slot, old_master.address, 30.0)
        await client.enqueue(Task("t", {"n": 2}), queue=queue)
        await eventually(lambda: ran == [1, 2], within=30, what="the task after the failover")
        await eventually(lambda: _has_watch(connector, queue), within=10, what="a new watch")


async def _has_watch(connector: Connector, queue: str) -> bool:
    return bool(await _blocked_watches(connector, queue))


async def _no_watch(connector: Connector, queue: str) -> bool:
    return not await _blocked_watches(connector, queue)


async def _watch_count(connector: Connector, queue: str, count: int) -> bool:
    return len(await _blocked_watches(connector, queue)) >= count


async def _watch_other_than(connector: Connector, queue: str, old_id: int) -> bool:
    return any(i != old_id for i in await _blocked_watches(connector, queue))


async def _blmove_calls_reach(connector: Connector, queue: str, calls: int) -> bool:
    return await _blmove_calls(connector, queue) >= calls


async def _processed(connector: Connector, queue: str, count: int) -> bool:
    return await counter(connector, key(queue, "processed")) == count


@pytest.fixture
def server_without_blmove() -> Iterator[RedisServerProcess]:
    """A Redis that answers BLMOVE with "unknown command", as one older than 6.2 does."""
    with RedisServerProcess(extra_args=["--rename-command", "BLMOVE", ""]) as server:
        yield server


async def test_without_blmove_the_worker_waits_for_wake_ups(
    server_without_blmove: RedisServerProcess, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    mux, ran = signalling_mux()
    async with (
        RedisConnector(server_without_blmove.url) as connector,
        running_server(connector, mux, {queue_name: 1}, task_check_interval=NO_POLL) as server,
        Client(connector) as client,
    ):
        await eventually(server.component("waker").subscribed.is_set)
        await eventually(lambda: "wait for wake-ups instead" in caplog.text, what="the fallback")
        await client.enqueue(Task("t"), queue=queue_name)
        await eventually(ran.is_set, within=10, what="the task, through the wake-up")


async def test_a_task_taken_after_the_clock_moved_on_holds_a_full_lease(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The watch was armed before the clock jumped (a suspended machine): the task it
    takes gets its lease extended, and its success is written, not left to the recoverer."""
    clock = ManualClock()
    mux, ran = signalling_mux()
    async with running_server(
        connector, mux, {queue_name: 1}, clock=clock, task_check_interval=NO_POLL
    ):
        await eventually(lambda: _has_watch(connector, queue_name), what="the watch")
        clock.advance(3600)  # far past the lease the watch would have written
        async with Client(connector, clock=clock) as client:
            await client.enqueue(Task("t"), queue=queue_name)
        await eventually(ran.is_set, within=10, what="the task")
        await eventually(lambda: _processed(connector, queue_name, 1), what="the ack")
    assert "lease ran out" not in caplog.text


async def test_a_watch_left_uncollected_makes_no_noise_when_its_link_closes(
    redis_server: StandaloneTarget, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """When a server's task group dies of a bug, its armed watches are never collected;
    their calls fail as the links close, and asyncio must not report them as errors
    nobody retrieved."""
    from asyncq._broker.rdb import Broker
    from asyncq._worker.watches import Watches

    connector = RedisConnector(redis_server.url)
    async with Client(connector) as client:  # the queue exists; the connector stays open
        await client.enqueue(Task("t"), queue=queue_name, process_in=3600)
        watches = Watches(Broker(connector), logging.getLogger("test"))
        armed = await watches.arm([(queue_name, 1)], 30.0, int(time.time()) + 60)
        assert armed is not None
        calls = [armed[0].moved, armed[0].dequeued]
        del armed
        watches.close()  # what the dispatcher does as it stops: both calls fail
        await eventually(lambda: all(call.done() for call in calls))
    calls.clear()
    gc.collect()
    assert "exception was never retrieved" not in caplog.text
