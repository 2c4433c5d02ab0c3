"""Enqueue options are checked before anything is written, with messages that say what to do."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import FrozenInstanceError, fields
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from asyncq._options import DEFAULT_TIMEOUT, resolve
from asyncq.errors import InvalidOptionError, InvalidQueueNameError
from asyncq.task import Task, TaskInfo, new_task_info

NOW = 1_800_000_000.0


def test_defaults_are_asynqs() -> None:
    opts = resolve({}, NOW)
    assert (opts.queue, opts.max_retry, opts.timeout, opts.deadline) == ("default", 25, 1800, 0)
    assert opts.generated_id and len(opts.task_id) == 36
    assert opts.process_at is None and opts.unique_ttl == 0 and opts.retention == 0


def test_an_option_given_as_none_takes_its_default() -> None:
    """Code that passes its own optional values on (``deadline=job.deadline``) was refused
    ("deadline must be a datetime, got NoneType") for every option."""
    names = ("queue", "max_retry", "timeout", "deadline", "unique", "process_at",
             "process_in", "task_id", "retention", "group")  # fmt: skip
    opts = resolve(dict.fromkeys(names), NOW)
    assert (opts.queue, opts.max_retry, opts.timeout, opts.deadline) == ("default", 25, 1800, 0)
    assert opts.generated_id and opts.process_at is None and opts.group == ""
    assert opts.unique_ttl == 0 and opts.retention == 0
    given = resolve({"deadline": None, "timeout": 90, "queue": "q"}, NOW)
    assert (given.queue, given.timeout, given.deadline) == ("q", 90, 0)


def test_deadline_alone_drops_the_default_timeout() -> None:
    opts = resolve({"deadline": datetime(2030, 1, 1, tzinfo=UTC)}, NOW)
    assert (opts.timeout, opts.deadline) == (0, 1893456000)
    assert resolve({"timeout": 90}, NOW).timeout == 90 != DEFAULT_TIMEOUT


def test_scheduled_unique_lock_lasts_until_process_time_plus_ttl() -> None:
    opts = resolve({"process_in": timedelta(hours=1), "unique": timedelta(minutes=10)}, NOW)
    assert opts.process_at == NOW + 3600
    assert opts.unique_ttl == 3600 + 600


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": ""}, "must not be blank"),
        ({"queue": "   "}, "must not be blank"),
        ({"queue": "a{b}"}, "contains '{' or '}'"),
        ({"queue": 5}, "must be a str"),
        ({"max_retry": -1}, "max_retry must be a whole number >= 0"),
        ({"max_retry": 2.5}, "max_retry must be a whole number"),
        ({"process_at": datetime(2030, 1, 1, tzinfo=UTC), "process_in": 5}, "not both"),
        ({"process_at": datetime(2030, 1, 1)}, "naive datetime"),
        ({"deadline": datetime(2030, 1, 1)}, "naive datetime"),
        ({"timeout": 0.5}, "timeout must be at least 1 second"),
        ({"timeout": "10s"}, "timeout must be a timedelta or a number"),
        ({"unique": timedelta(milliseconds=10)}, "unique must be at least 1 second"),
        ({"retention": -5}, "retention must be at least 0"),
        ({"max_retry": 2**31}, "max_retry must be at most 2147483647"),
        ({"process_in": timedelta(days=900_000_000)}, "process_in must be at most 100 years"),
        ({"retention": 1e300}, "retention must be at most 100 years"),
        ({"unique": timedelta(days=40_000)}, "unique must be at most 100 years"),
        ({"task_id": ""}, "task_id must be a non-blank str"),
        ({"group": " "}, "group must be a non-blank str"),
        ({"queues": "x"}, "unknown enqueue option 'queues'; did you mean 'queue'"),
        ({"retries": 3}, "unknown enqueue option 'retries'"),
    ],
)
def test_bad_options_are_refused_with_a_hint(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message.replace("{", r"\{").replace("}", r"\}")):
        resolve(options, NOW)


def test_queue_name_errors_are_their_own_type() -> None:
    with pytest.raises(InvalidQueueNameError):
        resolve({"queue": "{x}"}, NOW)


def test_payload_that_cannot_be_serialised_names_the_type() -> None:
    with pytest.raises(TypeError, match=r"not JSON-serialisable.*set"):
        Task("t", {"ids": {1, 2}})


def test_payload_shapes() -> None:
    assert Task("t", b"raw").payload == b"raw"
    assert Task("t", bytearray(b"ab")).payload == b"ab"
    assert Task("t", {"a": [1, 2]}).json() == {"a": [1, 2]}
    assert Task("t").raw_payload is None and Task("t").payload == b""
    with pytest.raises(ValueError, match="non-blank"):
        Task("  ")
    with pytest.raises(TypeError, match="headers must map str to str"):
        Task("t", headers={"a": 1})  # type: ignore[dict-item]


def test_a_small_json_payload_is_a_copy_and_a_big_one_is_kept_as_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[bytes] = []
    real_dumps = orjson.dumps

    def spy(value: object) -> bytes:
        encoded.append(real_dumps(value))
        return encoded[-1]

    monkeypatch.setattr(orjson, "dumps", spy)
    small = Task("t", {"a": "é"}).payload
    big = Task("t", {"blob": "x" * 100_000}).payload
    assert small == '{"a":"é"}'.encode() and small is not encoded[0]
    assert big is encoded[1]


_MANY_TASKS = textwrap.dedent(
    """
    import asyncq

    def rss_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

    before = rss_kib()
    tasks = [asyncq.Task("email", {"to": index, "n": 1.5}) for index in range(20_000)]
    print(rss_kib() - before)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tasks_built_for_a_batch_hold_little_memory() -> None:
    # A batch of small tasks is built before enqueue_many sends it: each one should cost
    # a few hundred bytes, not the 4 KiB buffer a JSON encoder may hand back.
    grown_kib = int(
        subprocess.run(
            [sys.executable, "-c", _MANY_TASKS], capture_output=True, text=True, check=True
        ).stdout
    )
    assert grown_kib < 20_000 * 1.0  # under 1 KiB per task; an encoder buffer each is 4+


def test_the_quick_task_info_builder_sets_every_field_as_the_constructor_does() -> None:
    values = tuple(f"value of {f.name}" for f in fields(TaskInfo))
    built = new_task_info(*values)
    assert built == TaskInfo(*values)  # type: ignore[arg-type]  # a str in every field, on purpose
    assert [getattr(built, f.name) for f in fields(TaskInfo)] == list(values)
    with pytest.raises(FrozenInstanceError):
        built.queue = "other"  # type: ignore[misc]
