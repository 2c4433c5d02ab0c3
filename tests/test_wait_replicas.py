"""``Client(wait_replicas=N)``: an enqueue returns once N replicas hold the task.

Redis replicates asynchronously, so a task a master confirmed a moment before it died
can be missing on the replica that replaces it. With ``wait_replicas`` each enqueue waits
(Redis's ``WAIT``, on the connection that wrote it) until enough replicas hold it, and
says so with ``NotReplicatedError`` when they do not, within ``replica_timeout``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import pytest
import redis

from asyncq import (
    Client,
    ConnectionFailedError,
    Connector,
    Inspector,
    InvalidOptionError,
    NotReplicatedError,
    RedisClusterConnector,
    RedisConnector,
    Scheduler,
    Task,
    TaskIdConflictError,
    TaskInfo,
)
from asyncq._broker.packing import pack_pairs
from asyncq._broker.rdb import Broker
from asyncq._broker.scripts import load_script
from asyncq._cluster.links import LinkUnusable, PairProgress
from asyncq._cluster.slots import queue_slot
from asyncq.testing import LocalRedisCluster, ManualClock, RedisServerProcess, eventually
from asyncq.testing.plugin import ClusterTarget, StandaloneTarget
from asyncq.testing.servers import wait_until


def _harness(target: ClusterTarget) -> LocalRedisCluster:
    if target.harness is None:
        pytest.skip("needs the cluster the tests start (it pauses a replica)")
    return target.harness


def _replica_of(cluster: LocalRedisCluster, queue: str) -> redis.Redis:
    """A connection to the replica of the queue's master, allowed to read there."""
    _, replicas = cluster.slot_owner(queue_slot(queue))
    host, port = replicas[0].rsplit(":", 1)
    replica = redis.Redis(host=host, port=int(port))
    replica.execute_command("READONLY")
    return replica


async def test_every_kind_of_enqueue_is_on_the_replica_when_it_returns(
    redis_cluster: ClusterTarget, queue_name: str
) -> None:
    replica = _replica_of(_harness(redis_cluster), queue_name)
    async with (
        RedisClusterConnector(redis_cluster.seeds) as connector,
        Client(connector, wait_replicas=1) as client,
    ):
        alone = await client.enqueue(Task("alone"), queue=queue_name)
        crowd = await asyncio.gather(
            *(client.enqueue(Task("crowd", {"n": n}), queue=queue_name) for n in range(40))
        )
        later = await client.enqueue(Task("later"), queue=queue_name, process_in=600)
        grouped = await client.enqueue(Task("grouped"), queue=queue_name, group="g")
        unique = await client.enqueue(Task("unique"), queue=queue_name, unique=60)
        many = await client.enqueue_many(
            [Task("many", {"n": n}) for n in range(30)], queue=queue_name
        )
    assert all(result.ok for result in many)
    infos = [alone, *crowd, later, grouped, unique, *(r.info for r in many if r.info)]
    for info in infos:
        # Read from the replica straight after the calls: no waiting here.
        state = replica.hget(f"asynq:{{{queue_name}}}:t:{info.id}", "state")
        assert state == info.state.value.encode(), f"{info.id} is not on the replica"


async def test_a_replica_that_does_not_confirm_gives_not_replicated_with_the_task_stored(
    redis_cluster: ClusterTarget, queue_name: str
) -> None:
    cluster = _harness(redis_cluster)
    _, replicas = cluster.slot_owner(queue_slot(queue_name))
    async with (
        RedisClusterConnector(redis_cluster.seeds) as connector,
        Client(connector, wait_replicas=1, replica_timeout=0.3) as client,
    ):
        with cluster.node_for_address(replicas[0]).pausing():
            with pytest.raises(NotReplicatedError) as raised:
                await client.enqueue(Task("single"), queue=queue_name)
            results = await client.enqueue_many([Task("many"), Task("more")], queue=queue_name)
            with pytest.raises(NotReplicatedError):
                await client.enqueue(Task("own id"), queue=queue_name, task_id="mine")
            # Still a conflict for another call with the same id, confirmed or not.
            with pytest.raises(TaskIdConflictError):
                await client.enqueue(Task("own id"), queue=queue_name, task_id="mine")
        stored = raised.value.info
        assert stored.queue == queue_name and raised.value.replicas == 1
        assert "replica_timeout" in str(raised.value)
        assert [type(r.error) for r in results] == [NotReplicatedError] * 2
        ids = [
            stored.id,
            "mine",
            *(r.error.info.id for r in results if isinstance(r.error, NotReplicatedError)),
        ]
        pending = await connector.execute("LRANGE", f"asynq:{{{queue_name}}}:pending", 0, -1)
        assert sorted(i.decode() for i in pending) == sorted(ids), "stored all the same"
        # Once the replica answers again, enqueues are confirmed again.
        await eventually(lambda: _confirms(client, queue_name), within=10)


async def _confirms(client: Client, queue: str) -> bool:
    try:
        await client.enqueue(Task("probe"), queue=queue)
    except NotReplicatedError:
        return False
    return True


async def test_a_server_without_replicas_never_confirms(
    redis_server: StandaloneTarget, queue_name: str
) -> None:
    async with (
        RedisConnector(redis_server.url) as connector,
        Client(connector, wait_replicas=1, replica_timeout=0.05) as client,
    ):
        with pytest.raises(NotReplicatedError) as raised:
            await client.enqueue(Task("nowhere"), queue=queue_name)
        state = await connector.execute(
            "HGET", f"asynq:{{{queue_name}}}:t:{raised.value.info.id}", "state"
        )
    assert state == b"pending"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"wait_replicas": -1}, "wait_replicas"),
        ({"wait_replicas": True}, "wait_replicas"),
        ({"wait_replicas": "1"}, "wait_replicas"),
        ({"wait_replicas": 1, "replica_timeout": 0}, "replica_timeout"),
        ({"wait_replicas": 1, "replica_timeout": float("nan")}, "replica_timeout"),
        ({"wait_replicas": 1, "replica_timeout": 4000}, "replica_timeout"),
        ({"wait_replicas": 2**63}, "wait_replicas"),
    ],
)
def test_bad_replication_options_are_refused(options: dict[str, object], message: str) -> None:
    connector: Connector = RedisConnector()
    with pytest.raises(InvalidOptionError, match=message):
        Client(connector, **options)  # type: ignore[arg-type]


async def test_master_killed_while_enqueueing_loses_no_confirmed_task(
    own_cluster: LocalRedisCluster,
) -> None:
    queue = "confirmed-failover"
    confirmed: list[str] = []
    unconfirmed: list[str] = []
    stop = asyncio.Event()

    async def writer(client: Client) -> None:
        while not stop.is_set():
            try:
                info = await client.enqueue(Task("job"), queue=queue)
            except NotReplicatedError as error:  # stored, not confirmed: the caller knows
                unconfirmed.append(error.info.id)
            else:
                confirmed.append(info.id)

    async with (
        RedisClusterConnector(own_cluster.seeds, retry_deadline=15.0) as connector,
        Client(connector, wait_replicas=1, replica_timeout=0.2) as client,
    ):
        writers = [asyncio.create_task(writer(client)) for _ in range(8)]
        await eventually(lambda: len(confirmed) >= 300, within=20)
        old_master = own_cluster.kill_master_of_slot(queue_slot(queue))
        await asyncio.to_thread(
            own_cluster.wait_for_failover, queue_slot(queue), old_master.address, 30.0
        )
        # The new master has no replica now: its enqueues are stored but not confirmed.
        await eventually(lambda: len(unconfirmed) >= 10, within=30)
        stop.set()
        await asyncio.gather(*writers)
        stored = await connector.execute("LRANGE", f"asynq:{{{queue}}}:pending", 0, -1)
    stored_ids = {s.decode() for s in stored}
    missing = set(confirmed) - stored_ids
    assert not missing, f"{len(missing)} confirmed tasks were lost"


@pytest.mark.parametrize("verb", ["enqueue", "enqueue_batch"])
async def test_a_resent_call_that_finds_its_task_writes_it_again_only_for_a_wait(
    redis_cluster: ClusterTarget, queue_name: str, verb: str
) -> None:
    # A client waiting for replicas sends a call again, after a lost reply, on the
    # connection that then WAITs; from Redis 7.2 WAIT counts that connection's last write,
    # so finding the task must write it again ("2"). Other clients' re-sends ("1") only
    # read, as before: no replication traffic, no keyspace event.
    cluster = _harness(redis_cluster)
    master_address, _ = cluster.slot_owner(queue_slot(queue_name))
    master = cluster.node_for_address(master_address).admin_client()
    async with RedisClusterConnector(redis_cluster.seeds) as connector:
        broker = Broker(connector)
        keys = broker.keys(queue_name)
        task_id, msg, now_ns = "t-1", b"message", time.time_ns()
        if verb == "enqueue":
            script_keys = [keys.task(task_id), keys.pending]
            args: list[str | bytes | int] = [msg, task_id, now_ns, keys.wakeup, 0, "", 0]
        else:
            script_keys = [keys.pending, keys.slot_guard]
            blob = pack_pairs([task_id.encode()], [msg])
            args = [now_ns, keys.task_prefix, keys.wakeup, blob, "1"]
        script = load_script(verb)
        await connector.run_script(script, script_keys, [*args, "0"])
        offsets = [master.info("replication")["master_repl_offset"]]
        replies = []
        for resend in ("1", "2"):
            replies.append(await connector.run_script(script, script_keys, [*args, resend]))
            offsets.append(master.info("replication")["master_repl_offset"])
    assert all(reply in (1, []) for reply in replies)  # found in place: success
    assert offsets[1] == offsets[0], "a plain re-send wrote"
    assert offsets[2] > offsets[1], "the re-sent call wrote nothing, so a WAIT would not cover it"


def _waits_blocked(admin: redis.Redis) -> int:
    """How many connections to this node are blocked in a WAIT now."""
    return sum(1 for c in admin.client_list() if c.get("cmd") == "wait" and "b" in c["flags"])


async def test_waits_block_in_parallel_and_hold_up_no_other_call(
    redis_cluster: ClusterTarget, queue_name: str
) -> None:
    # Redis runs nothing else from a connection while a WAIT on it blocks: the WAITs must
    # not sit on the link every other call of the connector (a worker's dequeue) uses.
    cluster = _harness(redis_cluster)
    master_address, replicas = cluster.slot_owner(queue_slot(queue_name))
    master = cluster.node_for_address(master_address).admin_client()
    async with (
        RedisClusterConnector(redis_cluster.seeds) as connector,
        Client(connector, wait_replicas=1, replica_timeout=2.0) as client,
    ):
        broker = Broker(connector)
        await client.enqueue(Task("ready"), queue=queue_name)
        with cluster.node_for_address(replicas[0]).pausing():
            waiting = [
                asyncio.ensure_future(
                    client.enqueue(Task("later", {"n": n}), queue=queue_name, process_in=60)
                )
                for n in range(4)
            ]
            await eventually(lambda: _waits_blocked(master) >= 4, within=5)
            taken = await broker.dequeue(broker.keys(queue_name), 1, int(time.time()) + 60)
            assert len(taken) == 1
            assert not any(call.done() for call in waiting), "the dequeue waited for a WAIT"
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    # The replica came back within the wait or not: confirmed, or stored and said so.
    assert all(isinstance(o, TaskInfo | NotReplicatedError) for o in outcomes), outcomes


async def test_the_confirming_script_never_stores_a_task(
    redis_cluster: ClusterTarget, queue_name: str
) -> None:
    async with RedisClusterConnector(redis_cluster.seeds) as connector:
        keys = Broker(connector).keys(queue_name)
        await connector.execute("HSET", keys.task("same"), "msg", b"m1")
        await connector.execute("HSET", keys.task("retried"), "msg", b"m2-retried")
        blob = pack_pairs([b"same", b"retried", b"gone"], [b"m1", b"m2", b"m3"])
        script = load_script("confirm_stored")
        found = await connector.run_script(script, [keys.slot_guard], [keys.task_prefix, blob])
        assert found == 1
        assert await connector.execute("HGET", keys.task("retried"), "msg") == b"m2-retried"
        assert await connector.execute("EXISTS", keys.task("gone")) == 0


def _hand_empty_slot_to_another_master(cluster: LocalRedisCluster, slot: int) -> str:
    """Give a slot that holds no key to another master, as a reshard's last step does;
    returns the new owner once every node agrees."""
    source_address, _ = cluster.slot_owner(slot)
    masters = cluster.masters()
    source = next(m for m in masters if m.address == source_address)
    target = next(m for m in masters if m.address != source_address)

    def admin(address: str) -> redis.Redis:
        return cluster.node_for_address(address).admin_client()

    admin(target.address).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
    admin(source.address).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
    for master in [target, source, *(m for m in masters if m not in (target, source))]:
        admin(master.address).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    everyone = [node.address for node in cluster.running_nodes()]
    wait_until(
        lambda: all(cluster.slot_owner(slot, via=a)[0] == target.address for a in everyone),
        timeout=10,
        description="every node to see the slot's new master",
    )
    return target.address


async def test_a_call_redis_py_had_to_redirect_is_confirmed_where_it_was_stored(
    own_cluster: LocalRedisCluster, queue_name: str
) -> None:
    async with (
        RedisClusterConnector(own_cluster.seeds) as connector,
        Client(connector, wait_replicas=1) as client,
    ):
        await client.enqueue(Task("warm"), queue="elsewhere")  # the slot map is read now
        slot = queue_slot(queue_name)
        old_master, _ = own_cluster.slot_owner(slot)
        new_master = _hand_empty_slot_to_another_master(own_cluster, slot)
        moved = own_cluster.node_for_address(old_master).admin_client().info("errorstats")
        info = await client.enqueue(Task("moved"), queue=queue_name)
    refused = own_cluster.node_for_address(old_master).admin_client().info("errorstats")
    assert refused["errorstat_MOVED"]["count"] > moved.get("errorstat_MOVED", {"count": 0})["count"]
    target = own_cluster.node_for_address(new_master).admin_client()
    assert target.lrange(f"asynq:{{{queue_name}}}:pending", 0, -1) == [info.id], "stored once"
    replica = _replica_of(own_cluster, queue_name)
    assert replica.hget(f"asynq:{{{queue_name}}}:t:{info.id}", "state") == b"pending"


async def test_a_scheduler_fire_stored_without_its_replicas_is_recorded_and_reported(
    redis_server: StandaloneTarget, queue_name: str
) -> None:
    outcomes: list[tuple[object, BaseException | None]] = []
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
    async with RedisConnector(redis_server.url) as connector:
        scheduler = Scheduler(
            connector, clock=clock, wait_replicas=1, replica_timeout=0.05,
            after_enqueue=lambda info, error: outcomes.append((info, error)),
        )  # fmt: skip
        entry = scheduler.register("@every 1m", Task("tick"), queue=queue_name)
        clock.advance(60)
        await scheduler.tick()
        await scheduler.tick()  # stored, so not tried again
        async with Inspector(connector) as inspector:
            history = await inspector.scheduler_history(entry)
    [(info, error)] = outcomes
    assert isinstance(error, NotReplicatedError) and info is error.info
    assert [event.task_id for event in history] == [error.info.id]


def _blocked_wait_ids(admin: redis.Redis) -> list[str]:
    return [c["id"] for c in admin.client_list() if c.get("cmd") == "wait" and "b" in c["flags"]]


async def test_a_wait_lost_after_its_script_ran_never_stores_the_task_again(
    redis_cluster: ClusterTarget, queue_name: str
) -> None:
    # The task is stored and, while its WAIT blocks, taken and finished by a worker; then
    # the WAIT's connection dies. Sending the storing script again would store (and run)
    # it twice; the check that goes instead finds it gone, so the call is not confirmed.
    cluster = _harness(redis_cluster)
    master_address, replicas = cluster.slot_owner(queue_slot(queue_name))
    master = cluster.node_for_address(master_address).admin_client()
    pending = f"asynq:{{{queue_name}}}:pending"
    async with (
        RedisClusterConnector(redis_cluster.seeds) as connector,
        Client(connector, wait_replicas=1, replica_timeout=5.0) as client,
    ):
        await client.enqueue(Task("warm"), queue=queue_name)
        master.delete(pending)
        with cluster.node_for_address(replicas[0]).pausing():
            call = asyncio.ensure_future(client.enqueue(Task("once"), queue=queue_name))
            await eventually(lambda: len(_blocked_wait_ids(master)) == 1, within=5)
            [task_id] = master.lrange(pending, 0, -1)
            assert isinstance(task_id, str)  # the admin client decodes replies
            master.delete(pending, f"asynq:{{{queue_name}}}:t:{task_id}")  # "run and done"
            master.execute_command("CLIENT", "KILL", "ID", _blocked_wait_ids(master)[0])
        with pytest.raises(NotReplicatedError) as raised:
            await call
    assert raised.value.info.id == task_id
    assert master.lrange(pending, 0, -1) == [], "the task was stored again"
    assert not master.exists(f"asynq:{{{queue_name}}}:t:{task_id}")


async def test_clients_with_different_replica_timeouts_share_a_connector(
    redis_cluster: ClusterTarget, queue_name: str
) -> None:
    # A connection's reply timeout is fixed when it opens: one opened for a short wait must
    # not carry a longer one (it would be cut off, and the call fail as unreachable).
    cluster = _harness(redis_cluster)
    _, replicas = cluster.slot_owner(queue_slot(queue_name))
    seeds = redis_cluster.seeds
    async with RedisClusterConnector(seeds, socket_timeout=0.5, retry_deadline=3) as connector:
        brief = Client(connector, wait_replicas=1, replica_timeout=0.1)
        patient = Client(connector, wait_replicas=1, replica_timeout=1.5)
        async with brief, patient:
            with cluster.node_for_address(replicas[0]).pausing():
                briefly = [
                    brief.enqueue(Task("brief", {"n": n}), queue=queue_name, process_in=60)
                    for n in range(8)
                ]  # eight connections opened for short waits, idle afterwards
                outcomes = await asyncio.gather(*briefly, return_exceptions=True)
                assert all(isinstance(o, NotReplicatedError) for o in outcomes), outcomes
                with pytest.raises(NotReplicatedError):
                    await patient.enqueue(Task("patient"), queue=queue_name, process_in=60)


async def test_closed_links_open_no_new_connection(redis_server: StandaloneTarget) -> None:
    connector = RedisConnector(redis_server.url)
    async with connector:
        links = connector._links
        assert links is not None
    with pytest.raises(LinkUnusable):
        await links.call(connector.address, ("PING",))
    with pytest.raises(LinkUnusable):
        await links.call_then_wait(
            connector.address, ("PING",), ("WAIT", 0, 1), 0.1, PairProgress()
        )


async def test_when_the_deadline_runs_out_every_stored_task_is_reported_as_stored(
    redis_server: StandaloneTarget, queue_name: str
) -> None:
    # No replica answers: each WAIT holds one of the node's 16 connections for WAIT for
    # replica_timeout, and the calls behind them run out of time. A call whose script ran
    # must say so (NotReplicatedError, its task stored); one that never ran must not.
    queues = [f"{queue_name}-{n}" for n in range(80)]  # so that no calls share a script call
    async with (
        RedisConnector(redis_server.url, retry_deadline=1.0) as connector,
        Client(connector, wait_replicas=1, replica_timeout=0.5) as client,
    ):
        outcomes = await asyncio.gather(
            *(client.enqueue(Task("t"), queue=q) for q in queues), return_exceptions=True
        )
        stored: set[str] = set()
        for q in queues:
            stored.update(
                i.decode()
                for i in await connector.execute("LRANGE", f"asynq:{{{q}}}:pending", 0, -1)
            )
    reported = {o.info.id for o in outcomes if isinstance(o, NotReplicatedError)}
    assert reported == stored, "a stored task was reported as not stored, or the other way"
    failed = [o for o in outcomes if not isinstance(o, NotReplicatedError)]
    assert failed and all(isinstance(o, ConnectionFailedError) for o in failed), failed
    assert all("the call was not sent" in str(o) for o in failed)


async def test_a_call_sent_to_a_stalled_master_says_its_outcome_is_unknown() -> None:
    # Sent, then no reply within the deadline: the script may yet run (here it does, once
    # the master wakes), so the error must not claim the task was not stored.
    with RedisServerProcess(extra_args=["--enable-debug-command", "yes"]) as server:
        admin = redis.Redis.from_url(server.url)  # no reply timeout: it waits out the sleep
        async with (
            RedisConnector(server.url, retry_deadline=0.5) as connector,
            Client(connector, wait_replicas=1, replica_timeout=0.2) as client,
        ):
            with pytest.raises(NotReplicatedError):  # the links and the script are ready
                await client.enqueue(Task("warm"), queue="stalled")
            sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", 2))
            sleeper.start()
            probe = redis.Redis.from_url(server.url, socket_timeout=0.05)
            await eventually(lambda: not _answers(probe), within=5)
            with pytest.raises(ConnectionFailedError, match="may or may not be stored"):
                await client.enqueue(Task("sent"), queue="stalled")
            await asyncio.to_thread(sleeper.join)
            pending = await connector.execute("LRANGE", "asynq:{stalled}:pending", 0, -1)
    assert len(pending) == 2, "the call that timed out was stored after all"


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
