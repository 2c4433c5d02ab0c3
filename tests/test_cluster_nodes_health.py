"""``queue ls --cluster`` (``Inspector.cluster_nodes``) lists the nodes that can serve a
queue's slot: a replica that has failed is left out, as asynq's CLUSTER SLOTS leaves it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncq import Inspector, RedisClusterConnector
from asyncq._cluster.slots import queue_slot
from asyncq.testing import LocalRedisCluster, eventually


@pytest.fixture
def cluster() -> Iterator[LocalRedisCluster]:
    # Its own cluster: a replica is killed here, and the shared one keeps all of its.
    with LocalRedisCluster(masters=3, replicas_per_master=1) as started:
        yield started


async def test_a_failed_replica_is_not_listed_as_holding_the_queue(
    cluster: LocalRedisCluster,
) -> None:
    queue = "health"
    master, replicas = cluster.slot_owner(queue_slot(queue))
    assert len(replicas) == 1
    async with RedisClusterConnector(cluster.seeds) as connector, Inspector(connector) as inspector:
        listed = [node.address for node in await inspector.cluster_nodes(queue)]
        assert listed == [master, replicas[0]]
        cluster.node_for_address(replicas[0]).kill()

        async def only_the_master_is_listed() -> bool:
            nodes = await inspector.cluster_nodes(queue)
            return [node.address for node in nodes] == [master]

        await eventually(only_the_master_is_listed, within=20, what="the dead replica dropped")
