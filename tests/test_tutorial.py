"""asynq's Redis Cluster tutorial, end to end through the CLI on the 6-node cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from asyncq import Connector
from asyncq._cluster.slots import queue_slot
from asyncq.testing import eventually
from asyncq.testing.plugin import ClusterTarget
from tests.worker_helpers import counter, key

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ["notifications", "webhooks", "images"]


async def _clear(connector: Connector) -> None:
    for queue in QUEUES:
        async for name in connector.client.scan_iter(match=key(queue, "*")):
            await connector.client.delete(name)


async def _all_processed(connector: Connector) -> bool:
    return all([await counter(connector, key(q, "processed")) >= 1 for q in QUEUES])


async def test_tutorial_runs_end_to_end(
    cluster_connector: Connector, redis_cluster: ClusterTarget
) -> None:
    await _clear(cluster_connector)
    seeds = ",".join(redis_cluster.seeds)
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "asyncq", "worker", "examples.tutorial.worker:mux",
            "--cluster-nodes", seeds, "--concurrency", "20",
            "-q", "notifications=1", "-q", "webhooks=1", "-q", "images=1",
            "--poll-interval", "0.05",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        client = subprocess.run(
            [sys.executable, "-m", "examples.tutorial.client", seeds],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.count("enqueued") == 3
        await eventually(lambda: _all_processed(cluster_connector), within=30)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        await _clear(cluster_connector)
    assert worker.returncode == 0, output
    assert "notifications:email: sending email to user 123 from 456" in output
    assert "webhooks:sync: syncing data 123456" in output
    assert "images:resize: resizing image some/path/to/image" in output
    for queue in QUEUES:
        owner = cluster_connector.node_of(f"asynq:{{{queue}}}:pending")
        assert f"serving queue {queue} on {owner}" in output
        assert queue_slot(queue) in (16340, 4418, 9450)
