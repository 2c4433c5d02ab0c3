"""Batched paths store exactly what as many single operations would, and share round trips."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from asyncq import (
    Client,
    ConnectionFailedError,
    Connector,
    DuplicateTaskError,
    EnqueueResult,
    InvalidOptionError,
    RedisClusterConnector,
    ServeMux,
    Server,
    Task,
    TaskIdConflictError,
    TaskState,
)
from asyncq._broker.packing import pack_pairs
from asyncq._broker.rdb import Broker
from asyncq._broker.scripts import load_script
from asyncq._cluster.slots import queue_slot
from asyncq.testing import LocalRedisCluster, ManualClock, eventually
from tests.worker_helpers import (
    counter,
    key,
    running_server,
    signalling_mux,
    task_state,
    write_like_go,
)


async def test_enqueue_many_reports_each_outcome(connector: Connector, queue_name: str) -> None:
    other = f"{queue_name}-b"
    async with Client(connector) as client:
        await client.enqueue(Task("u", {"k": 1}), queue=queue_name, unique=60)
        await client.enqueue(Task("x"), queue=queue_name, task_id="taken")
        results = await client.enqueue_many(
            [
                Task("a", {"n": 1}),
                Task("a", {"n": 2}),
                (Task("b"), {"queue": other}),
                (Task("later"), {"process_in": 60}),
                (Task("u", {"k": 1}), {"unique": 60}),
                (Task("x"), {"task_id": "taken"}),
                (Task("bad"), {"max_retry": -3}),
                Task("a", {"n": 3}),
            ],
            queue=queue_name,
        )
    assert [r.ok for r in results] == [True, True, True, True, False, False, False, True]
    assert isinstance(results[4].error, DuplicateTaskError)
    assert isinstance(results[5].error, TaskIdConflictError)
    assert isinstance(results[6].error, InvalidOptionError)
    assert results[2].info is not None and results[2].info.queue == other
    assert results[3].info is not None and results[3].info.state is TaskState.SCHEDULED
    # Same order and fields as single enqueues: oldest at the right end of the list.
    pending = await connector.client.lrange(key(queue_name, "pending"), 0, -1)
    expected = [results[i].info.id for i in (7, 1, 0)]  # type: ignore[union-attr]
    assert [p.decode() for p in pending[:3]] == expected
    fields = await connector.client.hgetall(key(queue_name, f"t:{expected[0]}"))
    assert set(fields) == {b"msg", b"state", b"pending_since"}
    assert await connector.client.sismember("asynq:queues", other)


async def test_enqueue_many_refuses_bad_call_options_before_writing(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        with pytest.raises(InvalidOptionError, match="unknown enqueue option"):
            await client.enqueue_many([Task("a")], queue=queue_name, retries=3)  # type: ignore[call-arg]
        with pytest.raises(InvalidOptionError, match="max_retry"):
            await client.enqueue_many([Task("a")], queue=queue_name, max_retry=-1)
    assert not await connector.client.exists(key(queue_name, "pending"))


async def test_enqueue_many_writes_large_batches(connector: Connector, queue_name: str) -> None:
    async with Client(connector) as client:
        results = await client.enqueue_many(
            [Task("n", {"i": i}) for i in range(2500)], queue=queue_name
        )
    assert all(r.ok for r in results)
    assert await connector.client.llen(key(queue_name, "pending")) == 2500


async def test_enqueue_many_keeps_the_order_of_a_queue(
    connector: Connector, queue_name: str
) -> None:
    # More than one batch, and tasks with options of their own among the others.
    items: list[Task | tuple[Task, dict[str, object]]] = [
        (Task("n", {"i": i}), {"max_retry": 3}) if i % 7 == 0 else Task("n", {"i": i})
        for i in range(2500)
    ]
    async with Client(connector) as client:
        results = await client.enqueue_many(items, queue=queue_name)
    infos = [r.info for r in results]
    assert all(r.ok for r in results) and all(info is not None for info in infos)
    pending = await connector.client.lrange(key(queue_name, "pending"), 0, -1)
    assert [p.decode() for p in reversed(pending)] == [i.id for i in infos]  # type: ignore[union-attr]
    assert [infos[7].max_retry, infos[8].max_retry] == [3, 25]  # type: ignore[union-attr]
    assert infos[8].json() == {"i": 8} and infos[8].queue == queue_name  # type: ignore[union-attr]


async def test_enqueue_many_refuses_an_item_that_is_not_a_task(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        with pytest.raises(TypeError, match="Task items or"):
            await client.enqueue_many([Task("a"), "not a task"], queue=queue_name)  # type: ignore[list-item]
    assert not await connector.client.exists(key(queue_name, "pending"))


async def test_concurrent_single_enqueues_share_round_trips(
    standalone_connector: Connector, queue_name: str
) -> None:
    before = await _script_calls(standalone_connector)
    async with Client(standalone_connector) as client:
        infos = await asyncio.gather(
            *(client.enqueue(Task("c", {"i": i}), queue=queue_name) for i in range(200))
        )
    calls = await _script_calls(standalone_connector) - before
    assert len({i.id for i in infos}) == 200
    assert await standalone_connector.client.llen(key(queue_name, "pending")) == 200
    assert calls < 100, f"{calls} script calls for 200 concurrent enqueues: nothing was shared"


async def test_batched_dequeue_stores_what_single_dequeues_would(
    connector: Connector, queue_name: str
) -> None:
    one_by_one = f"{queue_name}-single"
    async with Client(connector) as client:
        for queue in (queue_name, one_by_one):
            for i in range(5):
                await client.enqueue(Task("t", {"i": i}), queue=queue, task_id=f"id-{i}")
    broker = Broker(connector)
    expiry = int(time.time()) + 30
    batch = await broker.dequeue(broker.keys(queue_name), 5, expiry)
    singles = [
        pair for _ in range(5) for pair in await broker.dequeue(broker.keys(one_by_one), 1, expiry)
    ]
    assert [task_id for task_id, _ in batch] == [f"id-{i}" for i in range(5)]  # oldest first
    assert [task_id for task_id, _ in singles] == [task_id for task_id, _ in batch]
    for queue in (queue_name, one_by_one):
        active = await connector.client.lrange(key(queue, "active"), 0, -1)
        assert [a.decode() for a in active] == [f"id-{i}" for i in reversed(range(5))]
        lease = await connector.client.zrange(key(queue, "lease"), 0, -1, withscores=True)
        assert sorted(lease) == sorted((f"id-{i}".encode(), float(expiry)) for i in range(5))
        fields = await connector.client.hgetall(key(queue, "t:id-3"))
        assert fields[b"state"] == b"active" and b"pending_since" not in fields


async def test_batched_dequeue_leaves_the_rest_and_drops_lost_tasks(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        for i in range(6):
            await client.enqueue(Task("t", {"i": i}), queue=queue_name, task_id=f"id-{i}")
    await connector.client.delete(key(queue_name, "t:id-1"))  # a task whose hash is gone
    broker = Broker(connector)
    keys = broker.keys(queue_name)
    expiry = int(time.time()) + 30
    assert await broker.dequeue(keys, 0, expiry) == []  # asks for nothing, takes nothing
    taken = await broker.dequeue(keys, 3, expiry)
    assert [task_id for task_id, _ in taken] == ["id-0", "id-2"]
    pending = await connector.client.lrange(key(queue_name, "pending"), 0, -1)
    assert [p.decode() for p in pending] == ["id-5", "id-4", "id-3"]
    active = await connector.client.lrange(key(queue_name, "active"), 0, -1)
    assert [a.decode() for a in active] == ["id-2", "id-0"]
    assert await connector.client.zcard(key(queue_name, "lease")) == 2
    rest = await broker.dequeue(keys, 10, expiry)
    assert [task_id for task_id, _ in rest] == ["id-3", "id-4", "id-5"]
    assert not await connector.client.exists(key(queue_name, "pending"))


async def test_grouped_ack_of_an_id_listed_twice_counts_it_once(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        await client.enqueue(Task("t"), queue=queue_name, task_id="twice")
    broker = Broker(connector)
    keys = broker.keys(queue_name)
    await broker.dequeue(keys, 1, int(time.time()) + 30)
    done = await broker.done_many(keys, [("twice", ""), ("twice", "")], time.time())
    assert done == [True, False]
    assert await counter(connector, key(queue_name, "processed")) == 1


async def test_grouped_acks_store_what_single_acks_would(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        for i in range(4):
            await client.enqueue(Task("t", {"i": i}), queue=queue_name, task_id=f"a{i}", unique=60)
    broker = Broker(connector)
    keys = broker.keys(queue_name)
    taken = await broker.dequeue(keys, 3, int(time.time()) + 30)  # a0..a2 leased, a3 pending
    lock_of = {
        task_id: (await connector.client.hget(key(queue_name, f"t:{task_id}"), "unique_key"))
        for task_id, _ in taken
    }
    done = await broker.done_many(
        keys, [(t, lock_of[t].decode()) for t, _ in taken] + [("a3", "")], time.time()
    )
    assert done == [True, True, True, False]  # a3 held no lease: untouched
    assert await counter(connector, key(queue_name, "processed")) == 3
    assert await connector.client.llen(key(queue_name, "active")) == 0
    assert await connector.client.zcard(key(queue_name, "lease")) == 0
    for task_id, _ in taken:
        assert not await connector.client.exists(key(queue_name, f"t:{task_id}"))
        assert not await connector.client.exists(lock_of[task_id].decode())
    assert await connector.client.hget(key(queue_name, "t:a3"), "state") == b"pending"


async def test_worker_acknowledges_in_groups(
    standalone_connector: Connector, queue_name: str
) -> None:
    mux = ServeMux()
    handled = 0

    @mux.handler("t")
    async def work(task: Task) -> None:
        nonlocal handled
        handled += 1

    async with Client(standalone_connector) as client:
        await client.enqueue_many([Task("t", {"i": i}) for i in range(400)], queue=queue_name)
    before = await _script_calls(standalone_connector)
    async with running_server(standalone_connector, mux, {queue_name: 1}, concurrency=32):
        await eventually(lambda: _processed_is(standalone_connector, queue_name, 400), within=30)
        calls = await _script_calls(standalone_connector) - before
    assert handled == 400
    # asynq makes two script calls per task (dequeue, done); grouping makes far fewer.
    assert calls < 400, f"{calls} script calls for 400 tasks"


async def test_a_busy_worker_keeps_two_dequeues_on_their_way_for_half_the_slots_each(
    connector: Connector, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis runs one dequeue while the worker starts the other's handlers; the tasks and
    # the stored state end as with one dequeue at a time, and no dequeue record is left.
    on_their_way = most = 0
    asked: list[int] = []
    real_dequeue = Broker.dequeue

    async def observed(self: Broker, keys: Any, count: int, lease_expiry: int) -> Any:
        nonlocal on_their_way, most
        on_their_way += 1
        most = max(most, on_their_way)
        asked.append(count)
        try:
            return await real_dequeue(self, keys, count, lease_expiry)
        finally:
            on_their_way -= 1

    monkeypatch.setattr(Broker, "dequeue", observed)
    handled: list[int] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        handled.append(task.json()["i"])

    async with Client(connector) as client:
        await client.enqueue_many([Task("t", {"i": i}) for i in range(600)], queue=queue_name)
    async with running_server(connector, mux, {queue_name: 1}, concurrency=32):
        await eventually(lambda: _processed_is(connector, queue_name, 600), within=30)
    assert sorted(handled) == list(range(600))
    assert (most, max(asked)) == (2, 16)
    redis = connector.client
    assert await redis.llen(key(queue_name, "pending")) == 0
    assert await redis.llen(key(queue_name, "active")) == 0
    assert await redis.zcard(key(queue_name, "lease")) == 0
    records = [k async for k in redis.scan_iter(match=key(queue_name, "dequeue:*"))]
    assert records == []


async def test_a_success_past_its_lease_is_left_to_the_recoverer(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Acknowledgements go out after the handler's task has ended: one whose lease ran
    out meanwhile writes nothing, and the job still leaves the book."""
    clock = ManualClock()
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        clock.advance(3600)  # the lease (30 s) is long gone when the success is written

    async with Client(connector) as client:
        info = await client.enqueue(Task("t"), queue=queue_name)
    async with running_server(connector, mux, {queue_name: 1}, clock=clock) as server:
        await eventually(lambda: "lease ran out" in caplog.text, what="the ack to give up")
        await eventually(lambda: server.running_tasks == 0, what="the job to leave the book")
        # Not deleted as done: still active, or already taken back by the recoverer.
        assert await task_state(connector, queue_name, info.id) in ("active", "retry")


async def test_task_written_without_wake_up_is_found_by_polling(
    connector: Connector, queue_name: str
) -> None:
    """A Go client publishes no wake-up: the poll interval still finds its task."""
    mux, ran = signalling_mux()

    async with running_server(connector, mux, {queue_name: 1}, task_check_interval=0.2):
        await write_like_go(connector, queue_name, "go-1")
        await eventually(ran.is_set, within=10)


@pytest.fixture
def partial_cluster() -> Iterator[LocalRedisCluster]:
    # No replicas, and a cluster that keeps serving the slots it still covers.
    cluster = LocalRedisCluster(
        replicas_per_master=0, extra_args=["--cluster-require-full-coverage", "no"]
    )
    cluster.start()
    yield cluster
    cluster.stop()


async def test_a_failing_node_does_not_hide_the_other_outcomes(
    partial_cluster: LocalRedisCluster,
) -> None:
    dead_queue, live_queue = "webhooks", "images"  # slots 4418 and 9450: two masters
    async with (
        RedisClusterConnector(
            partial_cluster.seeds, retry_deadline=1.0, require_full_coverage=False
        ) as connector,
        Client(connector) as client,
    ):
        await client.enqueue(Task("warm"), queue=dead_queue)
        await client.enqueue(Task("warm"), queue=live_queue)
        partial_cluster.kill_master_of_slot(queue_slot(dead_queue))
        results = await client.enqueue_many(
            [(Task("a"), {"queue": dead_queue}), (Task("b"), {"queue": live_queue})]
        )
        assert isinstance(results[0].error, ConnectionFailedError)
        assert results[1].ok
        assert await connector.client.llen(key(live_queue, "pending")) == 2


async def _script_calls(connector: Connector) -> int:
    stats = await connector.client.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def _processed_is(connector: Connector, queue: str, count: int) -> bool:
    return await counter(connector, key(queue, "processed")) == count


async def test_a_resent_dequeue_gets_the_same_tasks_back(
    connector: Connector, queue_name: str
) -> None:
    """A dequeue re-sent after a lost reply must not take more tasks and strand the first."""
    from asyncq._broker.scripts import load_script

    async with Client(connector) as client:
        await client.enqueue_many([Task("t", {"i": i}) for i in range(5)], queue=queue_name)
    keys = Broker(connector).keys(queue_name)
    script_keys = [keys.pending, keys.paused, keys.active, keys.lease, keys.prefix + "dequeue:tok"]
    args: list[str | int] = [int(time.time()) + 30, keys.task_prefix, 2, 60, ""]
    first = await connector.run_script(load_script("dequeue"), script_keys, args)
    again = await connector.run_script(load_script("dequeue"), script_keys, args)
    assert again == first and len(first) == 4  # two (id, msg) pairs, both times
    assert await connector.client.llen(key(queue_name, "pending")) == 3
    assert await connector.client.llen(key(queue_name, "active")) == 2


async def test_packed_pairs_unpack_in_redis_at_every_size_boundary(
    standalone_connector: Connector,
) -> None:
    """Redis's cmsgpack reads back exactly what was packed: strings below, at and above the
    sizes where the framing changes (a table of short heads, then str32)."""
    sizes = [0, 1, 36, 1023, 1024, 1025, 65535, 65536, 70000]
    firsts = [bytes([65 + n % 26]) * size for n, size in enumerate(sizes)]
    seconds = [b"\x00\xff" * (size // 2) for size in reversed(sizes)]
    blob = pack_pairs(firsts, seconds)
    unpacked = await standalone_connector.execute(
        "EVAL", "return cmsgpack.unpack(ARGV[1])", 0, blob
    )
    expected = [item for pair in zip(firsts, seconds, strict=True) for item in pair]
    assert unpacked == expected


async def test_a_resent_batch_finds_its_own_tasks_and_adds_nothing(
    connector: Connector, queue_name: str
) -> None:
    """A batch sent again after a lost reply (last argument "1") reports no conflict for
    the tasks it stored itself, and pushes none of them a second time."""
    keys = Broker(connector).keys(queue_name)
    blob = pack_pairs([b"b1", b"b2"], [b"m1", b"m2"])
    run = partial(connector.run_script, load_script("enqueue_batch"), [keys.pending])
    common: list[str | bytes | int] = [1, keys.task_prefix, keys.wakeup, blob]
    assert await run([*common, "0", "0"]) == []
    assert await run([*common, "0", "0"]) == [1, 2]  # a first send: both ids are taken
    assert await run([*common, "0", "1"]) == []  # a re-send: its own tasks, already stored
    assert await run([*common, "1", "1"]) == []  # the same with generated ids
    other = pack_pairs([b"b1"], [b"another message"])
    assert await run([1, keys.task_prefix, keys.wakeup, other, "1", "1"]) == [1]
    assert await connector.client.llen(key(queue_name, "pending")) == 2


async def test_a_first_send_of_generated_ids_does_not_look_them_up(
    connector: Connector, queue_name: str
) -> None:
    """Random UUID4s made for the call cannot be taken: the script skips the EXISTS it
    runs per task for ids a caller chose (a quarter of its time), and stores all."""
    node = connector.node_client(connector.node_of(key(queue_name, "pending")))
    try:
        before = await _calls(node, "exists")
        async with Client(connector) as client:
            results = await client.enqueue_many([Task("t") for _ in range(50)], queue=queue_name)
            await client.enqueue(Task("t"), queue=queue_name)
        assert await _calls(node, "exists") == before
        own = await client_with_ids(connector, queue_name, ["own-1", "own-2"])
        assert await _calls(node, "exists") == before + 2  # chosen ids are looked up
    finally:
        await node.aclose()
    assert all(r.ok for r in results) and all(r.ok for r in own)
    assert await connector.client.llen(key(queue_name, "pending")) == 53


async def client_with_ids(
    connector: Connector, queue_name: str, task_ids: list[str]
) -> list[EnqueueResult]:
    async with Client(connector) as client:
        return await client.enqueue_many(
            [(Task("t"), {"task_id": task_id}) for task_id in task_ids], queue=queue_name
        )


async def _calls(node: Any, command: str) -> int:
    stats = await node.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_dispatcher_torn_down_while_stopping_cancels_its_dequeues(
    connector: Connector, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dequeues left running after their loop is gone would take (and lease) tasks that
    # nobody runs; torn down, the loop cancels them, and the recoverer owns what they took.
    held: list[int] = []
    cancelled: list[int] = []

    async def held_on_its_way(self: Broker, keys: Any, count: int, lease_expiry: int) -> Any:
        held.append(count)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(count)
            raise

    async with Client(connector) as client:
        await client.enqueue_many([Task("t") for _ in range(100)], queue=queue_name)
    monkeypatch.setattr(Broker, "dequeue", held_on_its_way)
    server = Server(connector, concurrency=32, queues={queue_name: 1})
    await server.start(ServeMux())
    try:
        await eventually(lambda: len(held) == 2, within=10)
        dispatcher = server._dispatcher
        assert dispatcher is not None
        dispatcher.request_stop()  # the loop now waits for the two dequeues...
        await asyncio.sleep(0)
        dispatcher.loop_task.cancel()  # ... and is torn down meanwhile
        await asyncio.wait({dispatcher.loop_task})
        assert sorted(cancelled) == [16, 16]
    finally:
        await server.shutdown()
