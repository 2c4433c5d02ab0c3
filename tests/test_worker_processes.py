"""Real worker processes: SIGKILL mid-task loses nothing, SIGTERM requeues, bad targets fail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asyncq import Client, Connector, RedisClusterConnector, ServeMux, Task
from asyncq.testing import eventually
from asyncq.testing.plugin import ClusterTarget, StandaloneTarget
from tests.worker_app import write_app
from tests.worker_helpers import counter, gone, key, running_server, task_message, task_state


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write_app(tmp_path)


def target_args(connector: Connector, request: pytest.FixtureRequest) -> list[str]:
    if isinstance(connector, RedisClusterConnector):
        cluster: ClusterTarget = request.getfixturevalue("redis_cluster")
        return ["--cluster-nodes", ",".join(cluster.seeds)]
    server: StandaloneTarget = request.getfixturevalue("redis_server")
    return ["--redis-url", server.url]


StartWorker = Callable[..., "subprocess.Popen[str]"]

# A second worker that takes back a dead worker's task within seconds and runs it again.
RECOVERS_QUICKLY: dict[str, object] = {
    "lease_duration": 2,
    "heartbeat_interval": 0.5,
    "recoverer_interval": 0.2,
    "retry_delay": lambda n, error, task: 0,
}


@pytest.fixture
def start_worker(app_dir: Path) -> Iterator[StartWorker]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "ASYNCQ_TEST_MARKS": str(app_dir / "marks")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncq", "worker", "app:mux", "--poll-interval", "0.02", *args],
            cwd=app_dir,
            env=env,
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


async def test_sigkill_mid_task_the_task_runs_again_elsewhere(
    connector: Connector,
    queue_name: str,
    app_dir: Path,
    start_worker: StartWorker,
    request: pytest.FixtureRequest,
) -> None:
    async with Client(connector) as client:
        info = await client.enqueue(Task("endless"), queue=queue_name, max_retry=5)
    proc = start_worker(
        *target_args(connector, request),
        "-q",
        f"{queue_name}=1",
        "--lease-duration",
        "2",
        "--heartbeat-interval",
        "0.5",
    )
    mark = app_dir / "marks" / f"started-{info.id}"
    await eventually(mark.exists, within=20, what="the first worker to start the task")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert await task_state(connector, queue_name, info.id) == "active"

    reran: list[int] = []
    mux = ServeMux()

    @mux.handler("endless")
    async def finish(task: Task) -> None:
        reran.append(task.retried)

    async with running_server(connector, mux, {queue_name: 1}, **RECOVERS_QUICKLY):
        await eventually(lambda: reran == [1], within=20, what="the second worker to rerun it")
        await eventually(lambda: gone(connector, queue_name, info.id))
    assert await counter(connector, key(queue_name, "failed")) == 1  # the lost lease


async def test_sigterm_finishes_quick_tasks_and_requeues_the_rest(
    connector: Connector,
    queue_name: str,
    app_dir: Path,
    start_worker: StartWorker,
    request: pytest.FixtureRequest,
) -> None:
    async with Client(connector) as client:
        quick = await client.enqueue(Task("quick"), queue=queue_name)
        endless = await client.enqueue(Task("endless"), queue=queue_name)
    proc = start_worker(
        *target_args(connector, request),
        "-q",
        f"{queue_name}=1",
        "--concurrency",
        "2",
        "--shutdown-timeout",
        "2",
    )
    marks = app_dir / "marks"
    await eventually(
        lambda: (
            (marks / f"started-{quick.id}").exists() and (marks / f"started-{endless.id}").exists()
        ),
        within=20,
    )
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert (marks / f"finished-{quick.id}").exists()
    assert not await connector.client.exists(key(queue_name, f"t:{quick.id}"))
    assert await task_state(connector, queue_name, endless.id) == "pending"
    assert await connector.client.lrange(key(queue_name, "pending"), 0, -1) == [endless.id.encode()]
    assert await connector.client.llen(key(queue_name, "active")) == 0
    servers = await connector.client.zrange("asynq:servers", 0, -1)
    assert not [s for s in servers if f":{proc.pid}:".encode() in s]
    msg = await task_message(connector, queue_name, endless.id)
    assert msg.retried == 0  # a requeue is not a failure


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("app", "must look like module:attribute"),
        ("missing_module:mux", "cannot import module 'missing_module'"),
        ("app:nothing", "module 'app' has no attribute 'nothing'"),
        ("app:APP_VALUE", "is of type int, not an asyncq.ServeMux"),
    ],
)
def test_wrong_target_exits_with_one_readable_line(
    app_dir: Path, target: str, message: str
) -> None:
    (app_dir / "app.py").write_text("APP_VALUE = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "asyncq", "worker", target],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


async def test_worker_runs_on_uvloop_when_asked(
    connector: Connector,
    queue_name: str,
    app_dir: Path,
    start_worker: StartWorker,
    request: pytest.FixtureRequest,
) -> None:
    pytest.importorskip("uvloop")  # in the dev extra, but not on every platform
    proc = start_worker(*target_args(connector, request), "-q", queue_name, "--loop", "uvloop")
    async with Client(connector) as client:
        info = await client.enqueue(Task("loop"), queue=queue_name)
    mark = app_dir / "marks" / f"loop-{info.id}"
    await eventually(mark.exists, within=20, what="the worker to run the task")
    assert mark.read_text().startswith("uvloop")
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert "Traceback" not in output and "Exception in callback" not in output


def test_loop_uvloop_without_uvloop_is_one_readable_line(app_dir: Path) -> None:
    (app_dir / "app.py").write_text("import asyncq\nmux = asyncq.ServeMux()\n")
    (app_dir / "uvloop.py").write_text("raise ImportError('no uvloop here')\n")
    result = subprocess.run(
        [sys.executable, "-m", "asyncq", "worker", "app:mux", "--loop", "uvloop"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "--loop uvloop needs uvloop installed (pip install uvloop): no uvloop here" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_unreachable_redis_exits_with_a_clear_error(app_dir: Path) -> None:
    from asyncq.testing.servers import free_port

    (app_dir / "app.py").write_text("import asyncq\nmux = asyncq.ServeMux()\n")
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncq",
            "worker",
            "app:mux",
            "--redis-url",
            f"redis://127.0.0.1:{port}/0",
        ],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"could not reach Redis at 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


DIES_BEFORE_ACK = textwrap.dedent(
    """
    import os, pathlib, signal
    import asyncq
    from asyncq._broker.rdb import Broker

    MARKS = pathlib.Path(os.environ["ASYNCQ_TEST_MARKS"])

    async def die_instead_of_acknowledging(self, *args, **kwargs):
        # Fault injection: the process dies after the handler returned, before the ack.
        os.kill(os.getpid(), signal.SIGKILL)

    Broker.done_many = die_instead_of_acknowledging
    mux = asyncq.ServeMux()

    @mux.handler("once")
    async def once(task):
        (MARKS / f"ran-{task.id}").write_text("1")
    """
)


async def test_kill_between_handler_return_and_ack_runs_the_task_again(
    connector: Connector,
    queue_name: str,
    app_dir: Path,
    start_worker: StartWorker,
    request: pytest.FixtureRequest,
) -> None:
    """At-least-once: a finished task whose acknowledgement was lost is run again."""
    (app_dir / "app.py").write_text(DIES_BEFORE_ACK)
    async with Client(connector) as client:
        info = await client.enqueue(Task("once"), queue=queue_name)
    proc = start_worker(
        *target_args(connector, request), "-q", f"{queue_name}=1", "--lease-duration", "2",
        "--heartbeat-interval", "0.5",
    )  # fmt: skip
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, output
    assert (app_dir / "marks" / f"ran-{info.id}").exists()
    assert await task_state(connector, queue_name, info.id) == "active"  # never acknowledged

    again: list[str] = []
    mux = ServeMux()

    @mux.handler("once")
    async def once(task: Task) -> None:
        again.append(task.id)

    async with running_server(connector, mux, {queue_name: 1}, **RECOVERS_QUICKLY):
        await eventually(lambda: again == [info.id], within=20)
        await eventually(lambda: gone(connector, queue_name, info.id))


async def test_cancel_from_another_process_reaches_the_worker(
    connector: Connector,
    queue_name: str,
    app_dir: Path,
    start_worker: StartWorker,
    request: pytest.FixtureRequest,
) -> None:
    """`asyncq task cancel` in one process stops the handler running in another (any node)."""
    async with Client(connector) as client:
        info = await client.enqueue(Task("endless"), queue=queue_name)
    target = target_args(connector, request)
    start_worker(*target, "-q", f"{queue_name}=1")
    await eventually((app_dir / "marks" / f"started-{info.id}").exists, within=20)
    await eventually(lambda: _cancel_subscribers(connector, target), what="the subscription")
    cancel = subprocess.run(
        [sys.executable, "-m", "asyncq", "task", "cancel", info.id, *target],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cancel.returncode == 0, cancel.stderr
    await eventually(lambda: _state_is_retry(connector, queue_name, info.id), within=20)
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg.startswith("TaskCanceledError")


async def _cancel_subscribers(connector: Connector, target: list[str]) -> bool:
    """Whether some node has a subscriber on asynq:cancel (classic pub/sub is per node)."""
    addresses = target[1].split(",") if target[0] == "--cluster-nodes" else [connector.address]
    for address in addresses:
        client = connector.node_client(address)
        try:
            ((_, count),) = await client.pubsub_numsub("asynq:cancel")
        finally:
            await client.aclose()
        if count:
            return True
    return False


async def _state_is_retry(connector: Connector, queue: str, task_id: str) -> bool:
    return await task_state(connector, queue, task_id) == "retry"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncq", *args], capture_output=True, text=True, timeout=60
    )


async def test_cli_pause_and_resume_a_queue_under_a_running_worker(
    connector: Connector,
    queue_name: str,
    app_dir: Path,
    start_worker: StartWorker,
    request: pytest.FixtureRequest,
) -> None:
    """Through the CLI, on both topologies: pause holds a queue's tasks, resume lets them run."""
    held, other = f"{queue_name}-held", f"{queue_name}-other"
    target = target_args(connector, request)
    async with Client(connector) as client:
        await client.enqueue(Task("quick"), queue=held)  # the queue must exist to be paused
        await client.enqueue(Task("quick"), queue=other)
    start_worker(*target, "-q", f"{held}=1", "-q", f"{other}=1")
    marks = app_dir / "marks"
    await eventually(lambda: len(list(marks.glob("finished-*"))) == 2, within=20)

    assert _cli("queue", "pause", held, *target).returncode == 0
    async with Client(connector) as client:
        waiting = await client.enqueue(Task("quick"), queue=held)
        done = await client.enqueue(Task("quick"), queue=other)
    await eventually((marks / f"finished-{done.id}").exists, within=20)
    assert not (marks / f"started-{waiting.id}").exists()
    listing = _cli("task", "ls", "--queue", held, "--state", "pending", *target)
    assert waiting.id in listing.stdout, listing.stderr

    assert _cli("queue", "resume", held, *target).returncode == 0
    await eventually((marks / f"finished-{waiting.id}").exists, within=20)
