"""A worker's life as a user runs it: signals, shutdown, option checks, what handlers
return and what the log says (real processes and real signals where the CLI is tested)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import asyncq
from asyncq import Client, Connector, ServeMux, Task
from asyncq.errors import InvalidOptionError
from asyncq.testing import eventually
from asyncq.testing.plugin import StandaloneTarget
from tests.worker_app import write_app
from tests.worker_helpers import gone, running_server, task_state


def _default_sigint() -> None:
    # As in a terminal: SIGINT has its default disposition (a shell's `&` would ignore it).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write_app(tmp_path)


Start = Callable[..., "tuple[subprocess.Popen[bytes], Path]"]


@pytest.fixture
def start_worker(app_dir: Path, redis_server: StandaloneTarget) -> Iterator[Start]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = app_dir / f"worker-{len(procs)}.log"
        env = {**os.environ, "ASYNCQ_TEST_MARKS": str(app_dir / "marks")}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "asyncq", "worker", "app:mux", "--redis-url",
                 redis_server.url, "--poll-interval", "0.02", *args],
                cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_default_sigint,
            )  # fmt: skip
        procs.append(proc)
        return proc, log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _wait_exit(proc: subprocess.Popen[bytes], within: float) -> int | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.05)
    return None


async def test_second_sigint_forces_exit_during_a_long_shutdown(
    standalone_connector: Connector, queue_name: str, app_dir: Path, start_worker: Start
) -> None:
    """Ctrl-C, then Ctrl-C again: the worker stops waiting for running handlers
    (Celery's cold shutdown) instead of the whole --shutdown-timeout, and puts their
    tasks back."""
    connector = standalone_connector
    async with Client(connector) as client:
        info = await client.enqueue(Task("endless"), queue=queue_name)
    proc, log = start_worker("-q", queue_name, "--shutdown-timeout", "60")
    await eventually((app_dir / "marks" / f"started-{info.id}").exists, within=20)
    proc.send_signal(signal.SIGINT)
    await eventually(lambda: b"shutting down" in log.read_bytes(), within=10)
    proc.send_signal(signal.SIGINT)
    code = _wait_exit(proc, within=10)
    assert code is not None, (
        "a second SIGINT did not end the worker within 10 s (it waits --shutdown-timeout 60):\n"
        + log.read_text()
    )
    # Forced or not, the task must not be lost: back in pending for another worker.
    assert await task_state(connector, queue_name, info.id) == "pending"


async def test_a_failing_handler_leaves_a_trace_in_the_worker_log(
    standalone_connector: Connector, queue_name: str, app_dir: Path, start_worker: Start
) -> None:
    """`asyncq worker` offers no error_handler: the log is the only place a user can see
    that (and why) a handler raised, as with Celery, Sidekiq and asynq. It said nothing,
    even at debug level."""
    connector = standalone_connector
    async with Client(connector) as client:
        info = await client.enqueue(Task("boom"), queue=queue_name, max_retry=0)
    proc, log = start_worker("-q", queue_name)

    async def stored() -> bool:
        return await task_state(connector, queue_name, info.id) is not None

    await eventually(stored, within=20)

    async def archived() -> bool:
        return await task_state(connector, queue_name, info.id) == "archived"

    await eventually(archived, within=20, what="the task to be archived")
    proc.send_signal(signal.SIGTERM)
    assert _wait_exit(proc, within=20) == 0
    output = log.read_text()
    assert f"kaboom-{info.id}" in output, f"nothing logged about task {info.id}:\n{output}"
    assert "archived" in output


@pytest.mark.parametrize("option", [["-q", "big=3000000000"], ["-c", "3000000000"]])
def test_an_out_of_range_priority_or_concurrency_is_refused_up_front(
    app_dir: Path, start_worker: Start, option: list[str]
) -> None:
    """asynq's ServerInfo holds priorities and concurrency as int32: a larger value
    was accepted, then every heartbeat failed with a traceback and the server never
    showed in `asynq server ls`."""
    proc, log = start_worker(*option)
    code = _wait_exit(proc, within=8)
    output = log.read_text()
    assert "Traceback" not in output, output
    assert code not in (None, 0), f"the worker accepted {option}:\n{output}"


def test_a_relative_module_target_is_one_readable_line(app_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncq", "worker", ".app:mux"],
        cwd=app_dir, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


# -- Server options and handler outcomes (in process) -----------------------------------

_NO_CONNECT = "redis://127.0.0.1:1/0"  # building a Server does not connect


@pytest.mark.parametrize(
    "queues",
    [["critical", "default"], "default", ["hi", "lo"]],
    ids=["list-of-names", "one-name", "two-letter-names"],
)
def test_queues_given_as_names_is_an_invalid_option_naming_queues(queues: object) -> None:
    """Celery (-Q a,b) and Sidekiq (queues: [a, b]) users pass a list of names: an
    InvalidOptionError that says what queues must be (it was a bare ValueError from
    dict(), or for ["hi", "lo"] an error about a queue 'h' with priority 'i')."""
    with pytest.raises(InvalidOptionError) as caught:
        asyncq.Server(asyncq.RedisConnector(_NO_CONNECT), queues=queues)  # type: ignore[arg-type]
    assert "'h'" not in str(caught.value)


@pytest.mark.parametrize(
    "option",
    [
        {"error_handler": 5},
        {"health_check": "yes"},
        {"group_aggregator": 5},
        {"strict_priority": "no"},
    ],
)
def test_wrong_option_types_are_refused_when_the_server_is_built(option: dict[str, object]) -> None:
    """Refused when the server is built, as retry_delay=5 is: they used to fail with a
    traceback at every failure or health check, and strict_priority='no' silently
    turned strict priority on."""
    with pytest.raises(InvalidOptionError):
        asyncq.Server(asyncq.RedisConnector(_NO_CONNECT), **option)  # type: ignore[arg-type]


async def test_a_handler_that_returns_an_error_does_not_succeed_silently(
    standalone_connector: Connector, queue_name: str
) -> None:
    """asynq handlers *return* their error (`return asynq.SkipRetry`); a port that returns
    the exception instead of raising it must not have its task deleted as a success."""
    connector = standalone_connector
    mux = ServeMux()
    ran: list[str] = []

    @mux.handler("ported")  # type: ignore[arg-type]  # returns a value on purpose
    async def ported(task: Task) -> object:
        ran.append(task.id)
        return asyncq.SkipRetry("bad input")

    async with Client(connector) as client:
        info = await client.enqueue(Task("ported"), queue=queue_name, max_retry=0)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: ran == [info.id], within=10)

        async def settled() -> bool:
            state = await task_state(connector, queue_name, info.id)
            return state != "active" and state != "pending"

        await eventually(settled, within=10)
        assert not await gone(connector, queue_name, info.id), (
            "the handler returned SkipRetry(...) and the task was deleted as a success"
        )


def _slow_mux(started: asyncio.Event, seconds: float) -> ServeMux:
    mux = ServeMux()

    @mux.handler("slow")
    async def slow(task: Task) -> None:
        started.set()
        await asyncio.sleep(seconds)

    return mux


async def test_a_second_shutdown_call_waits_for_the_first_to_finish(
    standalone_connector: Connector, queue_name: str
) -> None:
    """Two parts of an app (a lifespan hook and a signal handler, say) both await
    shutdown(): the second waits for the same shutdown (it returned at once, and a
    program that then ended its loop abandoned the running handlers)."""
    connector = standalone_connector
    started = asyncio.Event()
    async with Client(connector) as client:
        info = await client.enqueue(Task("slow"), queue=queue_name)
    server = asyncq.Server(connector, queues={queue_name: 1}, task_check_interval=0.02)
    await server.start(_slow_mux(started, 1.0))
    await asyncio.wait_for(started.wait(), 10)
    first = asyncio.create_task(server.shutdown())
    await asyncio.sleep(0)  # the first call is under way
    await server.shutdown()
    try:
        assert server.running_tasks == 0, "shutdown() returned while a handler still runs"
        assert await task_state(connector, queue_name, info.id) != "active"
    finally:
        await first


async def test_run_returns_normally_when_the_program_calls_shutdown(
    standalone_connector: Connector, queue_name: str
) -> None:
    """server.run() in one task, server.shutdown() from another (a watchdog, an admin
    endpoint): run() returns (it said "the server stopped unexpectedly" and raised)."""
    server = asyncq.Server(standalone_connector, queues={queue_name: 1}, task_check_interval=0.02)
    runner = asyncio.create_task(server.run(ServeMux()))
    await eventually(lambda: server.fetching, within=10)
    await server.shutdown()
    await asyncio.wait_for(runner, 10)


def test_run_off_the_main_thread_fails_cleanly_instead_of_hanging(
    redis_server: StandaloneTarget, queue_name: str
) -> None:
    """server.run() in a thread (or on a loop without signal support) cannot install its
    signal handlers: it says so before starting anything (it started the server first
    and raised outside its try/finally, leaving it running, and asyncio.run() hung)."""
    outcome: list[object] = []

    async def main() -> None:
        server = asyncq.Server(asyncq.RedisConnector(redis_server.url), queues={queue_name: 1})
        try:
            await server.run(ServeMux())
        except Exception as error:  # RuntimeError/ValueError about signals is fine
            outcome.append(("raised", server.fetching))
            raise error

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except Exception:
            outcome.append("asyncio.run ended")

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), f"asyncio.run() still hangs after 15 s: {outcome}"
    assert outcome[0] == ("raised", False), "run() raised but left the server fetching"


async def test_a_started_server_stops_when_its_task_is_cancelled(
    standalone_connector: Connector, queue_name: str
) -> None:
    """What asyncio.run() does when the program fails right after server.start(): cancel
    every task. redis-py can swallow that cancellation (a call returns while its task is
    being cancelled); the heartbeater's loop went on for ever then, and the server's
    task group, hence the program, never ended."""
    for attempt in range(5):
        server = asyncq.Server(standalone_connector, queues={queue_name: 1})
        await server.start(ServeMux())
        runner = server._runner
        assert runner is not None
        runner.cancel()
        done, _ = await asyncio.wait({runner}, timeout=5)
        assert done, f"attempt {attempt}: the server's task still runs 5 s after cancel()"
        await standalone_connector.aclose()


def test_ctrl_c_while_the_worker_connects_stops_it_at_once(app_dir: Path) -> None:
    """A worker still trying to reach Redis (here a port that accepts and never answers;
    a cluster connector tries for 20 s) stops at Ctrl-C, as a program does, rather than
    when its first contact gives up."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(20)
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncq", "worker", "app:mux",
             "--cluster-nodes", f"127.0.0.1:{port}"],
            cwd=app_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "ASYNCQ_TEST_MARKS": str(app_dir / "marks")},
            preexec_fn=_default_sigint,
        )  # fmt: skip
        try:
            connection, _ = silent.accept()  # the worker is connecting now
            connection.close()
            proc.send_signal(signal.SIGINT)
            assert _wait_exit(proc, within=10) not in (None, 0)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--poll-interval", "-1"), ("--forward-interval", "nan"), ("--lease-duration", "0.5")],
)
def test_a_bad_flag_value_is_named_by_its_flag(app_dir: Path, flag: str, value: str) -> None:
    """The error names the flag the user gave (it named the Server option behind it,
    `task_check_interval` for --poll-interval, say)."""
    result = subprocess.run(
        [sys.executable, "-m", "asyncq", "worker", "app:mux", f"{flag}={value}"],
        cwd=app_dir, capture_output=True, text=True, timeout=30,
        env={**os.environ, "ASYNCQ_TEST_MARKS": str(app_dir / "marks")},
    )  # fmt: skip
    assert result.returncode != 0
    assert flag in result.stderr and "_interval" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


async def test_a_starting_server_names_the_task_types_it_handles_and_warns_of_none(
    standalone_connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker started with an empty mux (a module whose handlers were never imported)
    said nothing: every task then failed and was retried for weeks."""
    caplog.set_level(logging.INFO, logger="asyncq")
    mux = ServeMux()

    @mux.handler("email:send")
    async def send(task: Task) -> None:
        pass

    mux.handle("image:", send)
    async with running_server(standalone_connector, mux, {queue_name: 1}):
        pass
    assert "handling task types email:send, image:" in caplog.text
    assert "has no handler" not in caplog.text
    async with running_server(standalone_connector, ServeMux(), {queue_name: 1}):
        pass
    warned = [r for r in caplog.records if "the ServeMux has no handler" in r.getMessage()]
    assert [r.levelname for r in warned] == ["WARNING"]
