"""Results: written by handlers, kept with retention, awaited by clients."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from asyncq import (
    Client,
    Connector,
    ResultNotKeptError,
    ResultTimeoutError,
    ServeMux,
    SkipRetry,
    Task,
    TaskFailedError,
    TaskNotFoundError,
)
from asyncq.testing import ManualClock, eventually
from tests.worker_helpers import gone, running_server


def result_mux(release: asyncio.Event) -> ServeMux:
    mux = ServeMux()

    @mux.handler("square")
    async def square(task: Task) -> None:
        await task.write_result({"square": task.json()["n"] ** 2})

    @mux.handler("slow")
    async def slow(task: Task) -> None:
        await release.wait()
        await task.write_result(b"finally")

    @mux.handler("broken")
    async def broken(task: Task) -> None:
        raise SkipRetry("cannot be done")

    return mux


async def test_result_round_trip(connector: Connector, queue_name: str) -> None:
    async with (
        Client(connector) as client,
        running_server(connector, result_mux(asyncio.Event()), {queue_name: 1}),
    ):
        info = await client.enqueue(Task("square", {"n": 7}), queue=queue_name, retention=60)
        result = await client.wait_result(info, timeout=10)
        assert orjson.loads(result) == {"square": 49}
        # By id, as a different part of an app would ask.
        assert await client.wait_result(info.id, queue=queue_name) == result


async def test_waiting_on_a_slow_task_times_out_then_succeeds(
    connector: Connector, queue_name: str
) -> None:
    release = asyncio.Event()
    async with (
        Client(connector) as client,
        running_server(connector, result_mux(release), {queue_name: 1}),
    ):
        info = await client.enqueue(Task("slow"), queue=queue_name, retention=60)
        with pytest.raises(ResultTimeoutError, match=r"did not finish within 0\.2s"):
            await client.wait_result(info, timeout=0.2)
        release.set()
        assert await client.wait_result(info, timeout=10) == b"finally"


async def test_waiting_on_a_failing_task_raises_its_error(
    connector: Connector, queue_name: str
) -> None:
    async with (
        Client(connector) as client,
        running_server(connector, result_mux(asyncio.Event()), {queue_name: 1}),
    ):
        info = await client.enqueue(Task("broken"), queue=queue_name, retention=60)
        with pytest.raises(TaskFailedError, match="SkipRetry: cannot be done"):
            await client.wait_result(info, timeout=10)


async def test_without_retention_the_result_is_not_kept(
    connector: Connector, queue_name: str
) -> None:
    release = asyncio.Event()
    async with (
        Client(connector) as client,
        running_server(connector, result_mux(release), {queue_name: 1}),
    ):
        info = await client.enqueue(Task("slow"), queue=queue_name)
        waiter = asyncio.ensure_future(client.wait_result(info, timeout=10))
        await asyncio.sleep(0)  # the waiter sees the task before it finishes
        release.set()
        with pytest.raises(ResultNotKeptError, match="retention="):
            await waiter
        with pytest.raises(TaskNotFoundError):
            await client.wait_result("no-such-task", queue=queue_name)


async def test_waiting_on_an_aggregated_task_says_its_result_is_the_new_tasks(
    connector: Connector, queue_name: str
) -> None:
    def combine(group: str, tasks: list[Task]) -> Task:
        return Task("square", {"n": len(tasks)})

    async with (
        Client(connector) as client,
        running_server(
            connector, result_mux(asyncio.Event()), {queue_name: 1},
            group_aggregator=combine, group_max_size=1, group_check_interval=0.02,
        ),
    ):  # fmt: skip
        info = await client.enqueue(Task("item"), queue=queue_name, group="g", retention=60)
        with pytest.raises(ResultNotKeptError, match="of group 'g' was aggregated into a new task"):
            await client.wait_result(info, timeout=10)


async def test_results_expire_with_their_retention(connector: Connector, queue_name: str) -> None:
    clock = ManualClock()
    async with (
        Client(connector) as client,
        running_server(connector, result_mux(asyncio.Event()), {queue_name: 1}, clock=clock),
    ):
        info = await client.enqueue(Task("square", {"n": 3}), queue=queue_name, retention=30)
        assert orjson.loads(await client.wait_result(info)) == {"square": 9}
        clock.advance(31)
        await eventually(lambda: gone(connector, queue_name, info.id))
