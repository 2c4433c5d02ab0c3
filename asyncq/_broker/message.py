"""Encoding and decoding of asynq's protobuf ``TaskMessage`` (the ``msg`` hash field)."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq.errors import TaskDecodeError

__all__ = ["MessageTemplate", "TaskMessage", "decode_message", "decode_stored", "new_message"]


def new_message(
    *,
    task_id: str,
    task_type: str,
    payload: bytes | None,
    queue: str,
    max_retry: int,
    timeout: int,
    deadline: int,
    retention: int,
    unique_key: str,
    group: str,
    headers: Mapping[str, str] | None,
) -> TaskMessage:
    """A fresh message for a new task; zero values are left out of the bytes (proto3)."""
    msg = TaskMessage(
        type=task_type,
        payload=payload or b"",
        id=task_id,
        queue=queue,
        retry=max_retry,
        timeout=timeout,
        deadline=deadline,
        retention=retention,
        unique_key=unique_key,
        group_key=group,
    )
    if headers:
        msg.headers.update(headers)
    return msg


def decode_message(data: bytes, *, where: str = "") -> TaskMessage:
    """Parse stored bytes into a ``TaskMessage``; corrupt data raises ``TaskDecodeError``."""
    msg = TaskMessage()
    try:
        msg.ParseFromString(data)
    except (DecodeError, TypeError) as error:
        place = f" at {where}" if where else ""
        raise TaskDecodeError(
            f"task data{place} is not a valid asynq TaskMessage ({error}); "
            "it was not written by asynq or asyncq, or it is corrupt"
        ) from error
    return msg


def decode_stored(data: bytes, task_id: str, key: str) -> TaskMessage:
    """The message stored in the hash ``key`` of task ``task_id``. Raises
    ``TaskDecodeError`` if it is corrupt or names another task: run or retried under that
    other id, it could never be acknowledged, and its writes would land on the other task.
    """
    msg = decode_message(data, where=key)
    if msg.id != task_id:
        raise TaskDecodeError(f"{key} holds the message of task {msg.id!r}, not its own")
    return msg


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(data)) + data


# Field tag and one-byte length of a payload (field 2) or an id (field 3) shorter than 128.
_PAYLOAD_HEADS = [bytes((0x12, size)) for size in range(128)]
_ID_HEADS = [bytes((0x1A, size)) for size in range(128)]


class MessageTemplate:
    """Encodes many messages that differ only in type, payload, id and headers, fast.

    ``enqueue_many`` sends thousands of tasks with the same options: the fields from
    4 (queue) to 14 (group) are serialised once, and each task adds fields 1-3 and 15
    around them. The bytes are exactly what ``TaskMessage.SerializeToString()`` gives
    (fields in number order, zero values left out), which a test checks.
    """

    def __init__(
        self, *, queue: str, max_retry: int, timeout: int, deadline: int, retention: int, group: str
    ) -> None:
        self._middle = TaskMessage(
            queue=queue,
            retry=max_retry,
            timeout=timeout,
            deadline=deadline,
            retention=retention,
            group_key=group,
        ).SerializeToString()
        self._types: dict[str, bytes] = {}

    def encode(
        self, task_type: str, payload: bytes | None, task_id: str, headers: Mapping[str, str]
    ) -> bytes:
        head = self._types.get(task_type)
        if head is None:
            head = self._types[task_type] = _length_delimited(0x0A, task_type.encode())
        ident = task_id.encode()
        size = len(ident)
        # Ids are short (36 bytes for a UUID): their tag and length come from a table.
        ident_head = _ID_HEADS[size] if size < 128 else b"\x1a" + _varint(size)
        tail = ident_head + ident + self._middle
        if headers:
            tail += TaskMessage(headers=headers).SerializeToString()
        if not payload:
            return head + tail
        size = len(payload)
        if size < 128:
            # Small messages are concatenated: no tuple for a join to build (and for the
            # garbage collector to count) per message.
            return head + _PAYLOAD_HEADS[size] + payload + tail
        return b"".join((head, b"\x12", _varint(size), payload, tail))
