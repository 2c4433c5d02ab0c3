"""The tutorial's client: one task into each of `notifications`, `webhooks` and `images`.

Run it against any cluster: ``python -m examples.tutorial.client 127.0.0.1:7000,127.0.0.1:7001``
(or set ``ASYNCQ_CLUSTER_NODES``).
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncq

TASKS = [
    (asyncq.Task("notifications:email", {"to": 123, "from": 456}), "notifications"),
    (asyncq.Task("webhooks:sync", {"data": 123456}), "webhooks"),
    (asyncq.Task("images:resize", {"src": "some/path/to/image"}), "images"),
]


async def enqueue_tutorial_tasks(connector: asyncq.Connector) -> list[asyncq.TaskInfo]:
    """Enqueue the three tutorial tasks and return what was stored."""
    async with asyncq.Client(connector) as client:
        return [await client.enqueue(task, queue=queue) for task, queue in TASKS]


async def main(nodes: str) -> None:
    connector = asyncq.RedisClusterConnector(nodes.split(","))
    for info in await enqueue_tutorial_tasks(connector):
        print(f"enqueued {info.type:<20} id={info.id} queue={info.queue} state={info.state}")


if __name__ == "__main__":
    seeds = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ASYNCQ_CLUSTER_NODES", "")
    if not seeds:
        sys.exit("usage: python -m examples.tutorial.client HOST:PORT[,HOST:PORT...]")
    asyncio.run(main(seeds))
