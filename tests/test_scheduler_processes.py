"""Scheduler processes: several fire each tick once, and killing one loses no fire."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncq import Connector, RedisClusterConnector, Scheduler, Task
from asyncq._proto.asynq_pb2 import SchedulerEnqueueEvent
from asyncq.testing import eventually
from asyncq.testing.plugin import ClusterTarget, StandaloneTarget
from tests.worker_helpers import key

APP = textwrap.dedent(
    """
    import os
    import asyncq

    nodes = os.environ.get("TEST_CLUSTER_NODES")
    if nodes:
        connector = asyncq.RedisClusterConnector(nodes.split(","))
    else:
        connector = asyncq.RedisConnector(os.environ["TEST_REDIS_URL"])
    scheduler = asyncq.Scheduler(connector, heartbeat_interval=0.5)
    scheduler.register("@every 1s", asyncq.Task("tick"), queue=os.environ["TEST_QUEUE"])
    """
)


@pytest.fixture
def launch(
    tmp_path: Path, connector: Connector, request: pytest.FixtureRequest
) -> Iterator[object]:
    (tmp_path / "sched_app.py").write_text(APP)
    env_target: dict[str, str] = {}
    if isinstance(connector, RedisClusterConnector):
        cluster: ClusterTarget = request.getfixturevalue("redis_cluster")
        env_target["TEST_CLUSTER_NODES"] = ",".join(cluster.seeds)
    else:
        server: StandaloneTarget = request.getfixturevalue("redis_server")
        env_target["TEST_REDIS_URL"] = server.url
    procs: list[subprocess.Popen[str]] = []

    def start(queue: str) -> subprocess.Popen[str]:
        import os

        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncq", "scheduler", "sched_app:scheduler"],
            cwd=tmp_path,
            env={**os.environ, **env_target, "TEST_QUEUE": queue},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def test_three_processes_enqueue_each_fire_once_and_survive_a_kill(
    connector: Connector, queue_name: str, launch: object
) -> None:
    assert callable(launch)
    procs = [launch(queue_name) for _ in range(3)]
    await eventually(lambda: _pending(connector, queue_name, 3), within=20, what="3 fires")
    procs[0].send_signal(signal.SIGKILL)  # one scheduler dies; the others go on at once
    before = await connector.client.llen(key(queue_name, "pending"))
    await eventually(
        lambda: _pending(connector, queue_name, before + 3), within=20, what="fires after a kill"
    )
    for proc in procs[1:]:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    # One task and one history event per fire second, whichever process enqueued it.
    tasks = await connector.client.llen(key(queue_name, "pending"))
    # Every process derived the same entry id, so there is one history for the entry.
    entry = Scheduler(connector).register("@every 1s", Task("tick"), queue=queue_name)
    history = f"asynq:scheduler_history:{entry}"
    raw_events = await connector.client.zrange(history, 0, -1)
    fires = sorted(SchedulerEnqueueEvent.FromString(r).enqueue_time.seconds for r in raw_events)
    # Each stored task took its own fire lock in the same script: one lock per task means
    # no fire was enqueued twice. History is written after the enqueue, so the process
    # killed mid-fire may have stored a task without its event.
    locks = [k async for k in connector.client.scan_iter(match=key(queue_name, f"fired:{entry}:*"))]
    assert len(locks) == tasks, f"{len(locks)} fire locks for {tasks} tasks"
    assert len(fires) == len(set(fires)) and tasks - 1 <= len(fires) <= tasks, (fires, tasks)
    await connector.client.delete(history)


async def _pending(connector: Connector, queue: str, count: int) -> bool:
    return bool(await connector.client.llen(key(queue, "pending")) >= count)
