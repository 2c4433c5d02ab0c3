"""Bad input on the client side gets a clear error and loses nothing: tasks changed after
they were made, numbers JSON has no form for, options whose check once depended on an
earlier call, timeouts that are no time."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TypedDict

import pytest

from asyncq import (
    Client,
    Connector,
    InvalidOptionError,
    RedisClusterConnector,
    RedisConnector,
    ServeMux,
    Task,
)
from tests.worker_helpers import key, running_server

SURROGATE = b"caf\xe9".decode(errors="surrogateescape")  # text with no UTF-8 form


class _RetryOrUnique(TypedDict, total=False):
    max_retry: int
    unique: int


def _header_changed_later() -> Task:
    task = Task("mail", {"to": 1}, headers={"attempt": "1"})
    task.headers["attempt"] = 2  # type: ignore[assignment]  # a plain dict, changed by hand
    return task


async def test_enqueue_many_gives_a_task_changed_after_it_was_made_its_own_error(
    connector: Connector, queue_name: str
) -> None:
    """It used to raise from the middle of the call, after the tasks before it were
    stored: a caller who tried again stored those twice."""
    tasks = [Task("ok", {"i": i}) for i in range(100)]
    tasks.insert(50, _header_changed_later())
    async with Client(connector) as client:
        results = await client.enqueue_many(tasks, queue=queue_name)
    assert [r.ok for r in results] == [True] * 50 + [False] + [True] * 50
    assert isinstance(results[50].error, TypeError)
    assert "headers a dict of str to str" in str(results[50].error)
    assert await connector.client.llen(key(queue_name, "pending")) == 100


async def test_enqueue_of_a_task_changed_after_it_was_made_is_refused_clearly(
    connector: Connector, queue_name: str
) -> None:
    async with Client(connector) as client:
        cases: tuple[_RetryOrUnique, ...] = ({}, {"max_retry": 3}, {"unique": 60})
        for options in cases:  # planned and checked paths
            with pytest.raises(TypeError, match=r"cannot be written: .*headers"):
                await client.enqueue(_header_changed_later(), queue=queue_name, **options)
    assert await connector.client.llen(key(queue_name, "pending")) == 0


def test_text_with_no_utf8_form_and_payloads_that_are_not_bytes_are_refused_when_made() -> None:
    with pytest.raises(ValueError, match="task type is not valid text"):
        Task(f"mail:{SURROGATE}")
    with pytest.raises(ValueError, match="header 'file' is not valid text"):
        Task("mail", headers={"file": SURROGATE})
    with pytest.raises(ValueError, match="a header name is not valid text"):
        Task("mail", headers={SURROGATE: "x"})
    with pytest.raises(TypeError, match="payload must be bytes or None, got str"):
        Task.from_bytes("mail", "already-json")  # type: ignore[arg-type]
    assert Task.from_bytes("mail", bytearray(b"{}")).payload == b"{}"


def test_numbers_json_has_no_form_for_are_written_as_null_as_documented() -> None:
    """orjson's behaviour, kept: looking for them in every payload with a null in it cost
    up to twenty times the encoding (docs/quickstart.md says so)."""
    assert Task("measure", {"v": math.nan, "w": [math.inf]}).payload == b'{"v":null,"w":[null]}'


@pytest.mark.parametrize(
    ("valid", "invalid"),
    [
        ({"max_retry": 1}, {"max_retry": True}),
        ({"max_retry": 3}, {"max_retry": 3.0}),
        ({"timeout": 1}, {"timeout": True}),
        ({"retention": 1}, {"retention": True}),
    ],
)
async def test_an_option_refused_for_its_type_stays_refused_after_an_equal_valid_one(
    connector: Connector, queue_name: str, valid: dict[str, object], invalid: dict[str, object]
) -> None:
    """Checked options are kept per call site, and True == 1, 3.0 == 3: once the valid
    value had been used, the invalid one matched its plan and was accepted."""
    async with Client(connector) as client:
        await client.enqueue(Task("t"), queue=queue_name, **valid)  # type: ignore[arg-type]
        with pytest.raises(InvalidOptionError):
            await client.enqueue(Task("t"), queue=queue_name, **invalid)  # type: ignore[arg-type]


async def test_a_retention_under_a_second_is_refused(connector: Connector, queue_name: str) -> None:
    """Stored in whole seconds, it became no retention at all."""
    async with Client(connector) as client:
        with pytest.raises(InvalidOptionError, match=r"retention must be 0 .* or at least 1"):
            await client.enqueue(Task("t"), queue=queue_name, retention=timedelta(seconds=0.5))
        await client.enqueue(Task("t"), queue=queue_name, retention=0)


async def test_wait_result_takes_none_for_no_limit_and_refuses_a_nan(
    connector: Connector, queue_name: str
) -> None:
    """A NaN timeout polled for ever; None failed with a TypeError from inside."""
    mux = ServeMux()

    @mux.handler("answer")
    async def answer(task: Task) -> None:
        await task.write_result(b"42")

    async with Client(connector) as client:
        info = await client.enqueue(Task("answer"), queue=queue_name, retention=60)
        for bad in (math.nan, True, "5"):
            with pytest.raises(InvalidOptionError, match="timeout must be a number of seconds"):
                await client.wait_result(info, timeout=bad)  # type: ignore[arg-type]
        async with running_server(connector, mux, {queue_name: 1}):
            assert await client.wait_result(info, timeout=None) == b"42"


@pytest.mark.parametrize(
    "options",
    [
        {"retry_deadline": math.nan},
        {"retry_deadline": "5"},
        {"connect_timeout": 0},
        {"socket_timeout": -1},
        {"socket_timeout": math.inf},
        {"socket_timeout": True},
    ],
    ids=["deadline-nan", "deadline-str", "connect-0", "socket-negative", "socket-inf", "bool"],
)
def test_connectors_refuse_timeouts_that_are_no_time_when_made(options: dict[str, object]) -> None:
    """They made every call fail, reported as Redis being unreachable."""
    name = next(iter(options))
    with pytest.raises(InvalidOptionError, match=f"{name} must be a"):
        RedisConnector(**options)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match=f"{name} must be a"):
        RedisClusterConnector(["127.0.0.1:7000"], **options)  # type: ignore[arg-type]


def test_replica_timeout_refuses_a_bool() -> None:
    with pytest.raises(InvalidOptionError, match="replica_timeout"):
        Client(RedisConnector(), wait_replicas=1, replica_timeout=True)


async def test_options_given_as_none_take_their_defaults_on_every_path(
    connector: Connector, queue_name: str
) -> None:
    """A web app passing its optional values on (``deadline=job.deadline``) was refused.
    An item's None leaves the call's option as it is (it does not mean the default)."""
    async with Client(connector) as client:
        single = await client.enqueue(
            Task("t"), queue=queue_name, deadline=None, task_id=None, unique=None, group=None,
            process_at=None, retention=None, max_retry=None, timeout=None,
        )  # fmt: skip
        many = await client.enqueue_many(
            [Task("t"), (Task("t"), {"process_in": None, "task_id": None, "queue": None})],
            queue=queue_name, deadline=None, group=None,
        )  # fmt: skip
    assert single.state.value == "pending" and single.max_retry == 25
    assert single.timeout == timedelta(minutes=30) and single.deadline is None
    assert [r.info.state.value for r in many if r.info] == ["pending", "pending"]
    assert await connector.client.llen(key(queue_name, "pending")) == 3
