"""The bytes asyncq writes are the bytes Go's asynq writes (golden vectors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from asyncq._broker.keys import QueueKeys
from asyncq._broker.message import decode_message, new_message
from asyncq._options import resolve
from asyncq.errors import TaskDecodeError
from asyncq.task import Task

# The notifications:email task of the cluster tutorial, as asynq v0.24.1 stored it.
TUTORIAL_MSG = bytes.fromhex(
    "0a136e6f74696669636174696f6e733a656d61696c12157b22746f223a3132332c2266726f6d22"
    "3a3435367d1a2430636162323662652d303231322d343733332d383031362d6462386165313630"
    "39353237220d6e6f74696669636174696f6e73281940880e"
)
NOW = 1795791319.26


def encode(task: Task, **options: object) -> bytes:
    """The message bytes asyncq's client would store for ``task`` with ``options``."""
    opts = resolve(options, NOW)
    keys = QueueKeys(opts.queue)
    unique_key = keys.unique(task.type, task.raw_payload) if opts.unique_ttl else ""
    return new_message(
        task_id=opts.task_id,
        task_type=task.type,
        payload=task.raw_payload,
        queue=opts.queue,
        max_retry=opts.max_retry,
        timeout=opts.timeout,
        deadline=opts.deadline,
        retention=opts.retention,
        unique_key=unique_key,
        group=opts.group,
        headers=task.headers,
    ).SerializeToString()


def test_tutorial_message_is_byte_for_byte_asynqs() -> None:
    task = Task("notifications:email", {"to": 123, "from": 456})
    data = encode(task, queue="notifications", task_id="0cab26be-0212-4733-8016-db8ae1609527")
    assert len(data) == 102
    assert data == TUTORIAL_MSG


@pytest.mark.parametrize(
    ("options", "hex_msg"),
    [
        (
            {"task_id": "vec-0001"},
            "0a0a656d61696c3a73656e6412087b22746f223a317d1a087665632d30303031"
            "220764656661756c74281940880e",
        ),
        (
            {
                "task_id": "vec-0002",
                "queue": "critical",
                "max_retry": 5,
                "timeout": timedelta(seconds=90),
                "deadline": datetime(2030, 1, 1, tzinfo=UTC),
                "retention": timedelta(hours=24),
            },
            "0a0a656d61696c3a73656e6412087b22746f223a317d1a087665632d3030303222"
            "08637269746963616c2805405a4880b1ef86076080a305",
        ),
        (
            {"task_id": "vec-0003", "unique": timedelta(hours=1)},
            "0a0a656d61696c3a73656e6412087b22746f223a317d1a087665632d3030303322"
            "0764656661756c74281940880e52426173796e713a7b64656661756c747d3a756e69"
            "7175653a656d61696c3a73656e643a6631383463623737363739396437663862666363"
            "323739363831306536323764",
        ),
        (
            {"task_id": "vec-0005", "group": "g1"},
            "0a0a656d61696c3a73656e6412087b22746f223a317d1a087665632d303030352207"
            "64656661756c74281940880e72026731",
        ),
    ],
    ids=["defaults", "every-option", "unique", "group"],
)
def test_option_vectors_match_asynq(options: dict[str, object], hex_msg: str) -> None:
    assert encode(Task("email:send", {"to": 1}), **options).hex() == hex_msg


def test_unique_keys_follow_asynqs_md5_rule() -> None:
    keys = QueueKeys("default")
    assert keys.unique("email:send", None) == "asynq:{default}:unique:email:send:"
    assert keys.unique("email:send", b'{"to":1}') == (
        "asynq:{default}:unique:email:send:f184cb776799d7f8bfcc2796810e627d"
    )
    assert keys.unique("email:send", b"") == (
        "asynq:{default}:unique:email:send:d41d8cd98f00b204e9800998ecf8427e"
    )


def test_message_round_trips_every_field() -> None:
    msg = decode_message(TUTORIAL_MSG)
    assert (msg.type, msg.id, msg.queue, msg.retry, msg.timeout) == (
        "notifications:email",
        "0cab26be-0212-4733-8016-db8ae1609527",
        "notifications",
        25,
        1800,
    )
    assert msg.payload == b'{"to":123,"from":456}'


def test_headers_travel_in_field_15() -> None:
    data = encode(Task("t", b"x", headers={"trace": "abc"}), task_id="h1")
    assert decode_message(data).headers == {"trace": "abc"}


def test_corrupt_message_raises_a_clear_error() -> None:
    with pytest.raises(TaskDecodeError, match="not a valid asynq TaskMessage"):
        decode_message(b"\xff\xff\xff\xff", where="asynq:{q}:t:x")


@pytest.mark.parametrize(
    "payload", [None, b"", b'{"to":1}', b"p" * 127, b"p" * 128, bytes(range(256)) * 2]
)
@pytest.mark.parametrize("headers", [{}, {"trace": "abc"}, {"k": "v" * 300}])
@pytest.mark.parametrize(
    "options",
    [
        {"queue": "default", "max_retry": 25, "timeout": 1800, "deadline": 0, "retention": 0,
         "group": ""},
        {"queue": "q" * 200, "max_retry": 0, "timeout": 0, "deadline": 1893456000,
         "retention": 86400, "group": "g1"},
    ],
)  # fmt: skip
def test_batch_template_encodes_exactly_like_protobuf(
    payload: bytes | None, headers: dict[str, str], options: dict[str, object]
) -> None:
    from asyncq._broker.message import MessageTemplate

    template = MessageTemplate(**options)  # type: ignore[arg-type]
    for task_type, task_id in (("email:send", "vec-0001"), ("t" * 300, "x" * 140)):
        expected = new_message(
            task_id=task_id, task_type=task_type, payload=payload, unique_key="",
            headers=headers, **options,  # type: ignore[arg-type]
        ).SerializeToString()  # fmt: skip
        assert template.encode(task_type, payload, task_id, headers) == expected


def test_generated_ids_are_uuid4() -> None:
    import uuid

    from asyncq._options import new_task_id, new_task_ids

    assert new_task_ids(0) == []
    ids = {new_task_id() for _ in range(1000)} | set(new_task_ids(1000)) | set(new_task_ids(1))
    assert len(ids) == 2001
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 and str(u) in ids for u in parsed)
    # All four variant digits occur: the two random bits under the variant are really random.
    assert {i[19] for i in ids} == set("89ab")
    # Every other hex place takes all 16 digits: each holds random bits of its own.
    places = [p for p in range(36) if p not in (8, 13, 14, 18, 19, 23)]
    assert all(len({i[p] for i in ids}) == 16 for p in places)


def test_a_forked_child_never_hands_out_its_parents_ids() -> None:
    """Ids are made many at a time; a child starts without the parent's unused ones."""
    import multiprocessing

    from asyncq._options import _ID_BATCH, _ready_ids, new_task_id

    _ready_ids.clear()
    new_task_id()
    assert len(_ready_ids) == _ID_BATCH - 1  # the parent now holds ids made ahead
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=lambda: sender.send([new_task_id() for _ in range(64)]))
    child.start()
    sender.close()  # the child holds its own copy; a child that dies closes the pipe
    childs = receiver.recv()
    child.join(timeout=30)
    assert child.exitcode == 0
    parents = [new_task_id() for _ in range(64)]
    assert not set(childs) & set(parents)
