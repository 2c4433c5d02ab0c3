"""A queue's slot moving to another master (a reshard) while clients and workers use it.

While the slot migrates, some of the queue's keys are on the old master and some on the
new one. A script must not run halfway there: the calls wait (Redis answers TRYAGAIN,
and the connector retries) and go through once the move is over, each task stored or
acknowledged once. These tests move a slot by hand, as ``redis-cli --cluster reshard``
does, on a cluster of their own (the shared one keeps its layout).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis

from asyncq import Client, RedisClusterConnector, ServeMux, Server, Task
from asyncq._broker.inspect import InspectBroker
from asyncq._broker.keys import QueueKeys
from asyncq._broker.rdb import Broker
from asyncq._cluster.slots import queue_slot
from asyncq.errors import ConnectionFailedError
from asyncq.testing import LocalRedisCluster, eventually
from tests.worker_helpers import FAST


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(replicas_per_master=0) as started:
        yield started


class SlotMove:
    """One slot on its way from its master to another one, moved by hand."""

    def __init__(self, cluster: LocalRedisCluster, slot: int) -> None:
        self.cluster, self.slot = cluster, slot
        source_address, _ = cluster.slot_owner(slot)
        self.target_address = next(a for a in cluster.seeds if a != source_address)
        self.source = cluster.node_for_address(source_address).admin_client()
        self.target = cluster.node_for_address(self.target_address).admin_client()
        self.source_id = _text(self.source.execute_command("CLUSTER", "MYID"))
        self.target_id = _text(self.target.execute_command("CLUSTER", "MYID"))
        self.target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.source_id)
        self.source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.target_id)
        self.finished = False

    def move(self, keys: list[str]) -> None:
        """Move these keys to the new master now (a reshard moves keys in batches)."""
        host, port = self.target_address.rsplit(":", 1)
        self.source.execute_command("MIGRATE", host, int(port), "", 0, 5000, "KEYS", *keys)

    def finish(self) -> None:
        """Move every key left, then hand the slot over on every master (once: a test's
        cleanup may call this again)."""
        if self.finished:
            return
        self.finished = True
        while keys := self.source.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, 100):
            self.move([_text(k) for k in keys])
        for address in [self.target_address, *self.cluster.seeds]:
            admin = self.cluster.node_for_address(address).admin_client()
            admin.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", self.target_id)

    def refusals(self) -> int:
        """How many calls the old master has refused with TRYAGAIN so far."""
        stats = self.source.info("errorstats")
        entry = stats.get("errorstat_TRYAGAIN", {"count": 0})
        return int(entry["count"])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _queue() -> str:
    return f"move-{uuid.uuid4().hex[:10]}"


async def test_enqueues_during_a_slot_move_wait_for_it_and_store_each_task_once(
    cluster: LocalRedisCluster,
) -> None:
    queue = _queue()
    connector = RedisClusterConnector(cluster.seeds, retry_deadline=60)
    async with connector, Client(connector) as client:
        first = await client.enqueue(Task("before"), queue=queue)
        move = SlotMove(cluster, queue_slot(queue))
        move.move([f"asynq:{{{queue}}}:t:{first.id}"])  # one task hash is already across
        refused = move.refusals()
        single = asyncio.ensure_future(client.enqueue(Task("during"), queue=queue))
        many = asyncio.ensure_future(
            client.enqueue_many([Task("many", {"n": n}) for n in range(3)], queue=queue)
        )
        # Both were refused before they ran, and are being retried: not failed.
        await eventually(lambda: move.refusals() >= refused + 2, within=10)
        assert not single.done() and not many.done()
        move.finish()
        during = await single
        results = await many
        assert [r.ok for r in results] == [True, True, True]
        pending = await connector.client.lrange(f"asynq:{{{queue}}}:pending", 0, -1)
    stored = [raw.decode() for raw in pending]
    expected = [first.id, during.id, *(r.info.id for r in results if r.info is not None)]
    assert sorted(stored) == sorted(expected), "each task once, none lost"
    owner, _ = cluster.slot_owner(queue_slot(queue))
    assert owner == move.target_address
    target = redis.Redis.from_url(f"redis://{owner}")
    for task_id in expected:
        assert target.hget(f"asynq:{{{queue}}}:t:{task_id}", "state") == b"pending"


async def test_acknowledgements_during_a_slot_move_wait_for_it_and_leave_nothing_behind(
    cluster: LocalRedisCluster,
) -> None:
    queue = _queue()
    connector = RedisClusterConnector(cluster.seeds, retry_deadline=60)
    async with connector, Client(connector) as client:
        for n in range(4):
            await client.enqueue(Task("t", {"n": n}), queue=queue)
        broker = Broker(connector)
        keys = broker.keys(queue)
        lease_expiry = int(time.time()) + 600
        earlier, *taken = [task_id for task_id, _ in await broker.dequeue(keys, 4, lease_expiry)]
        # One done before the move, so that the counters exist on the old master (their
        # absence alone would make Redis refuse the call, and hide what is tested here).
        assert await broker.done_many(keys, [(earlier, "")], time.time()) == [True]
        move = SlotMove(cluster, queue_slot(queue))
        move.move([keys.task(taken[1])])  # one finished task's hash is already across
        refused = move.refusals()
        acks = asyncio.ensure_future(
            broker.done_many(keys, [(task_id, "") for task_id in taken], time.time())
        )
        await eventually(lambda: move.refusals() > refused, within=10)
        assert not acks.done()
        move.finish()
        assert await acks == [True, True, True]
        redis_client = connector.client
        for task_id in taken:
            assert not await redis_client.exists(keys.task(task_id)), "no hash left behind"
        assert await redis_client.llen(keys.active) == 0
        assert await redis_client.zcard(keys.lease) == 0
        assert int(await redis_client.get(keys.processed_total)) == 4


async def _busy(client: Client, broker: Broker, queue: str) -> None:
    """Make the queue's containers exist, as in a queue in use: one task running (active,
    lease), one pending and one waiting in a group. Redis refuses a call naming a key it
    lacks during a move anyway; only a script whose keys all exist ran into moved hashes."""
    await client.enqueue(Task("running"), queue=queue)
    assert len(await broker.dequeue(broker.keys(queue), 1, int(time.time()) + 600)) == 1
    await client.enqueue(Task("waiting"), queue=queue)
    await client.enqueue(Task("grouped"), queue=queue, group="g")


async def _due_later(client: Client, broker: Broker, queue: str) -> list[str]:
    return [
        (await client.enqueue(Task("later", {"n": n}), queue=queue, process_in=60)).id
        for n in range(3)
    ]


async def _pending(client: Client, broker: Broker, queue: str) -> list[str]:
    return [(await client.enqueue(Task("now", {"n": n}), queue=queue)).id for n in range(3)]


async def _running(client: Client, broker: Broker, queue: str) -> list[str]:
    task_ids = await _pending(client, broker, queue)
    assert len(await broker.dequeue(broker.keys(queue), 4, int(time.time()) + 600)) == 4
    return task_ids


async def _forward(broker: Broker, keys: QueueKeys) -> object:
    return await broker.forward_if_ready(keys, time.time() + 120, time.time_ns())


async def _recoverer_listing(broker: Broker, keys: QueueKeys) -> object:
    return len(await broker.list_lease_expired(keys, int(time.time()) + 1200))


async def _inspector_listing(broker: Broker, keys: QueueKeys) -> object:
    return len(await InspectBroker(broker).list_tasks(keys, "pending", 0, -1))


async def _delete_all(broker: Broker, keys: QueueKeys) -> object:
    return await InspectBroker(broker).delete_all(keys, "pending")


@pytest.mark.parametrize(
    ("setup", "operation", "expected"),
    [
        (_due_later, _forward, 3),
        (_running, _recoverer_listing, 5),  # the first running task and four more
        (_pending, _inspector_listing, 4),  # the waiting task and the three
        (_pending, _delete_all, 4),
    ],
    ids=["forwarder", "recoverer", "inspector list", "bulk delete"],
)
async def test_periodic_and_inspector_scripts_wait_for_a_slot_move_and_see_every_task(
    cluster: LocalRedisCluster,
    setup: Callable[[Client, Broker, str], Awaitable[list[str]]],
    operation: Callable[[Broker, QueueKeys], Awaitable[object]],
    expected: int,
) -> None:
    # Scripts that build task keys from their arguments failed halfway ("non local key")
    # at the first task hash already moved; now they wait for the move, then see it all.
    queue = _queue()
    connector = RedisClusterConnector(cluster.seeds, retry_deadline=60)
    async with connector, Client(connector) as client:
        broker = Broker(connector)
        keys = broker.keys(queue)
        await _busy(client, broker, queue)
        task_ids = await setup(client, broker, queue)
        move = SlotMove(cluster, queue_slot(queue))
        move.move([keys.task(task_ids[1])])
        refused = move.refusals()
        running = asyncio.ensure_future(operation(broker, keys))
        await eventually(lambda: move.refusals() > refused, within=10)
        assert not running.done()
        move.finish()
        assert await running == expected


async def _several_idle_connections(connector: RedisClusterConnector, address: str) -> None:
    """Leave redis-py several idle connections to one node, as a busy app has: commands
    made at the same moment each take one."""
    node = connector.client.get_node(node_name=address)
    await asyncio.gather(*(node.execute_command("PING") for _ in range(8)))
    assert len(node._free) >= 2  # redis-py's pool of idle connections (what this needs)


@pytest.mark.parametrize("busy", [False, True], ids=["one connection", "busy pool"])
async def test_single_key_commands_reach_keys_already_on_the_new_master(
    cluster: LocalRedisCluster, busy: bool
) -> None:
    """The lease set and a task hash are across, the slot still migrating: the
    heartbeater's ``ZADD XX`` and a handler's result must reach them (ASK, then ASKING on
    the connection that carries the command). redis-py sends ASKING on one pooled
    connection and the command on another, so with several idle ones the new master
    sent the command back until the call ran out of time."""
    queue = _queue()
    connector = RedisClusterConnector(cluster.seeds, retry_deadline=2)
    async with connector, Client(connector) as client:
        await client.enqueue(Task("t"), queue=queue)
        broker = Broker(connector)
        keys = broker.keys(queue)
        ((task_id, _),) = await broker.dequeue(keys, 1, int(time.time()) + 60)
        move = SlotMove(cluster, queue_slot(queue))
        if busy:
            await _several_idle_connections(connector, move.target_address)
        try:
            move.move([keys.lease, keys.task(task_id)])
            await broker.extend_leases(keys, [task_id], int(time.time()) + 600)
            await broker.write_result(keys, task_id, b"42")
        finally:
            move.finish()
        assert await connector.client.hget(keys.task(task_id), "result") == b"42"
        assert await connector.client.zscore(keys.lease, task_id) > time.time() + 300


@pytest.mark.parametrize("busy", [False, True], ids=["one connection", "busy pool"])
async def test_a_script_whose_keys_are_all_across_runs_before_the_slot_is_handed_over(
    cluster: LocalRedisCluster, busy: bool
) -> None:
    """The last moment of a reshard: every key of the slot is on the new master, which
    does not own the slot yet. An acknowledgement must run there (ASK, ASKING), loading
    its script on that master first, and not wait for the hand-over."""
    queue = _queue()
    connector = RedisClusterConnector(cluster.seeds, retry_deadline=2)
    async with connector, Client(connector) as client:
        for n in range(2):
            await client.enqueue(Task("t", {"n": n}), queue=queue)
        broker = Broker(connector)
        keys = broker.keys(queue)
        (first, _), (second, _) = await broker.dequeue(keys, 2, int(time.time()) + 60)
        assert await broker.done(keys, first, "", time.time())  # the counters exist
        move = SlotMove(cluster, queue_slot(queue))
        move.target.script_flush()  # a master that never ran asyncq's scripts
        if busy:
            await _several_idle_connections(connector, move.target_address)
        try:
            while moving := move.source.execute_command("CLUSTER", "GETKEYSINSLOT", move.slot, 100):
                move.move([_text(k) for k in moving])
            assert await broker.done(keys, second, "", time.time())
            assert move.target.execute_command("CLUSTER", "COUNTKEYSINSLOT", move.slot) > 0
        finally:
            move.finish()
        assert await connector.client.llen(keys.active) == 0
        assert int(await connector.client.get(keys.processed_total)) == 2


def _queue_on_another_master(cluster: LocalRedisCluster, than: str) -> str:
    owner, _ = cluster.slot_owner(queue_slot(than))
    while cluster.slot_owner(queue_slot(name := _queue()))[0] == owner:
        pass
    return name


async def test_a_queue_whose_slot_is_moving_does_not_hold_up_a_workers_other_queues(
    cluster: LocalRedisCluster,
) -> None:
    """One queue's scripts are refused (TRYAGAIN) until its move is over, and the
    connector waits up to its retry_deadline for that; meanwhile the worker's other
    queue, on another master, is served as usual. (Each dequeue round used to wait for
    the moving queue first: one round per retry_deadline.)"""
    moving = _queue()
    steady = _queue_on_another_master(cluster, moving)
    ran: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.append(task.queue)

    connector = RedisClusterConnector(cluster.seeds, retry_deadline=20)
    async with connector, Client(connector) as client:
        held = await client.enqueue(Task("t"), queue=moving)
        move = SlotMove(cluster, queue_slot(moving))
        try:
            move.move([f"asynq:{{{moving}}}:t:{held.id}"])  # its scripts are refused now
            server = Server(connector, queues={moving: 1, steady: 1}, concurrency=4, **FAST)
            await server.start(mux)
            try:
                for served in range(1, 5):  # one at a time: every dequeue round counts
                    await client.enqueue(Task("t"), queue=steady)
                    await eventually(lambda n=served: ran.count(steady) == n, within=5)  # type: ignore[misc]
                assert moving not in ran
                move.finish()
                await eventually(lambda: moving in ran, within=20)
            finally:
                await server.shutdown()
        finally:
            move.finish()


async def test_tasks_a_late_dequeue_brings_when_every_slot_is_busy_go_back_and_run_later(
    cluster: LocalRedisCluster,
) -> None:
    """The other queue's tasks took every slot while the moving queue's dequeue waited:
    what that dequeue brings when the move ends goes back to the head of its queue (the
    concurrency limit holds), and runs once slots are free, once."""
    moving = _queue()
    steady = _queue_on_another_master(cluster, moving)
    gate = asyncio.Event()
    running: list[str] = []
    ran: list[str] = []
    most = 0
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        nonlocal most
        running.append(task.id)
        most = max(most, len(running))
        await gate.wait()
        running.remove(task.id)
        ran.append(task.queue)

    connector = RedisClusterConnector(cluster.seeds, retry_deadline=20)
    async with connector, Client(connector) as client:
        held = await client.enqueue(Task("t"), queue=moving)
        keys = Broker(connector).keys(moving)
        enqueued_at = await connector.client.hget(keys.task(held.id), "pending_since")
        move = SlotMove(cluster, queue_slot(moving))
        try:
            move.move([keys.task(held.id)])
            server = Server(connector, queues={moving: 1, steady: 1}, concurrency=2, **FAST)
            await server.start(mux)
            try:
                dispatcher = server._dispatcher
                assert dispatcher is not None
                await eventually(lambda: moving in dispatcher.late_queues, within=10)
                for _ in range(2):
                    await client.enqueue(Task("t"), queue=steady)
                await eventually(lambda: len(running) == 2, within=5)
                move.finish()

                # The late dequeue lands while both slots are busy: the task goes back
                # to pending, which stamps it pending again (read where it now lives).
                # Between the two the stamp is gone: the dequeue clears it.
                def put_back() -> bool:
                    since = move.target.hget(keys.task(held.id), "pending_since")
                    return since is not None and int(since) > int(enqueued_at)

                await eventually(put_back, within=20, what="the late task put back")
                assert len(running) == 2
                gate.set()
                await eventually(lambda: len(ran) == 3, within=10)
            finally:
                gate.set()
                await server.shutdown()
        finally:
            move.finish()
    assert sorted(ran) == sorted([moving, steady, steady])
    assert most == 2


async def test_coalesced_enqueues_refused_by_a_stuck_move_give_up_at_their_own_deadline(
    cluster: LocalRedisCluster,
) -> None:
    """A reshard that stopped halfway: every enqueue is refused (TRYAGAIN) until the
    deadline. Calls that arrive while two groups are out wait for one of them; each must
    still give up about ``retry_deadline`` after it was made (they took up to twice it:
    the time spent waiting, then a whole deadline of their own)."""
    queue = _queue()
    deadline = 2.0
    connector = RedisClusterConnector(cluster.seeds, retry_deadline=deadline)
    async with connector, Client(connector) as client:
        first = await client.enqueue(Task("t"), queue=queue)
        move = SlotMove(cluster, queue_slot(queue))
        try:
            move.move([f"asynq:{{{queue}}}:t:{first.id}"])  # its scripts are refused now

            async def timed(n: int) -> tuple[float, BaseException | None]:
                started = time.monotonic()
                try:
                    await client.enqueue(Task("t", {"n": n}), queue=queue)
                except Exception as error:  # the outcome is the point
                    return time.monotonic() - started, error
                return time.monotonic() - started, None

            calls = []
            for wave in range(3):  # callers keep coming, as in a web app
                calls += [asyncio.ensure_future(timed(wave * 10 + i)) for i in range(10)]
                await asyncio.sleep(0.3)  # the next callers come later (not a wait on asyncq)
            outcomes = await asyncio.gather(*calls)
        finally:
            move.finish()
    assert all(isinstance(error, ConnectionFailedError) for _, error in outcomes)
    slowest = max(took for took, _ in outcomes)
    assert slowest < deadline * 1.5, f"a call took {slowest:.1f}s (deadline {deadline}s)"


async def test_tasks_a_late_dequeue_puts_back_keep_their_order(cluster: LocalRedisCluster) -> None:
    """Each task put back goes to the head of its queue: put back newest first, the
    oldest ends up first again, as before they were taken."""
    moving = _queue()
    steady = _queue_on_another_master(cluster, moving)
    gate = asyncio.Event()
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        await gate.wait()

    connector = RedisClusterConnector(cluster.seeds, retry_deadline=20)
    async with connector, Client(connector) as client:
        ids = [(await client.enqueue(Task("t", {"n": n}), queue=moving)).id for n in range(3)]
        keys = Broker(connector).keys(moving)
        before = await connector.client.lrange(keys.pending, 0, -1)
        for n in range(4):
            await client.enqueue(Task("t", {"s": n}), queue=steady)
        move = SlotMove(cluster, queue_slot(moving))
        try:
            move.move([keys.task(ids[0])])
            # Strictly steady first: one dequeue takes its four tasks, the other finds it
            # empty and goes on to the moving queue, where it is late: one late dequeue.
            server = Server(
                connector, queues={steady: 2, moving: 1}, strict_priority=True,
                concurrency=8, **FAST,
            )  # fmt: skip
            await server.start(mux)
            try:
                dispatcher = server._dispatcher
                assert dispatcher is not None
                await eventually(lambda: dispatcher.late_queues == [moving], within=10)
                for n in range(4):  # the other four slots
                    await client.enqueue(Task("t", {"s2": n}), queue=steady)
                await eventually(lambda: server.running_tasks == 8, within=10)
                move.finish()
                await eventually(lambda: not dispatcher.late_queues, within=20, what="landed")
                assert await connector.client.lrange(keys.pending, 0, -1) == before
            finally:
                gate.set()
                await server.shutdown()
        finally:
            move.finish()


async def test_no_handler_starts_from_a_late_dequeue_after_a_hurried_shutdown(
    cluster: LocalRedisCluster,
) -> None:
    """Asked to hurry, a shutdown waits for no late dequeue; and whatever one brings
    after a stop goes back to its queue instead of starting a handler."""
    moving = _queue()
    steady = _queue_on_another_master(cluster, moving)
    started: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        started.append(task.queue)

    connector = RedisClusterConnector(cluster.seeds, retry_deadline=20)
    async with connector, Client(connector) as client:
        held = await client.enqueue(Task("t"), queue=moving)
        keys = Broker(connector).keys(moving)
        move = SlotMove(cluster, queue_slot(moving))
        try:
            move.move([keys.task(held.id)])
            server = Server(connector, queues={moving: 1, steady: 1}, concurrency=4, **FAST)
            await server.start(mux)
            dispatcher = server._dispatcher
            assert dispatcher is not None
            await eventually(lambda: moving in dispatcher.late_queues, within=10)
            server.hurry()
            await server.shutdown()  # the slot is still moving: nothing to wait for
        finally:
            move.finish()
    assert started == []


async def test_a_hurried_shutdown_waits_out_no_paused_master(cluster: LocalRedisCluster) -> None:
    """One queue's master is paused (a frozen machine: it answers nothing). A hurried
    shutdown of a worker serving it cancels its handlers and ends within seconds,
    waiting out no call to that master (it took 20-42 s: the dispatcher's wait, the
    server records and the dequeue records each waited the whole retry_deadline)."""
    frozen = _queue()
    steady = _queue_on_another_master(cluster, frozen)
    started = asyncio.Event()
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        started.set()
        await asyncio.Event().wait()  # runs until it is cancelled

    connector = RedisClusterConnector(cluster.seeds, retry_deadline=20)
    async with connector, Client(connector) as client:
        running = await client.enqueue(Task("t"), queue=steady)
        server = Server(connector, queues={frozen: 1, steady: 1}, concurrency=4, **FAST)
        await server.start(mux)
        await asyncio.wait_for(started.wait(), 10)
        node = cluster.node_for_address(cluster.slot_owner(queue_slot(frozen))[0])
        with node.pausing():
            server.hurry()
            began = time.monotonic()
            await server.shutdown()
            took = time.monotonic() - began
        assert took < 10, f"the hurried shutdown took {took:.1f}s"
        # The others marked the paused master failing: the cluster is down until it is back.
        await asyncio.to_thread(cluster.wait_until_healthy)
        redis_client = connector.client
        assert await redis_client.lrange(f"asynq:{{{steady}}}:pending", 0, -1) == [
            running.id.encode()
        ]
