"""Less common worker paths: is_failure, health checks, stop(), handler context, Redis outages."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asyncq import Client, Connector, RedisConnector, ServeMux, Task
from asyncq._proto.asynq_pb2 import ServerInfo
from asyncq.testing import RedisServerProcess, eventually
from asyncq.testing.plugin import StandaloneTarget
from tests.worker_helpers import (
    counter,
    gone,
    key,
    raising_mux,
    running_server,
    state_is,
    task_message,
    task_state,
)


async def test_not_a_failure_retries_without_counting(
    connector: Connector, queue_name: str
) -> None:
    mux = raising_mux("busy", BlockingIOError, "resource busy, try later")

    async with Client(connector) as client:
        info = await client.enqueue(Task("busy"), queue=queue_name, max_retry=0)
    async with running_server(
        connector,
        mux,
        {queue_name: 1},
        is_failure=lambda error: not isinstance(error, BlockingIOError),
    ):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))
    msg = await task_message(connector, queue_name, info.id)
    # max_retry=0 would archive a failure; a non-failure is retried and not counted.
    assert msg.retried == 0 and "resource busy" in msg.error_msg
    assert await counter(connector, key(queue_name, "failed")) == 0
    assert await counter(connector, key(queue_name, "processed")) == 0


async def test_handler_sees_its_task_context(connector: Connector, queue_name: str) -> None:
    seen: dict[str, object] = {}
    mux = ServeMux()

    @mux.handler("ctx")
    async def ctx(task: Task) -> None:
        seen.update(
            id=task.id,
            queue=task.queue,
            retried=task.retried,
            max_retry=task.max_retry,
            headers=dict(task.headers),
            deadline=task.deadline,
        )

    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    async with Client(connector) as client:
        info = await client.enqueue(
            Task("ctx", headers={"trace": "t-1"}),
            queue=queue_name,
            max_retry=7,
            deadline=deadline,
        )
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: bool(seen))
    assert seen == {
        "id": info.id,
        "queue": queue_name,
        "retried": 0,
        "max_retry": 7,
        "headers": {"trace": "t-1"},
        "deadline": deadline,
    }


async def test_health_check_reports_a_live_redis(connector: Connector, queue_name: str) -> None:
    reports: list[BaseException | None] = []
    async with running_server(
        connector,
        ServeMux(),
        {queue_name: 1},
        health_check=reports.append,
        health_check_interval=0.05,
    ):
        await eventually(lambda: len(reports) >= 2)
    assert set(reports) == {None}


async def test_stop_takes_no_new_tasks_but_keeps_the_server_listed(
    connector: Connector, queue_name: str
) -> None:
    ran: list[str] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        ran.append(task.id)

    async with running_server(connector, mux, {queue_name: 1}) as server:
        server.stop()
        await eventually(lambda: not server.fetching, what="the dequeue loop to end")
        async with Client(connector) as client:
            info = await client.enqueue(Task("t"), queue=queue_name)
        server_key = server.identity.server_key
        await eventually(lambda: _status_is(connector, server_key, "stopped"))
        assert ran == []
        assert await task_state(connector, queue_name, info.id) == "pending"


@pytest.fixture
def durable_server() -> Iterator[RedisServerProcess]:
    # Append-only with fsync, so a restart keeps the queue's state.
    with RedisServerProcess(
        extra_args=["--appendonly", "yes", "--appendfsync", "always"]
    ) as server:
        yield server


async def test_final_write_waits_out_a_redis_outage(
    durable_server: RedisServerProcess, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        started.set()
        await release.wait()

    async with RedisConnector(durable_server.url, retry_deadline=0.5) as connector:
        async with Client(connector) as client:
            info = await client.enqueue(Task("t"), queue=queue_name)
        async with running_server(connector, mux, {queue_name: 1}, heartbeat_interval=0.2):
            await eventually(started.is_set)
            durable_server.stop()
            release.set()  # the handler succeeds while Redis is down
            await eventually(
                lambda: "could not mark task" in caplog.text, what="a failed final write"
            )
            durable_server.restart()
            await eventually(
                lambda: gone(connector, queue_name, info.id), within=15, what="the done write"
            )
        assert await counter(connector, key(queue_name, "processed")) == 1


async def test_an_outage_is_logged_a_line_per_step_not_a_traceback(
    durable_server: RedisServerProcess, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every component logged a full traceback at every step while Redis was down."""
    connector = RedisConnector(durable_server.url, retry_deadline=0.3)
    async with connector, running_server(connector, ServeMux(), {queue_name: 1}):
        durable_server.stop()
        try:
            await eventually(lambda: "step failed" in caplog.text, what="a failed step")
        finally:
            durable_server.restart()
    failed = [r for r in caplog.records if "step failed" in r.getMessage()]
    assert failed and all(r.levelname == "WARNING" and r.exc_info is None for r in failed)
    assert all("could not reach Redis" in r.getMessage() for r in failed)


def test_sigtstp_stops_fetching_in_a_worker_process(
    tmp_path: Path, redis_server: StandaloneTarget
) -> None:
    (tmp_path / "app.py").write_text("import asyncq\nmux = asyncq.ServeMux()\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncq", "worker", "app:mux", "--redis-url", redis_server.url,
         "-q", "tstp-test=1", "--heartbeat-interval", "0.1", "--lease-duration", "1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        asyncio.run(_expect_status(redis_server.url, proc.pid, "active"))
        proc.send_signal(signal.SIGTSTP)
        asyncio.run(_expect_status(redis_server.url, proc.pid, "stopped"))
        assert proc.poll() is None, "SIGTSTP must not end the worker"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _expect_status(url: str, pid: int, status: str) -> None:
    async with RedisConnector(url) as connector:

        async def has_status() -> bool:
            for member in await connector.client.zrange("asynq:servers", 0, -1):
                if f":{pid}:".encode() in member:
                    return await _status_is(connector, member.decode(), status)
            return False

        await eventually(has_status, within=20, what=f"server status {status!r}")


async def _status_is(connector: Connector, server_key: str, status: str) -> bool:
    raw = await connector.client.get(server_key)
    return raw is not None and ServerInfo.FromString(raw).status == status


async def test_cancelled_error_raised_inside_a_handler_is_a_failure(
    connector: Connector, queue_name: str
) -> None:
    mux = ServeMux()

    @mux.handler("t")
    async def awaits_a_cancelled_task(task: Task) -> None:
        inner = asyncio.ensure_future(asyncio.sleep(3600))
        inner.cancel()
        await inner  # raises CancelledError, though nobody cancelled the handler

    async with Client(connector) as client:
        info = await client.enqueue(Task("t"), queue=queue_name)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))
    assert (await task_message(connector, queue_name, info.id)).error_msg == "CancelledError"


async def test_results_cannot_be_written_after_the_handler_returns(
    connector: Connector, queue_name: str
) -> None:
    kept: list[Task] = []
    mux = ServeMux()

    @mux.handler("t")
    async def keep(task: Task) -> None:
        kept.append(task)

    async with Client(connector) as client:
        await client.enqueue(Task("t"), queue=queue_name)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: bool(kept))
    with pytest.raises(RuntimeError, match="only on a task given to a running handler"):
        await kept[0].write_result(b"late")


async def test_server_refuses_a_sync_handler(connector: Connector) -> None:
    from asyncq import Server

    def sync_handler(task: Task) -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        await Server(connector).start(sync_handler)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["lease_duration", "heartbeat_interval", "shutdown_timeout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_server_refuses_durations_that_are_not_finite(
    connector: Connector, option: str, value: float
) -> None:
    from asyncq import InvalidOptionError, Server

    # A NaN lease crashed the server at start; a NaN heartbeat failed every beat unseen.
    options: dict[str, Any] = {option: value}  # the keyword is a parameter of the test
    with pytest.raises(InvalidOptionError, match=f"{option} must be a finite number"):
        Server(connector, **options)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-q", "a=1", "-q", "a=2"], "queue 'a' is given twice"),
        (["-q", "a=0"], "priority >= 1"),
        (["--redis-url", "redis://x:1/0", "--tls"], "use a rediss:// URL"),
        (["--redis-url", "redis://x:1/0", "--cluster-nodes", "x:1"], "not both"),
        (["--loop", "trio"], "Invalid value for '--loop'"),
    ],
)
def test_worker_cli_refuses_bad_flags(args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from asyncq.cli.main import cli

    result = CliRunner().invoke(cli, ["worker", "tests.worker_cli_app:mux", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_worker_cli_refuses_a_duration_that_is_not_finite_in_one_line() -> None:
    from click.testing import CliRunner

    from asyncq.cli.main import cli

    args = ["worker", "tests.worker_cli_app:mux", "--lease-duration", "nan"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.output == (
        "Error: --lease-duration must be a finite number of seconds, at least 1, got nan\n"
    )


def test_a_task_deadline_is_none_until_set_and_keeps_what_is_set() -> None:
    task = Task("t")
    assert task.deadline is None
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    task.deadline = when
    assert task.deadline == when and task.deadline.tzinfo is not None
    task.deadline = None
    assert task.deadline is None


async def test_handler_of_a_task_without_headers_sees_an_empty_mapping(
    connector: Connector, queue_name: str
) -> None:
    seen: dict[str, object] = {}
    mux = ServeMux()

    @mux.handler("plain")
    async def plain(task: Task) -> None:
        seen.update(headers=task.headers, payload=task.json(), type=task.type)

    async with Client(connector) as client:
        await client.enqueue(Task("plain", {"n": 1}), queue=queue_name)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: bool(seen))
    assert seen == {"headers": {}, "payload": {"n": 1}, "type": "plain"}
