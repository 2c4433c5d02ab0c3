"""What a worker leaves in Redis after each kind of outcome, on both topologies."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from asyncq import (
    Client,
    Connector,
    RevokeTask,
    ServeMux,
    SkipRetry,
    Task,
    TaskIdConflictError,
)
from asyncq._broker.rdb import utc_date
from asyncq._options import MAX_DURATION
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq.testing import ManualClock, eventually
from tests.worker_helpers import (
    counter,
    gone,
    key,
    raising_mux,
    running_server,
    state_is,
    task_message,
)

# The tutorial's notifications:email task exactly as Go's asynq v0.24.1 wrote it.
GO_MSG = bytes.fromhex(
    "0a136e6f74696669636174696f6e733a656d61696c12157b22746f223a3132332c2266726f6d22"
    "3a3435367d1a2430636162323662652d303231322d343733332d383031362d6462386165313630"
    "39353237220d6e6f74696669636174696f6e73281940880e"
)
GO_ID = "0cab26be-0212-4733-8016-db8ae1609527"


async def _clear(connector: Connector, queue: str) -> None:
    async for name in connector.client.scan_iter(match=key(queue, "*")):
        await connector.client.delete(name)


async def test_task_written_by_go_is_run_and_leaves_asynqs_state(connector: Connector) -> None:
    queue = "notifications"
    await _clear(connector, queue)
    await connector.client.hset(
        key(queue, f"t:{GO_ID}"),
        mapping={"msg": GO_MSG, "state": "pending", "pending_since": str(time.time_ns())},
    )
    await connector.client.lpush(key(queue, "pending"), GO_ID)
    seen: list[tuple[str, object, str]] = []
    mux = ServeMux()

    @mux.handler("notifications:email")
    async def send_email(task: Task) -> None:
        seen.append((task.id, task.json(), task.queue))

    async def processed() -> bool:
        return await counter(connector, key(queue, "processed")) > 0

    try:
        async with running_server(connector, mux, {queue: 1}):
            await eventually(processed, what="processed")
        assert seen == [(GO_ID, {"to": 123, "from": 456}, queue)]
        names = sorted(
            [k.decode() async for k in connector.client.scan_iter(match=key(queue, "*"))]
        )
        today = key(queue, f"processed:{utc_date(time.time())}")
        assert names == sorted([key(queue, "processed"), today])
        assert await counter(connector, key(queue, "processed")) == 1
        assert await counter(connector, today) == 1
        ttl = await connector.client.ttl(today)
        assert 90 * 86400 - 120 <= ttl <= 90 * 86400
    finally:
        await _clear(connector, queue)


async def test_retry_then_success_with_backoff_on_a_moved_clock(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock()
    calls: list[int] = []
    mux = ServeMux()

    @mux.handler("flaky")
    async def flaky(task: Task) -> None:
        calls.append(task.retried)
        if task.retried == 0:
            raise RuntimeError("boom")

    async with Client(connector) as client:
        info = await client.enqueue(Task("flaky"), queue=queue_name, max_retry=3)
    async with running_server(connector, mux, {queue_name: 1}, clock=clock):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))
        msg = await task_message(connector, queue_name, info.id)
        assert (msg.retried, msg.error_msg, msg.last_failed_at) == (
            1,
            "RuntimeError: boom",
            int(clock.time()),
        )
        score = await connector.client.zscore(key(queue_name, "retry"), info.id)
        assert clock.time() + 15 - 1 <= score <= clock.time() + 15 + 29  # n**4 + 15 + rand*(n+1)
        assert await counter(connector, key(queue_name, "failed")) == 1
        assert await counter(connector, key(queue_name, "processed")) == 1
        clock.advance(60)  # the retry is due: the forwarder moves it, the worker runs it
        await eventually(lambda: gone(connector, queue_name, info.id))
    assert calls == [0, 1]
    assert await counter(connector, key(queue_name, "processed")) == 2
    assert await counter(connector, key(queue_name, "failed")) == 1


@pytest.mark.parametrize("delay", [math.inf, math.nan, 1e300], ids=["inf", "nan", "huge"])
async def test_a_retry_delay_that_is_no_time_falls_back_to_the_default_backoff(
    connector: Connector, queue_name: str, delay: float
) -> None:
    """An infinite delay used to raise while writing the retry: the task stayed active,
    and the recoverer then failed on it at every pass, recovering nothing after it."""
    clock = ManualClock()
    mux = raising_mux("failing", RuntimeError, "boom")

    async with Client(connector) as client:
        info = await client.enqueue(Task("failing"), queue=queue_name, max_retry=3)
    options = {"clock": clock, "retry_delay": lambda n, error, task: delay}
    async with running_server(connector, mux, {queue_name: 1}, **options):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))
    score = await connector.client.zscore(key(queue_name, "retry"), info.id)
    assert clock.time() + 15 - 1 <= score <= clock.time() + 15 + 29  # the default: n**4 + 15 ...


@pytest.mark.parametrize("retried", [1200, -(2**31)])
async def test_the_default_backoff_of_a_task_retried_very_often_stays_within_a_century(
    connector: Connector, queue_name: str, retried: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A task whose retries servers with a retry rule of their own counted into the
    hundreds (or a count another writer left negative) got asynq's n**4 backoff unchecked:
    an error with a traceback at every failure, and a retry due tens of millennia away."""
    clock = ManualClock()
    msg = TaskMessage(type="failing", id="often", queue=queue_name, retry=5000, retried=retried)
    await connector.client.hset(
        key(queue_name, "t:often"), mapping={"msg": msg.SerializeToString(), "state": "pending"}
    )
    await connector.client.lpush(key(queue_name, "pending"), "often")
    mux = raising_mux("failing", RuntimeError, "boom")
    async with running_server(connector, mux, {queue_name: 1}, clock=clock):
        await eventually(lambda: state_is(connector, queue_name, "often", "retry"))
    score = await connector.client.zscore(key(queue_name, "retry"), "often")
    # The score is in whole seconds (asynq's), so the time is cut to whole seconds too.
    assert int(clock.time()) + 15 <= score <= clock.time() + MAX_DURATION
    assert "retry_delay failed" not in caplog.text


async def test_last_retry_archives_with_the_error(connector: Connector, queue_name: str) -> None:
    mux = raising_mux("doomed", ValueError, "bad input 42")

    async with Client(connector) as client:
        info = await client.enqueue(Task("doomed"), queue=queue_name, max_retry=0)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, info.id, "archived"))
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg == "ValueError: bad input 42" and msg.retried == 0
    assert await connector.client.zscore(key(queue_name, "archived"), info.id) is not None
    assert await connector.client.llen(key(queue_name, "active")) == 0


async def test_skip_retry_archives_at_once(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Archived at once, and logged as the handler's choice: it was logged as an error
    with a traceback, as a task that "failed on its last try (1 of 11)"."""
    mux = raising_mux("skip", SkipRetry, "not worth retrying")

    async with Client(connector) as client:
        info = await client.enqueue(Task("skip"), queue=queue_name, max_retry=10)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, info.id, "archived"))
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg == "SkipRetry: not worth retrying" and msg.retried == 0
    assert "archived without retrying, as its handler asked" in caplog.text
    assert "last try" not in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_revoke_task_drops_it_without_retry_or_archive(
    connector: Connector, queue_name: str
) -> None:
    mux = raising_mux("revoke", RevokeTask, "cancelled by the user")

    async with Client(connector) as client:
        info = await client.enqueue(Task("revoke"), queue=queue_name)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: gone(connector, queue_name, info.id))
    assert await connector.client.zcard(key(queue_name, "archived")) == 0
    assert await connector.client.zcard(key(queue_name, "retry")) == 0
    assert await counter(connector, key(queue_name, "processed")) == 1
    assert await counter(connector, key(queue_name, "failed")) == 0


async def test_timeout_cancels_the_handler_and_retries(
    connector: Connector, queue_name: str
) -> None:
    cancelled = asyncio.Event()
    mux = ServeMux()

    @mux.handler("slow")
    async def slow(task: Task) -> None:
        try:
            await asyncio.Event().wait()  # never set: only the timeout ends this
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with Client(connector) as client:
        info = await client.enqueue(Task("slow"), queue=queue_name, timeout=1)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"), within=10)
    assert cancelled.is_set()
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg.startswith("TaskDeadlineExceededError") and msg.retried == 1


async def test_passed_deadline_fails_without_starting_the_handler(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock()
    started: list[str] = []
    mux = ServeMux()

    @mux.handler("late")
    async def late(task: Task) -> None:
        started.append(task.id)
        await asyncio.Event().wait()

    deadline = datetime.fromtimestamp(clock.time() + 100, UTC)
    async with Client(connector) as client:
        info = await client.enqueue(Task("late"), queue=queue_name, deadline=deadline)
    clock.advance(200)  # the worker's "now" is past the deadline when it dequeues
    async with running_server(connector, mux, {queue_name: 1}, clock=clock):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg.startswith("TaskDeadlineExceededError")
    assert "before it could start" in msg.error_msg
    assert started == [], "not even the handler's code before its first await may run"


async def test_unknown_task_type_is_a_failure(connector: Connector, queue_name: str) -> None:
    async with Client(connector) as client:
        info = await client.enqueue(Task("nobody:handles"), queue=queue_name)
    async with running_server(connector, ServeMux(), {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg == (
        "HandlerNotFoundError: no handler is registered for task type 'nobody:handles'"
    )


async def test_error_inside_middleware_is_recorded(connector: Connector, queue_name: str) -> None:
    mux = ServeMux()
    reported: list[str] = []

    def auth(next_handler):  # type: ignore[no-untyped-def]
        async def check(task: Task) -> None:
            if "token" not in task.headers:
                raise PermissionError("missing token")
            await next_handler(task)

        return check

    mux.use(auth)

    @mux.handler("guarded")
    async def guarded(task: Task) -> None:
        pass

    async def on_error(task: Task, error: BaseException) -> None:
        reported.append(f"{task.type}: {error}")

    async with Client(connector) as client:
        info = await client.enqueue(Task("guarded"), queue=queue_name)
    async with running_server(connector, mux, {queue_name: 1}, error_handler=on_error):
        await eventually(lambda: state_is(connector, queue_name, info.id, "retry"))
    msg = await task_message(connector, queue_name, info.id)
    assert msg.error_msg == "PermissionError: missing token"
    assert reported == ["guarded: missing token"]


async def test_retention_keeps_a_completed_task_with_its_result(
    connector: Connector, queue_name: str
) -> None:
    clock = ManualClock()
    mux = ServeMux()

    @mux.handler("report")
    async def report(task: Task) -> None:
        await task.write_result({"rows": 3})

    async with Client(connector) as client:
        info = await client.enqueue(
            Task("report"), queue=queue_name, retention=timedelta(hours=1), unique=3600
        )
    async with running_server(connector, mux, {queue_name: 1}, clock=clock):
        await eventually(lambda: state_is(connector, queue_name, info.id, "completed"))
        msg = await task_message(connector, queue_name, info.id)
        assert msg.completed_at == int(clock.time())
        score = await connector.client.zscore(key(queue_name, "completed"), info.id)
        assert score == int(clock.time()) + 3600
        result = await connector.client.hget(key(queue_name, f"t:{info.id}"), "result")
        assert result == b'{"rows":3}'
        # Success released the unique lock, so the same task may be enqueued again...
        async with Client(connector) as client:
            await client.enqueue(Task("report"), queue=queue_name, unique=3600, task_id="again")
            # ...but the completed task still holds its id.
            with pytest.raises(TaskIdConflictError):
                await client.enqueue(Task("report"), queue=queue_name, task_id=info.id)
        clock.advance(3601)  # retention over: the janitor deletes it
        await eventually(lambda: gone(connector, queue_name, info.id))
    assert await connector.client.zcard(key(queue_name, "completed")) == 0


async def test_corrupt_task_data_is_archived_not_lost(
    connector: Connector, queue_name: str
) -> None:
    await connector.client.hset(
        key(queue_name, "t:broken"), mapping={"msg": b"\xff\xfe not protobuf", "state": "pending"}
    )
    await connector.client.lpush(key(queue_name, "pending"), "broken")
    async with running_server(connector, ServeMux(), {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, "broken", "archived"))
    raw = await connector.client.hget(key(queue_name, "t:broken"), "msg")
    assert raw == b"\xff\xfe not protobuf"
    assert await connector.client.llen(key(queue_name, "active")) == 0


async def test_a_message_naming_another_task_is_archived_and_that_task_is_untouched(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    mux = ServeMux()

    @mux.handler("job")
    async def job(task: Task) -> None:
        ran.append(task.id)

    async with Client(connector) as client:
        other = await client.enqueue(Task("job"), queue=queue_name)
        copy = await client.enqueue(Task("job"), queue=queue_name)
    # copy's hash now holds other's message (a bad restore, a hand edit).
    other_msg = await connector.client.hget(key(queue_name, f"t:{other.id}"), "msg")
    await connector.client.hset(key(queue_name, f"t:{copy.id}"), "msg", other_msg)
    async with running_server(connector, mux, {queue_name: 1}):
        await eventually(lambda: state_is(connector, queue_name, copy.id, "archived"))
        await eventually(lambda: gone(connector, queue_name, other.id))
    assert ran == [other.id]  # once, for the task it belongs to
    # Archived as it is (nothing lost, an operator can look); the log says why.
    assert await connector.client.hget(key(queue_name, f"t:{copy.id}"), "msg") == other_msg
    assert f"t:{copy.id} holds the message of task {other.id!r}" in caplog.text
    assert await connector.client.llen(key(queue_name, "active")) == 0


class _NotAnException(BaseException):
    """Raised by some libraries (test frameworks, green threads) from inside a handler."""


async def test_a_handler_raising_a_base_exception_fails_its_task_not_the_server(
    connector: Connector, queue_name: str
) -> None:
    mux = ServeMux()

    @mux.handler("odd")
    async def odd(task: Task) -> None:
        raise _NotAnException("gone")

    @mux.handler("fine")
    async def fine(task: Task) -> None:
        pass

    async with Client(connector) as client, running_server(connector, mux, {queue_name: 1}):
        failed = await client.enqueue(Task("odd"), queue=queue_name)
        await eventually(lambda: state_is(connector, queue_name, failed.id, "retry"))
        served = await client.enqueue(Task("fine"), queue=queue_name)
        await eventually(lambda: gone(connector, queue_name, served.id))
    msg = await task_message(connector, queue_name, failed.id)
    assert msg.error_msg == "_NotAnException: gone"
    assert msg.retried == 1


# Each outcome writes its counters in a script of its own (success: done_many; revoked:
# done; kept: mark_as_complete; retry and archive).
_OUTCOMES: dict[str, tuple[type[Exception] | None, dict[str, Any], str]] = {
    "done": (None, {}, "gone"),
    "revoked": (RevokeTask, {}, "gone"),
    "completed": (None, {"retention": 3600}, "completed"),
    "retry": (ValueError, {"max_retry": 5}, "retry"),
    "archived": (SkipRetry, {}, "archived"),
}


@pytest.mark.parametrize("outcome", list(_OUTCOMES))
async def test_a_counter_another_writer_spoilt_starts_again_and_costs_no_outcome(
    connector: Connector, queue_name: str, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    """A counter holding no whole number (or at int64's largest value) failed the outcome's
    script after the task's own writes: the worker logged the write as failed, tried it
    again, found the task no longer its own and said so, at every task of the queue. Now
    such a counter starts again from 0, as the stats already read it."""
    error, options, final = _OUTCOMES[outcome]
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        if error is not None:
            raise error("no")

    day = utc_date(time.time())
    spoilt = {
        "processed": "not a number",
        f"processed:{day}": "1.5",
        "failed": str(2**63 - 1),  # asynq wraps a total there
    }
    for suffix, value in spoilt.items():
        await connector.client.set(key(queue_name, suffix), value)
    await connector.client.rpush(key(queue_name, f"failed:{day}"), "a list")
    async with Client(connector) as client:
        info = await client.enqueue(Task("t"), queue=queue_name, **options)
    async with running_server(connector, mux, {queue_name: 1}):
        if final == "gone":
            await eventually(lambda: gone(connector, queue_name, info.id))
        else:
            await eventually(lambda: state_is(connector, queue_name, info.id, final))
    complaints = ("could not", "no longer held", "ran out")
    assert not [r for r in caplog.records if any(c in r.getMessage() for c in complaints)]
    failed = 1 if outcome in ("retry", "archived") else 0
    assert await counter(connector, key(queue_name, "processed")) == 1
    assert await counter(connector, key(queue_name, f"processed:{day}")) == 1
    assert await connector.client.ttl(key(queue_name, f"processed:{day}")) > 0
    if failed:
        assert await counter(connector, key(queue_name, "failed")) == 1
        assert await counter(connector, key(queue_name, f"failed:{day}")) == 1
        assert await connector.client.ttl(key(queue_name, f"failed:{day}")) > 0
