"""SyncClient: the Client for code that is not async, on real Redis (both topologies)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from asyncq import (
    ConnectionFailedError,
    DuplicateTaskError,
    RedisClusterConnector,
    RedisConnector,
    ServeMux,
    SyncClient,
    Task,
    TaskState,
)
from asyncq.testing.plugin import ClusterTarget, StandaloneTarget
from asyncq.testing.servers import free_port
from tests.worker_helpers import key, running_server


@pytest.fixture(params=["standalone", "cluster"])
def sync_connector(request: pytest.FixtureRequest) -> RedisConnector | RedisClusterConnector:
    """A connector not yet connected: the SyncClient connects it on its own loop."""
    if request.param == "standalone":
        target: StandaloneTarget = request.getfixturevalue("redis_server")
        return RedisConnector(target.url)
    cluster: ClusterTarget = request.getfixturevalue("redis_cluster")
    return RedisClusterConnector(cluster.seeds)


def _pending(connector: RedisConnector | RedisClusterConnector, queue: str) -> int:
    """How many tasks are pending, read with redis-py's own blocking client."""
    name = key(queue, "pending")
    if isinstance(connector, RedisClusterConnector):
        host, port = connector.address.split(",")[0].rsplit(":", 1)
        with redis.RedisCluster(host=host, port=int(port)) as cluster:
            return int(cluster.llen(name))
    with redis.Redis.from_url(f"redis://{connector.address}/0") as server:
        return int(server.llen(name))


def test_enqueue_blocks_until_stored_and_raises_the_clients_errors(
    sync_connector: RedisConnector | RedisClusterConnector, queue_name: str
) -> None:
    with SyncClient(sync_connector) as client:
        info = client.enqueue(Task("email:send", {"to": 1}), queue=queue_name, unique=60)
        assert info.state is TaskState.PENDING and info.queue == queue_name
        with pytest.raises(DuplicateTaskError):
            client.enqueue(Task("email:send", {"to": 1}), queue=queue_name, unique=60)
        results = client.enqueue_many([Task("a"), Task("b")], queue=queue_name)
        assert [r.ok for r in results] == [True, True]
    assert _pending(sync_connector, queue_name) == 3


def test_calls_from_many_threads_at_once_all_land(
    sync_connector: RedisConnector | RedisClusterConnector, queue_name: str
) -> None:
    """A threaded web server's requests enqueue at the same moment; they share the loop."""
    with SyncClient(sync_connector) as client, ThreadPoolExecutor(16) as pool:
        infos = list(
            pool.map(lambda n: client.enqueue(Task("t", {"n": n}), queue=queue_name), range(200))
        )
    assert len({info.id for info in infos}) == 200
    assert _pending(sync_connector, queue_name) == 200


def test_wait_result_blocks_until_a_worker_finished_the_task(
    redis_server: StandaloneTarget, queue_name: str
) -> None:
    mux = ServeMux()

    @mux.handler("double")
    async def double(task: Task) -> None:
        await task.write_result({"twice": task.json()["n"] * 2})

    done = threading.Event()
    worker_connector = RedisConnector(redis_server.url)

    async def serve() -> None:
        async with worker_connector, running_server(worker_connector, mux, {queue_name: 1}):
            await asyncio.to_thread(done.wait)

    worker = threading.Thread(target=asyncio.run, args=(serve(),))
    worker.start()
    try:
        with SyncClient(RedisConnector(redis_server.url)) as client:
            info = client.enqueue(Task("double", {"n": 21}), queue=queue_name, retention=60)
            assert client.wait_result(info, timeout=20) == b'{"twice":42}'
    finally:
        done.set()
        worker.join()


def test_a_closed_or_unreachable_client_says_so() -> None:
    client = SyncClient(RedisConnector(port=free_port(), retry_deadline=0.5))
    with pytest.raises(RuntimeError, match="not open"):
        client.enqueue(Task("t"))
    with pytest.raises(ConnectionFailedError):
        client.open()
    with pytest.raises(RuntimeError, match="not open"):  # a failed open leaves it closed
        client.enqueue(Task("t"))
    assert not [t for t in threading.enumerate() if t.name == "asyncq-sync"]


def test_closing_ends_a_call_still_on_its_way_instead_of_leaving_it_hanging(
    redis_server: StandaloneTarget, queue_name: str
) -> None:
    """A thread waiting on a result that never comes (no worker) when another closes the
    client: its call was left waiting for ever on a stopped loop."""
    client = SyncClient(RedisConnector(redis_server.url))
    client.open()
    info = client.enqueue(Task("never-run"), queue=queue_name, retention=60)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            client.wait_result(info, timeout=None)
        except BaseException as error:
            errors.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    client.close()
    waiter.join(timeout=30)  # a guard: the call ends at once, or the test fails below
    assert not waiter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert not [t for t in threading.enumerate() if t.name == "asyncq-sync"]
    client.close()  # closing again does nothing
