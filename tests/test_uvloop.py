"""asyncq on uvloop, the event loop that uvicorn and other web servers pick when it is installed.

Each test runs its own uvloop loop (not pytest-asyncio's) and fails if anything reaches the
loop's exception handler: a callback that raised there once left every script link without
its connection, so each call quietly went the slow way through redis-py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from asyncq import Client, Connector, RedisClusterConnector, RedisConnector, Task
from asyncq.testing import eventually
from asyncq.testing.plugin import ClusterTarget, StandaloneTarget
from tests.worker_helpers import key, running_server, signalling_mux

uvloop = pytest.importorskip("uvloop")

ConnectorFactory = Callable[[], Connector]


def run_on_uvloop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main()`` on a new uvloop loop; fail if the loop reported an error meanwhile."""
    reported: list[dict[str, Any]] = []
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.get_loop().set_exception_handler(lambda _, context: reported.append(context))
        runner.run(main())
    assert not reported, f"the event loop reported errors: {reported}"


@pytest.fixture(params=["standalone", "cluster"])
def make_connector(request: pytest.FixtureRequest) -> ConnectorFactory:
    """Builds a connector for a loop of the test's own (the servers are shared)."""
    if request.param == "standalone":
        target: StandaloneTarget = request.getfixturevalue("redis_server")
        return lambda: RedisConnector(target.url)
    cluster: ClusterTarget = request.getfixturevalue("redis_cluster")
    return lambda: RedisClusterConnector(cluster.seeds)


def test_enqueues_travel_over_script_links(
    make_connector: ConnectorFactory, queue_name: str
) -> None:
    async def main() -> None:
        async with make_connector() as connector, Client(connector) as client:
            infos = await asyncio.gather(
                *(client.enqueue(Task("t", {"n": n}), queue=queue_name) for n in range(50))
            )
            pending_key = key(queue_name, "pending")
            assert connector._links is not None
            assert connector.node_of(pending_key) in connector._links.usable_addresses()
            pending = await connector.client.lrange(pending_key, 0, -1)
            assert sorted(p.decode() for p in pending) == sorted(info.id for info in infos)

    run_on_uvloop(main)


def test_a_worker_runs_what_is_enqueued(make_connector: ConnectorFactory, queue_name: str) -> None:
    async def main() -> None:
        done: list[int] = []
        mux, idle_task_ran = signalling_mux("idle")

        async def record(task: Task) -> None:
            done.append(task.json()["n"])

        mux.handle("count", record)
        async with make_connector() as connector, Client(connector) as client:
            for n in range(40):
                await client.enqueue(Task("count", {"n": n}), queue=queue_name)
            async with running_server(connector, mux, {queue_name: 1}, concurrency=8):
                await eventually(lambda: len(done) == 40, what="40 tasks handled")
                # An idle worker is woken for a new task.
                await client.enqueue(Task("idle"), queue=queue_name)
                await asyncio.wait_for(idle_task_ran.wait(), timeout=5)
        assert sorted(done) == list(range(40))

    run_on_uvloop(main)
