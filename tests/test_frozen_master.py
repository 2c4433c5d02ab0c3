"""One master of a cluster frozen (a stopped process, a stalled machine): it accepts
connections but answers nothing, until the cluster fails it over to its replica.

Workers and clients must go on with the queues of the other masters meanwhile, and
find the frozen master's queue on the replica that took its place, without waiting for
the frozen node to wake up. These tests freeze a real redis-server with SIGSTOP.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import redis

from asyncq import Client, RedisClusterConnector, ServeMux, Task
from asyncq._cluster.slots import queue_slot
from asyncq.testing import LocalRedisCluster, RedisServerProcess, eventually
from tests.worker_helpers import running_server

# Long enough for the cluster to notice (about 2 s with a 1 s node timeout), promote the
# replica, and for a silent node to be given up (the 5 s socket timeout).
WITHIN = 20.0
# For one task of a healthy queue: the worker gives a silent node's reply 2 s before it
# serves the others without it (a silent call used to hold it 5 s at the very least).
ROUND = 4.5


def queues_on_each_master(cluster: LocalRedisCluster) -> list[str]:
    """One queue name per master, in the masters' order."""
    by_master: dict[str, str] = {}
    index = 0
    while len(by_master) < len(cluster.masters()):
        name = f"frozen-{index}"
        by_master.setdefault(cluster.slot_owner(queue_slot(name))[0], name)
        index += 1
    return list(by_master.values())


def master_of(cluster: LocalRedisCluster, queue: str) -> RedisServerProcess:
    """The process of the master that holds ``queue``."""
    return cluster.node_for_address(cluster.slot_owner(queue_slot(queue))[0])


@asynccontextmanager
async def idle_worker_on(
    cluster: LocalRedisCluster, queues: list[str], started: Counter[str]
) -> AsyncIterator[Client]:
    """A worker serving ``queues`` (counting each task's start in ``started``), once it
    has run a task of each, so that it now waits on every queue's master; and a client
    of its own."""
    async with (
        RedisClusterConnector(cluster.seeds) as worker_connector,
        RedisClusterConnector(cluster.seeds) as client_connector,
        Client(client_connector) as client,
        running_server(
            worker_connector,
            _recording_mux(started),
            dict.fromkeys(queues, 1),
            task_check_interval=1.0,
        ),
    ):
        for queue in queues:
            await client.enqueue(Task("t", f"before-{queue}".encode()), queue=queue)
        await eventually(lambda: len(started) == len(queues), what="the first tasks")
        yield client


async def test_a_frozen_master_without_a_replica_holds_up_no_other_queue() -> None:
    """Nothing can take the frozen master's place, and the cluster is set to serve the
    slots it still can. An idle worker waits on every queue's master; the other queues'
    tasks keep running, one after another, while the frozen one is left for later. (The
    worker used to stop for the frozen node's reply: its release, then the dequeue sent
    again, each waiting out the 5 s socket timeout and then the retry deadline.)"""
    coverage = ["--cluster-require-full-coverage", "no"]
    with LocalRedisCluster(replicas_per_master=0, extra_args=coverage) as cluster:
        queues = queues_on_each_master(cluster)
        frozen, healthy = queues[0], queues[1:]
        started: Counter[str] = Counter()
        async with idle_worker_on(cluster, queues, started) as client:
            with master_of(cluster, frozen).pausing():
                for round_ in range(3):
                    name = f"round-{round_}"
                    await client.enqueue(Task("t", name.encode()), queue=healthy[round_ % 2])
                    await eventually(
                        partial(_ran_once, started, name),
                        within=ROUND,
                        what=f"the task of {name}",
                    )
    assert set(started.values()) == {1}, f"a task ran twice: {started}"


async def test_a_frozen_master_holds_up_neither_the_other_queues_nor_its_own_after_failover(
    own_cluster: LocalRedisCluster,
) -> None:
    """An idle worker waits on every queue's master. With one master frozen, the other
    queues' tasks run, and once the replica has taken over, a task of the frozen master's
    queue runs there, still before the old master wakes up (the worker and the client
    read the layout again once the silent node's socket timeout passes). Every task runs
    once."""
    queues = queues_on_each_master(own_cluster)
    frozen, healthy = queues[0], queues[1:]
    started: Counter[str] = Counter()
    async with idle_worker_on(own_cluster, queues, started) as client:
        old_master = master_of(own_cluster, frozen)
        with old_master.pausing():
            for queue in healthy:
                await client.enqueue(Task("t", f"during-{queue}".encode()), queue=queue)
            await eventually(
                lambda: all(started[f"during-{queue}"] for queue in healthy),
                within=WITHIN,
                what="the other queues' tasks, while a master is frozen",
            )
            await asyncio.to_thread(
                own_cluster.wait_for_failover, queue_slot(frozen), old_master.address, WITHIN
            )
            await client.enqueue(Task("t", b"after-failover"), queue=frozen)
            await eventually(
                lambda: started["after-failover"] == 1,
                within=WITHIN,
                what="the frozen master's queue, served by its promoted replica",
            )
        expected = [f"{when}-{queue}" for when in ("before", "during") for queue in healthy]
        await eventually(lambda: set(expected) <= set(started), what="every task")
    assert set(started.values()) == {1}, f"a task ran twice: {started}"


async def test_a_script_call_that_meets_clusterdown_waits_for_the_cluster_on_its_node() -> None:
    """While the cluster is down (a master failed, no replica promoted yet), every node
    refuses every command with CLUSTERDOWN. A call keeps trying its own node and goes
    through when the cluster is back; handed to redis-py, it read the layout again (which
    may wait on the failed node) and here failed at once, as the layout had a hole."""
    with LocalRedisCluster(masters=1, replicas_per_master=0) as cluster:
        node = cluster.nodes[0].admin_client()
        queue = "clusterdown"
        slot = queue_slot(queue)
        async with (
            RedisClusterConnector(cluster.seeds) as connector,
            Client(connector) as client,
        ):
            await client.enqueue(Task("t", b"before"), queue=queue)  # links and script ready
            node.execute_command("CLUSTER", "DELSLOTS", slot)
            await eventually(lambda: cluster.cluster_info()["cluster_state"] == "fail")
            enqueue = asyncio.create_task(client.enqueue(Task("t", b"down"), queue=queue))
            await eventually(lambda: _refusals(node) >= 3, what="calls refused, and retried")
            assert not enqueue.done(), "the call gave up while the cluster was down"
            node.execute_command("CLUSTER", "ADDSLOTS", slot)
            info = await asyncio.wait_for(enqueue, WITHIN)
            assert info.queue == queue
            assert node.llen(f"asynq:{{{queue}}}:pending") == 2


def _recording_mux(started: Counter[str]) -> ServeMux:
    """A mux that counts each task's start by its payload."""
    mux = ServeMux()

    @mux.handler("t")
    async def record(task: Task) -> None:
        started[task.payload.decode()] += 1

    return mux


def _ran_once(started: Counter[str], name: str) -> bool:
    return started[name] == 1


def _refusals(node: redis.Redis) -> int:
    """How many commands the node refused with CLUSTERDOWN so far."""
    stats = node.info("errorstats")
    return int(stats.get("errorstat_CLUSTERDOWN", {}).get("count", 0))
