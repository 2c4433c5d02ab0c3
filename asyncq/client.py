"""The client: puts tasks into queues from any asyncio program (a web app, a script)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Unpack

from asyncq._broker.message import new_message
from asyncq._broker.rdb import DUPLICATE, ID_CONFLICT, Broker
from asyncq._clock import Clock, SystemClock
from asyncq._cluster.connector import Connector
from asyncq._options import EnqueueOptions, ResolvedOptions, resolve
from asyncq.errors import DuplicateTaskError, TaskIdConflictError
from asyncq.task import Task, TaskInfo, TaskState

__all__ = ["Client"]


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Client:
    """Enqueues tasks. Use as ``async with Client(connector) as client:``.

    The client connects its connector on entry and releases it on exit; a
    connector may be shared with a server or an inspector in the same process.
    """

    def __init__(self, connector: Connector, *, clock: Clock | None = None) -> None:
        self.connector = connector
        self._broker = Broker(connector)
        self._clock: Clock = clock or SystemClock()

    async def __aenter__(self) -> Client:
        await self.connector.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connector (closed when its last user is done)."""
        await self.connector.aclose()

    async def enqueue(self, task: Task, **options: Unpack[EnqueueOptions]) -> TaskInfo:
        """Store ``task`` in its queue and return what was stored.

        Options (asynq's, with its defaults): ``queue`` ("default"), ``max_retry`` (25),
        ``timeout`` (30 min when no deadline), ``deadline`` (aware datetime), ``unique``
        (lock TTL), ``process_at`` (aware datetime) or ``process_in`` (delay), ``task_id``
        (a UUID4 by default), ``retention`` (keep as completed) and ``group``. Durations
        are ``timedelta`` or seconds.

        Raises ``InvalidOptionError`` for a bad option (nothing is written),
        ``DuplicateTaskError`` while a unique lock is held, ``TaskIdConflictError`` if
        the id is taken, and ``ConnectionFailedError`` if Redis stays unreachable.
        """
        if not isinstance(task, Task):
            raise TypeError(f"enqueue() takes an asyncq.Task, got {type(task).__name__}")
        now_ns = self._clock.time_ns()
        now = now_ns / 1e9
        opts = resolve(options, now)
        keys = self._broker.keys(opts.queue)
        unique_key = keys.unique(task.type, task.raw_payload) if opts.unique_ttl else ""
        msg = new_message(
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

        await self._broker.register_queue(opts.queue)
        if opts.process_at is not None and opts.process_at > now:
            state = TaskState.SCHEDULED
            process_at = opts.process_at
            code = await self._broker.schedule(
                keys, opts.task_id, msg, int(process_at), opts.group, unique_key, opts.unique_ttl
            )
        elif opts.group:
            state, process_at = TaskState.AGGREGATING, now
            code = await self._broker.add_to_group(
                keys, opts.task_id, msg, int(now), opts.group, unique_key, opts.unique_ttl
            )
        else:
            state, process_at = TaskState.PENDING, now
            code = await self._broker.enqueue(
                keys, opts.task_id, msg, now_ns, unique_key, opts.unique_ttl
            )
        self._raise_for(code, opts, unique_key)
        return self._info(task, opts, state, process_at, unique_key)

    @staticmethod
    def _raise_for(code: int, opts: ResolvedOptions, unique_key: str) -> None:
        if code == DUPLICATE:
            raise DuplicateTaskError(opts.queue, unique_key)
        # A generated UUID4 cannot collide: a conflict means the connector re-sent a
        # call that had already succeeded before its reply was lost, so it is success.
        if code == ID_CONFLICT and not opts.generated_id:
            raise TaskIdConflictError(opts.queue, opts.task_id)

    @staticmethod
    def _info(
        task: Task, opts: ResolvedOptions, state: TaskState, process_at: float, unique_key: str
    ) -> TaskInfo:
        return TaskInfo(
            id=opts.task_id,
            queue=opts.queue,
            type=task.type,
            payload=task.payload,
            headers=dict(task.headers),
            state=state,
            max_retry=opts.max_retry,
            timeout=timedelta(seconds=opts.timeout) if opts.timeout else None,
            deadline=_utc(opts.deadline) if opts.deadline else None,
            group=opts.group,
            next_process_at=None if state is TaskState.AGGREGATING else _utc(process_at),
            retention=timedelta(seconds=opts.retention),
        )
