"""Shared helpers for the worker tests: a server that runs for one block, and Redis reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from asyncq import Connector, ServeMux, Server, Task
from asyncq._broker.message import decode_message
from asyncq._proto.asynq_pb2 import TaskMessage


class FastIntervals(TypedDict):
    task_check_interval: float
    delayed_task_check_interval: float
    janitor_interval: float
    heartbeat_interval: float
    shutdown_timeout: float


# Short intervals so that tests notice changes quickly; behaviour is the same.
FAST: FastIntervals = {
    "task_check_interval": 0.01,
    "delayed_task_check_interval": 0.02,
    "janitor_interval": 0.02,
    "heartbeat_interval": 0.1,
    "shutdown_timeout": 2.0,
}


def raising_mux(task_type: str, error: type[BaseException], message: str) -> ServeMux:
    """A mux whose one handler, for ``task_type``, always raises ``error(message)``."""
    mux = ServeMux()

    @mux.handler(task_type)
    async def fail(task: Task) -> None:
        raise error(message)

    return mux


@asynccontextmanager
async def running_server(
    connector: Connector, mux: ServeMux, queues: dict[str, int], **options: Any
) -> AsyncIterator[Server]:
    """A Server serving ``queues`` for the duration of the block, then shut down."""
    settings = {**FAST, **options}
    server = Server(connector, queues=queues, **settings)
    await server.start(mux)
    try:
        yield server
    finally:
        await server.shutdown()


def key(queue: str, suffix: str) -> str:
    return f"asynq:{{{queue}}}:{suffix}"


async def task_state(connector: Connector, queue: str, task_id: str) -> str | None:
    raw = await connector.client.hget(key(queue, f"t:{task_id}"), "state")
    return raw.decode() if raw is not None else None


async def task_message(connector: Connector, queue: str, task_id: str) -> TaskMessage:
    raw = await connector.client.hget(key(queue, f"t:{task_id}"), "msg")
    assert raw is not None, f"task {task_id} has no hash"
    return decode_message(raw)


async def counter(connector: Connector, name: str) -> int:
    raw = await connector.client.get(name)
    return int(raw) if raw is not None else 0


async def state_is(connector: Connector, queue: str, task_id: str, state: str) -> bool:
    """Whether the task's hash says ``state`` (for ``eventually``)."""
    return await task_state(connector, queue, task_id) == state


async def gone(connector: Connector, queue: str, task_id: str) -> bool:
    """Whether the task's hash no longer exists (done without retention, or deleted)."""
    return not await connector.client.exists(key(queue, f"t:{task_id}"))


def signalling_mux(task_type: str = "t") -> tuple[ServeMux, asyncio.Event]:
    """A mux whose handler for ``task_type`` sets the returned event when it runs."""
    ran = asyncio.Event()
    mux = ServeMux()

    async def work(task: Task) -> None:
        ran.set()

    mux.handle(task_type, work)
    return mux, ran


async def write_like_go(connector: Connector, queue: str, task_id: str) -> None:
    """A pending task of type "t" stored as Go's asynq stores it: no wake-up is published."""
    msg = TaskMessage(type="t", id=task_id, queue=queue, retry=25, timeout=1800)
    await connector.client.hset(
        key(queue, f"t:{task_id}"), mapping={"msg": msg.SerializeToString(), "state": "pending"}
    )
    await connector.client.lpush(key(queue, "pending"), task_id)
