"""How the cluster connector reads the cluster's layout again (after a CLUSTERDOWN, a lost
connection, a slot move): from the nodes that answer, never waiting on a frozen one, and
without asking again for the command table, which a failover does not change."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from asyncq import RedisClusterConnector
from asyncq.testing import LocalRedisCluster
from asyncq.testing.plugin import ClusterTarget


async def _command_table_reads(seeds: list[str]) -> int:
    """How many times the nodes at ``seeds`` have been asked ``COMMAND``."""
    total = 0
    for seed in seeds:
        host, port = seed.rsplit(":", 1)
        async with aioredis.Redis(host=host, port=int(port)) as node:
            stats = await node.info("commandstats")
        total += int(stats.get("cmdstat_command", {}).get("calls", 0))
    return total


async def test_reading_the_layout_again_does_not_read_the_command_table_again(
    redis_cluster: ClusterTarget,
) -> None:
    """redis-py asked the first master for its command table at every reading of the
    layout, so a frozen first master held every call for the socket timeout."""
    async with RedisClusterConnector(redis_cluster.seeds) as connector:
        before = await _command_table_reads(redis_cluster.seeds)
        for _ in range(3):
            await connector.client.aclose()  # what redis-py does on CLUSTERDOWN
            await connector.execute("SET", "layout-read-again", "1")
        assert await connector.execute("GET", "layout-read-again") == b"1"
        assert await _command_table_reads(redis_cluster.seeds) == before


async def test_a_frozen_node_is_not_asked_for_the_layout() -> None:
    """redis-py asks the known nodes for the layout one at a time in random order; one
    that accepts connections but answers nothing (a stopped process) held the reading, and
    every call waiting on it, for the whole socket timeout (here a minute, so a reading that
    asks it would end the test). Every reading now leaves it out."""
    coverage = ["--cluster-require-full-coverage", "no"]
    with LocalRedisCluster(replicas_per_master=0, extra_args=coverage) as cluster:
        async with RedisClusterConnector(cluster.seeds, socket_timeout=60.0) as connector:
            layout = connector.client.nodes_manager
            frozen = cluster.running_nodes()[0]
            with frozen.pausing():
                async with asyncio.timeout(30):  # a guard against the minute-long wait
                    for _ in range(12):  # 3 nodes: 12 readings in random order
                        # Two at once, as redis-py's own and asyncq's can be: both find the
                        # frozen node slow, and both must leave it out without failing.
                        await asyncio.gather(layout.initialize(), layout.initialize())
            assert frozen.address in layout.startup_nodes  # still known, only not asked
            assert await connector.execute("SET", "after-the-freeze", "1")
