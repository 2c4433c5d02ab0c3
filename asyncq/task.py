"""Tasks: what a client enqueues (``Task``) and what it learns back (``TaskInfo``)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

__all__ = ["Task", "TaskInfo", "TaskState"]


class TaskState(enum.StrEnum):
    """The ``state`` field of a task hash; the strings are asynq's."""

    PENDING = "pending"
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    ARCHIVED = "archived"
    COMPLETED = "completed"
    AGGREGATING = "aggregating"


def encode_payload(task_type: str, payload: object) -> bytes | None:
    """Turn a payload into the bytes stored on the wire.

    ``bytes``-like values are stored as they are, ``None`` means no payload, and
    anything else is encoded as JSON with orjson. Nothing is ever pickled.
    """
    if type(payload) is dict:  # the common case first: JSON from a dict
        try:
            return _json_bytes(payload)
        except TypeError as error:
            raise _not_serialisable(task_type, error) from None
    if payload is None:
        return None
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    try:
        return _json_bytes(payload)
    except TypeError as error:
        raise _not_serialisable(task_type, error) from None


# Below this size a payload is copied out of orjson's buffer (see _json_bytes); above it
# the copy would cost more than the few KiB it saves.
_COMPACT_BELOW = 64 * 1024


def _json_bytes(payload: object) -> bytes:
    """``payload`` as JSON, in a bytes object of its own size.

    orjson hands back its result in the buffer it wrote into, which keeps at least 4 KiB
    of the process's memory for as long as the bytes live, however short the JSON. A task
    keeps its payload, so 20,000 tasks built for ``enqueue_many`` held over 80 MB, and
    filling that fresh memory made building them about three times slower (3.7 µs a task
    in a fresh process, against 1.0-1.5 µs with the copy). A copy of a small
    result lives in Python's own small-object memory, and the buffer is freed at once
    (and reused by the next encode).
    """
    encoded = orjson.dumps(payload)
    if len(encoded) < _COMPACT_BELOW:
        # A real copy: bytes(encoded) and encoded[:] hand back the same object.
        return memoryview(encoded).tobytes()
    return encoded


def _not_serialisable(task_type: str, error: TypeError) -> TypeError:
    return TypeError(
        f"payload of task {task_type!r} is not JSON-serialisable ({error}); "
        "pass bytes, or JSON values (dict, list, str, int, float, bool, None)"
    )


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of str to str, got {type(headers).__name__}")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"headers must map str to str; got {type(key).__name__} -> {type(value).__name__}"
            )
        _check_utf8(key, "a header name")
        _check_utf8(value, f"header {key!r}")
    return dict(headers)


def _check_utf8(text: str, what: str) -> None:
    """Refuse text that has no UTF-8 form (lone surrogates): the wire format cannot carry
    it, and it would fail only when the task is written."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as error:
            raise ValueError(f"{what} is not valid text ({error.reason}): {text!r}") from None


ResultWriter = Callable[[bytes], Awaitable[None]]


class Task:
    """A unit of work: a type name that selects the handler, a payload and optional headers.

    ``Task("email:send", {"to": 123})`` encodes the payload as JSON at once, so a
    payload that cannot be serialised fails here, before anything is written.

    Inside a handler the task also tells where it stands: ``id``, ``queue``,
    ``retried`` (retries so far), ``max_retry``, ``deadline`` (when the worker
    cancels it), and ``write_result`` stores a result beside it. On a task you
    built yourself these are empty (``""``, ``0``, ``None``).
    """

    __slots__ = (
        "_deadline_at",
        "_payload",
        "_result_writer",
        "headers",
        "id",
        "max_retry",
        "queue",
        "retried",
        "type",
    )

    def __init__(
        self, type: str, payload: object = None, headers: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(type, str) or not type.strip():
            raise ValueError(f"task type must be a non-blank str, got {type!r}")
        _check_utf8(type, "the task type")
        self.type = type
        self._payload = encode_payload(type, payload)
        self.headers = {} if headers is None else _check_headers(headers)
        self.id = ""
        self.queue = ""
        self.retried = 0
        self.max_retry = 0
        self._deadline_at: float | None = None
        self._result_writer: ResultWriter | None = None

    @classmethod
    def from_bytes(
        cls,
        type: str,
        payload: bytes | bytearray | memoryview | None,
        headers: Mapping[str, str] | None = None,
    ) -> Task:
        """A task from already encoded payload bytes (as read from Redis)."""
        task = cls(type, None, headers)
        if payload is not None and not isinstance(payload, bytes):
            if not isinstance(payload, bytearray | memoryview):
                raise TypeError(f"payload must be bytes or None, got {payload.__class__.__name__}")
            payload = bytes(payload)
        task._payload = payload
        return task

    @classmethod
    def _stored(cls, type: str, payload: bytes, headers: Mapping[str, str]) -> Task:
        """A task rebuilt from a stored message (to work out its retry, or to hand it to a
        group aggregator), taken as it is: another writer's task that ``Task()`` would
        refuse (a blank type) must still be retried, archived or aggregated, not fail
        every time it is read."""
        task = cls.__new__(cls)
        task.type, task._payload, task.headers = type, payload, dict(headers)
        task.id, task.queue, task.retried, task.max_retry = "", "", 0, 0
        task._deadline_at, task._result_writer = None, None
        return task

    @classmethod
    def _dequeued(
        cls,
        type: str,
        payload: bytes,
        headers: dict[str, str] | None,
        where: tuple[str, str, int, int],
        deadline_at: float,
        result_writer: ResultWriter,
    ) -> Task:
        """The task a worker hands its handler: read from a stored message, so nothing is
        checked again. ``where`` is (id, queue, retried, max_retry). The fewest steps
        there are, since a task's pickup runs them while the worker's caches are cold."""
        task = cls.__new__(cls)
        task.type, task._payload, task.headers = type, payload, headers or {}
        task.id, task.queue, task.retried, task.max_retry = where
        task._deadline_at, task._result_writer = deadline_at, result_writer
        return task

    @property
    def deadline(self) -> datetime | None:
        """When the worker cancels the handler (UTC); ``None`` outside a worker."""
        at = self._deadline_at
        return None if at is None else datetime.fromtimestamp(at, UTC)

    @deadline.setter
    def deadline(self, value: datetime | None) -> None:
        self._deadline_at = None if value is None else value.timestamp()

    @property
    def payload(self) -> bytes:
        """The payload bytes as stored (empty when there is none)."""
        return self._payload or b""

    @property
    def raw_payload(self) -> bytes | None:
        """The payload bytes, or ``None`` for a task created without one (asynq's nil payload)."""
        return self._payload

    def json(self) -> Any:
        """Decode the payload as JSON (``None`` when there is no payload)."""
        if not self._payload:
            return None
        return orjson.loads(self._payload)

    async def write_result(self, result: object) -> None:
        """Store ``result`` (bytes, or a JSON value) in the task's ``result`` field.

        Only possible inside a handler. The result outlives the task only when it
        was enqueued with ``retention``; otherwise it goes when the task succeeds.
        """
        if self._result_writer is None:
            raise RuntimeError("write_result() works only on a task given to a running handler")
        data = encode_payload(self.type, result)
        await self._result_writer(data or b"")

    def __repr__(self) -> str:
        ident = f", id={self.id!r}" if self.id else ""
        return f"Task({self.type!r}, payload={self.payload[:60]!r}{ident})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return (self.type, self.payload, self.headers) == (other.type, other.payload, other.headers)

    __hash__ = None  # type: ignore[assignment]  # mutable headers: not hashable


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What asyncq knows of a stored task: returned by ``Client.enqueue`` and the Inspector."""

    id: str
    queue: str
    type: str
    payload: bytes
    state: TaskState
    max_retry: int
    retried: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    last_error: str = ""
    last_failed_at: datetime | None = None
    timeout: timedelta | None = None
    deadline: datetime | None = None
    group: str = ""
    next_process_at: datetime | None = None
    retention: timedelta = timedelta(0)
    completed_at: datetime | None = None
    result: bytes | None = None
    is_orphaned: bool = False

    def json(self) -> Any:
        """Decode the payload as JSON (``None`` when empty)."""
        return orjson.loads(self.payload) if self.payload else None


def _slot_builder(cls: type[Any]) -> Callable[..., Any]:
    """A quick constructor for a frozen, slotted dataclass: ``build(*values)`` takes one
    value per field, in the order the fields are declared, and checks nothing.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; the
    function made here calls each slot's own setter, in straight-line code (made the way
    ``dataclasses`` makes ``__init__``), in half the time. ``Client.enqueue`` returns a
    TaskInfo of 18 fields for every call: its construction was a sixth of a busy client's
    time per call, and this builder saves about 6% of the call.
    """
    names = [f.name for f in fields(cls)]
    # The function's own names start with "__", which no field name here does.
    assert not any(name.startswith("__") for name in names)
    namespace: dict[str, Any] = {"__new": object.__new__, "__cls": cls}
    namespace.update({f"__set_{name}": cls.__dict__[name].__set__ for name in names})
    body = "".join(f"    __set_{name}(__obj, {name})\n" for name in names)
    source = f"def build({', '.join(names)}):\n    __obj = __new(__cls)\n{body}    return __obj\n"
    exec(source, namespace)
    build: Callable[..., Any] = namespace["build"]
    return build


#: ``TaskInfo(*values)`` with every field given in order, about twice as fast (see above).
new_task_info: Callable[..., TaskInfo] = _slot_builder(TaskInfo)
