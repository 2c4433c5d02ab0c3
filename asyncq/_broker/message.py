"""Encoding and decoding of asynq's protobuf ``TaskMessage`` (the ``msg`` hash field)."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq.errors import TaskDecodeError

__all__ = ["TaskMessage", "decode_message", "new_message"]


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
