"""Wake-up messages: subscribed to only while the worker waits without a watch."""

from __future__ import annotations

import asyncio

from asyncq import Client, Connector, ServeMux, Task
from asyncq._cluster.slots import queue_slot
from asyncq.testing import eventually
from tests.worker_helpers import key, running_server, signalling_mux

# Long enough that only a wake-up or a watch (not the poll) can start a task in a test.
NO_POLL = 60.0


async def _subscribers(connector: Connector, queue: str) -> int:
    """How many connections listen on ``queue``'s wake-up channel (on its node)."""
    node = connector.node_client(connector.node_of(key(queue, "pending")))
    try:
        reply = await node.execute_command("PUBSUB", "SHARDNUMSUB", key(queue, "wakeup"))
    finally:
        await node.aclose()
    return int(reply[1])


async def _watched(connector: Connector, queue: str) -> bool:
    node = connector.node_client(connector.node_of(key(queue, "pending")))
    try:
        clients = await node.client_list()
    finally:
        await node.aclose()
    return any(c.get("cmd") == "blmove" for c in clients)


async def test_a_watching_worker_holds_no_wake_up_subscription(
    connector: Connector, queue_name: str
) -> None:
    """A watch takes the task; a wake-up would only reach the worker ahead of it."""
    mux, ran = signalling_mux()
    async with running_server(connector, mux, {queue_name: 1}, task_check_interval=NO_POLL):
        await eventually(lambda: _watched(connector, queue_name), what="the watch")
        async with Client(connector) as client:
            await client.enqueue(Task("t"), queue=queue_name)
        await eventually(ran.is_set, within=10, what="the task, through the watch")
        assert await _subscribers(connector, queue_name) == 0


def _same_node_queue(connector: Connector, queue: str) -> str:
    """Another queue on ``queue``'s node, in another slot (any other queue standalone)."""
    node = connector.node_of(key(queue, "pending"))
    for n in range(1000):
        other = f"{queue}-{n}"
        if connector.node_of(key(other, "pending")) == node and queue_slot(other) != queue_slot(
            queue
        ):
            return other
    raise AssertionError("no other queue name on the same node")


async def test_a_worker_that_cannot_watch_is_woken_by_an_enqueue(
    connector: Connector, queue_name: str
) -> None:
    """One slot for two queues: no watch, and the poll is a minute away. The queues
    share a node (on the cluster, in two slots), so one connection subscribes to both."""
    other = _same_node_queue(connector, queue_name)
    mux, ran = signalling_mux()
    async with running_server(
        connector, mux, {queue_name: 1, other: 1}, concurrency=1, task_check_interval=NO_POLL
    ) as server:
        await eventually(server.component("waker").subscribed.is_set, what="the subscription")
        assert await _subscribers_are(connector, [queue_name, other], 1)
        async with Client(connector) as client:
            await client.enqueue(Task("t"), queue=other)
        await eventually(ran.is_set, within=10, what="the task to start without polling")


async def test_the_subscription_lapses_once_the_worker_watches_again(
    connector: Connector, queue_name: str
) -> None:
    """Two slots for two queues: a long task leaves one slot, so the worker waits for
    wake-ups; once it is done, the worker watches again and the subscription goes."""
    other = f"{queue_name}-other"
    release = asyncio.Event()
    quick_ran = asyncio.Event()
    mux = ServeMux()

    @mux.handler("long")
    async def long(task: Task) -> None:
        await release.wait()

    @mux.handler("quick")
    async def quick(task: Task) -> None:
        quick_ran.set()

    async with (
        running_server(
            connector, mux, {queue_name: 1, other: 1}, concurrency=2, task_check_interval=NO_POLL
        ) as server,
        Client(connector) as client,
    ):
        waker = server.component("waker")
        waker.linger = 0.2
        assert await _subscribers(connector, queue_name) == 0
        await client.enqueue(Task("long"), queue=queue_name)
        await eventually(waker.subscribed.is_set, what="the subscription, with one slot left")
        await client.enqueue(Task("quick"), queue=other)
        await eventually(quick_ran.is_set, within=10, what="the quick task, through a wake-up")
        release.set()
        await eventually(lambda: server.running_tasks == 0, what="the long task to end")
        await eventually(lambda: not waker.subscribed.is_set(), what="the subscription to go")
        await eventually(
            lambda: _subscribers_are(connector, [queue_name, other], 0), what="no subscriber"
        )
        quick_ran.clear()
        await client.enqueue(Task("quick"), queue=other)
        await eventually(quick_ran.is_set, within=10, what="the next task, through a watch")


async def _subscribers_are(connector: Connector, queues: list[str], count: int) -> bool:
    return all([await _subscribers(connector, queue) == count for queue in queues])
