"""The README's main job: asynq's Redis Cluster tutorial on a local 6-node cluster.

Starts a cluster (ports 7000-7005, or free ports if those are taken), enqueues the
tutorial's three tasks, shows on which master each queue's keys landed, and stops
everything it started.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncq import RedisClusterConnector
from asyncq._cluster.slots import queue_slot
from asyncq.testing import LocalRedisCluster
from examples.tutorial.client import TASKS, enqueue_tutorial_tasks

DEMO_PORTS = list(range(7000, 7006))


def show_placement(cluster: LocalRedisCluster) -> None:
    """Print, for each queue, its slot, its master and replica, and the keys on the master."""
    print("\nwhere the queues live:")
    for _, queue in TASKS:
        slot = queue_slot(queue)
        master, replicas = cluster.slot_owner(slot)
        with redis.Redis.from_url(f"redis://{master}/0") as node:
            keys = sorted(k.decode() for k in node.scan_iter(match=f"asynq:{{{queue}}}:*"))
        print(f"  {queue:<14} slot {slot:>5}  master {master}  replicas {', '.join(replicas)}")
        for key in keys:
            print(f"      {key}")


async def run(cluster: LocalRedisCluster) -> None:
    print(f"cluster up: {','.join(cluster.seeds)}\n")
    for info in await enqueue_tutorial_tasks(RedisClusterConnector(cluster.seeds)):
        print(f"enqueued {info.type:<20} into {info.queue:<14} id={info.id}")
    show_placement(cluster)


def main() -> None:
    print("starting a local Redis Cluster (3 masters + 3 replicas)...")
    with LocalRedisCluster(ports=DEMO_PORTS) as cluster:
        asyncio.run(run(cluster))
    print("\ncluster stopped.")


if __name__ == "__main__":
    main()
