"""On a cluster, each queue's keys live on the master that owns the slot of `{<queue>}`."""

from __future__ import annotations

import pytest
import redis

from asyncq import Client, Connector, Task
from asyncq._cluster.slots import queue_slot
from asyncq.testing.plugin import ClusterTarget

TUTORIAL = [
    ("notifications:email", "notifications", {"to": 123, "from": 456}),
    ("webhooks:sync", "webhooks", {"data": 123456}),
    ("images:resize", "images", {"src": "some/path/to/image"}),
]


def test_queue_slots_match_redis() -> None:
    assert [queue_slot(q) for _, q, _ in TUTORIAL] == [16340, 4418, 9450]


async def test_tutorial_tasks_sit_on_the_owning_master_only(
    cluster_connector: Connector, redis_cluster: ClusterTarget
) -> None:
    harness = redis_cluster.harness
    if harness is None:
        pytest.skip("needs the harness's own cluster to look at each node")
    async with Client(cluster_connector) as client:
        ids = {}
        for task_type, queue, payload in TUTORIAL:
            info = await client.enqueue(Task(task_type, payload), queue=queue)
            ids[queue] = info.id
    try:
        for _, queue, _ in TUTORIAL:
            slot = harness.slot_for_key(f"asynq:{{{queue}}}:pending")
            assert slot == queue_slot(queue)
            owner, _replicas = harness.slot_owner(slot)
            for master in harness.masters():
                with redis.Redis.from_url(f"redis://{master.address}/0") as node:
                    keys = sorted(k.decode() for k in node.scan_iter(match=f"asynq:{{{queue}}}:*"))
                if master.address == owner:
                    assert keys == [
                        f"asynq:{{{queue}}}:pending",
                        f"asynq:{{{queue}}}:t:{ids[queue]}",
                    ]
                else:
                    assert keys == [], f"{queue} keys found on {master.address}, not the owner"
    finally:
        for _, queue, _ in TUTORIAL:
            async for key in cluster_connector.client.scan_iter(match=f"asynq:{{{queue}}}:*"):
                await cluster_connector.client.delete(key)
