"""The README's main job: asynq's Redis Cluster tutorial on a local 6-node cluster.

Starts a cluster (ports 7000-7005, or free ports if those are taken), enqueues the
tutorial's three tasks, shows on which master each queue landed (and what
``asyncq queue ls --cluster`` says of it), runs
``asyncq worker`` (concurrency 20, equal priorities) until the three tasks are
done, prints the handlers' output, and stops everything it started.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncq import RedisClusterConnector  # noqa: E402
from asyncq._cluster.slots import queue_slot  # noqa: E402
from asyncq.testing import LocalRedisCluster  # noqa: E402
from examples.tutorial.client import TASKS, enqueue_tutorial_tasks  # noqa: E402

DEMO_PORTS = list(range(7000, 7006))
QUEUES = [queue for _, queue in TASKS]


def show_placement(cluster: LocalRedisCluster) -> None:
    """Print, for each queue, its slot, its master and replica, and the keys on the master."""
    print("\nwhere the queues live:")
    for queue in QUEUES:
        slot = queue_slot(queue)
        master, replicas = cluster.slot_owner(slot)
        with redis.Redis.from_url(f"redis://{master}/0") as node:
            keys = sorted(k.decode() for k in node.scan_iter(match=f"asynq:{{{queue}}}:*"))
        print(f"  {queue:<14} slot {slot:>5}  master {master}  replicas {', '.join(replicas)}")
        for key in keys:
            print(f"      {key}")


def show_queue_ls(cluster: LocalRedisCluster) -> None:
    """Run ``asyncq queue ls --cluster``: each queue's slot and the nodes that hold it."""
    print("\n$ asyncq queue ls --cluster")
    listing = subprocess.run(
        [sys.executable, "-m", "asyncq", "queue", "ls", "--cluster",
         "--cluster-nodes", ",".join(cluster.seeds)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    print(listing.stdout + listing.stderr, end="")


def processed(cluster: LocalRedisCluster) -> int:
    """How many of the tutorial's queues have processed their task."""
    with redis.RedisCluster.from_url(f"redis://{cluster.seeds[0]}") as client:
        return sum(1 for q in QUEUES if client.get(f"asynq:{{{q}}}:processed"))


def run_worker(cluster: LocalRedisCluster) -> None:
    """Run the tutorial's worker through the CLI until every task is done, then SIGTERM it."""
    command = [
        sys.executable, "-m", "asyncq", "worker", "examples.tutorial.worker:mux",
        "--cluster-nodes", ",".join(cluster.seeds), "--concurrency", "20",
        "-q", "notifications=1", "-q", "webhooks=1", "-q", "images=1",
    ]  # fmt: skip
    print("\n$ asyncq worker examples.tutorial.worker:mux --cluster-nodes ... --concurrency 20 "
          "-q notifications=1 -q webhooks=1 -q images=1")  # fmt: skip
    worker = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 60
    while processed(cluster) < len(QUEUES):
        if time.monotonic() > deadline or worker.poll() is not None:
            worker.kill()
            print(worker.communicate()[0])
            raise SystemExit("the worker did not finish the tutorial's tasks")
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    print("".join(f"  | {line}\n" for line in output.splitlines()), end="")
    print(f"worker exited with status {worker.returncode} after processing all three tasks")


async def enqueue(cluster: LocalRedisCluster) -> None:
    print(f"cluster up: {','.join(cluster.seeds)}\n")
    for info in await enqueue_tutorial_tasks(RedisClusterConnector(cluster.seeds)):
        print(f"enqueued {info.type:<20} into {info.queue:<14} id={info.id}")


def main() -> None:
    print("starting a local Redis Cluster (3 masters + 3 replicas)...")
    with LocalRedisCluster(ports=DEMO_PORTS) as cluster:
        asyncio.run(enqueue(cluster))
        show_placement(cluster)
        show_queue_ls(cluster)
        run_worker(cluster)
    print("\ncluster stopped.")


if __name__ == "__main__":
    main()
