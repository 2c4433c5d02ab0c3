"""pytest plugin: real Redis for tests, started once per run and stopped at the end.

Fixtures (all start their servers lazily, only when a test asks for them):

- ``redis_server``: a standalone ``redis-server`` on a free loopback port (session).
- ``redis_cluster``: a 6-node cluster, 3 masters + 3 replicas (session).
- ``standalone_connector`` / ``cluster_connector``: connected connectors (per test).
- ``connector``: parametrised over both, so a test runs on each topology.
- ``queue_name``: a fresh queue name per test, for isolation without FLUSHALL.

Set ``ASYNCQ_TEST_REDIS_URL`` or ``ASYNCQ_TEST_CLUSTER_NODES`` to use servers you
run yourself, or ``ASYNCQ_TEST_DOCKER=1`` to start the standalone server with
testcontainers where Docker runs. By default local processes are used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from asyncq._cluster.connector import Connector, RedisClusterConnector, RedisConnector
from asyncq.testing.servers import LocalRedisCluster, RedisServerProcess

__all__ = ["ClusterTarget", "StandaloneTarget"]

# Declared through pytest-asyncio when it is there, the async fixtures run in its strict
# mode too; the plugin still loads without it (typed as pytest's own, which it wraps).
if TYPE_CHECKING:
    async_fixture = pytest.fixture
else:
    try:
        from pytest_asyncio import fixture as async_fixture
    except ImportError:
        async_fixture = pytest.fixture


@dataclass(frozen=True)
class StandaloneTarget:
    """Where the standalone test Redis listens."""

    url: str


@dataclass(frozen=True)
class ClusterTarget:
    """The seed nodes of the test cluster (and the harness, when we started it)."""

    seeds: list[str]
    harness: LocalRedisCluster | None = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[StandaloneTarget]:
    """A standalone Redis for the whole test run."""
    external = os.environ.get("ASYNCQ_TEST_REDIS_URL")
    if external:
        yield StandaloneTarget(external)
        return
    if os.environ.get("ASYNCQ_TEST_DOCKER") == "1":
        from asyncq.testing.containers import ContainerRedisServer, docker_available

        if docker_available():
            container = ContainerRedisServer()
            try:
                yield StandaloneTarget(container.url)
            finally:
                container.stop()
            return
    server = RedisServerProcess().start()
    try:
        yield StandaloneTarget(server.url)
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterTarget]:
    """A 6-node Redis Cluster (3 masters, 3 replicas) for the whole test run."""
    external = os.environ.get("ASYNCQ_TEST_CLUSTER_NODES")
    if external:
        yield ClusterTarget([n.strip() for n in external.split(",") if n.strip()])
        return
    cluster = LocalRedisCluster().start()
    try:
        yield ClusterTarget(cluster.seeds, cluster)
    finally:
        cluster.stop()


@async_fixture
async def standalone_connector(redis_server: StandaloneTarget) -> AsyncIterator[Connector]:
    """A connected ``RedisConnector`` to the standalone test server."""
    async with RedisConnector(redis_server.url) as connector:
        yield connector


@async_fixture
async def cluster_connector(redis_cluster: ClusterTarget) -> AsyncIterator[Connector]:
    """A connected ``RedisClusterConnector`` to the test cluster."""
    async with RedisClusterConnector(redis_cluster.seeds) as connector:
        yield connector


@async_fixture(params=["standalone", "cluster"])
async def connector(request: pytest.FixtureRequest) -> AsyncIterator[Connector]:
    """A connected connector, once for a standalone Redis and once for the cluster."""
    if request.param == "standalone":
        target: StandaloneTarget = request.getfixturevalue("redis_server")
        made: Connector = RedisConnector(target.url)
    else:
        cluster: ClusterTarget = request.getfixturevalue("redis_cluster")
        made = RedisClusterConnector(cluster.seeds)
    async with made:
        yield made


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"
