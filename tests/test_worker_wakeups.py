"""Wake-up messages: subscribed to only while the worker waits without a watch."""

from __future__ import annotations

from asyncq import Client, Connector, Inspector, ServeMux, Task
from asyncq._cluster.slots import queue_slot
from asyncq._worker.watches import MAX_WATCHED_QUEUES
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


def _more_than_watched(queue: str, *first: str) -> dict[str, int]:
    """``first``, then other queues named after ``queue``: one more than a worker watches."""
    names = [*first, *(f"{queue}-x{n}" for n in range(MAX_WATCHED_QUEUES))]
    return dict.fromkeys(names[: MAX_WATCHED_QUEUES + 1], 1)


async def test_a_worker_that_cannot_watch_is_woken_by_an_enqueue(
    connector: Connector, queue_name: str
) -> None:
    """More queues than a worker watches: no watch, and the poll is a minute away. Two of
    the queues share a node (on the cluster, in two slots): one connection subscribes to
    both."""
    other = _same_node_queue(connector, queue_name)
    mux, ran = signalling_mux()
    queues = _more_than_watched(queue_name, queue_name, other)
    async with running_server(connector, mux, queues, task_check_interval=NO_POLL) as server:
        await eventually(server.component("waker").subscribed.is_set, what="the subscription")
        assert await _subscribers_are(connector, [queue_name, other], 1)
        async with Client(connector) as client:
            await client.enqueue(Task("t"), queue=other)
        await eventually(ran.is_set, within=10, what="the task to start without polling")


async def test_the_subscription_lapses_once_the_worker_watches_again(
    connector: Connector, queue_name: str
) -> None:
    """A paused queue holding a task wakes every watch at once, so the worker waits for
    wake-ups instead; once the queue runs again and is empty, the worker watches again
    and the subscription goes."""
    other = f"{queue_name}-other"
    ran: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.append(task.queue or "")

    async with Client(connector) as client, Inspector(connector) as inspector:
        await client.enqueue(Task("t"), queue=queue_name)
        await inspector.pause(queue_name)
        async with running_server(
            connector, mux, {queue_name: 1, other: 1}, concurrency=2, task_check_interval=NO_POLL
        ) as server:
            waker = server.component("waker")
            waker.linger = 0.2
            await eventually(waker.subscribed.is_set, what="the subscription, for the pause")
            await client.enqueue(Task("t"), queue=other)
            await eventually(lambda: ran == [other], within=10, what="the task, by a wake-up")
            await inspector.unpause(queue_name)
            await client.enqueue(Task("t"), queue=other)  # its wake-up finds both
            await eventually(lambda: len(ran) == 3, within=10, what="both tasks")
            await eventually(lambda: not waker.subscribed.is_set(), what="the subscription to go")
            await eventually(
                lambda: _subscribers_are(connector, [queue_name, other], 0), what="no subscriber"
            )
            await client.enqueue(Task("t"), queue=other)
            await eventually(lambda: len(ran) == 4, within=10, what="the next task, by a watch")


async def _subscribers_are(connector: Connector, queues: list[str], count: int) -> bool:
    return all([await _subscribers(connector, queue) == count for queue in queues])
