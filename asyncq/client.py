"""The client: puts tasks into queues from any asyncio program (a web app, a script)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Unpack

from asyncq._broker.keys import QueueKeys
from asyncq._broker.message import MessageTemplate, decode_message, new_message
from asyncq._broker.rdb import (
    ALREADY_FIRED,
    DUPLICATE,
    ENQUEUED,
    ID_CONFLICT,
    ID_CONFLICT_UNCONFIRMED,
    UNCONFIRMED,
    Broker,
)
from asyncq._clock import Clock, SystemClock
from asyncq._cluster.connector import Connector
from asyncq._coalesce import Coalescer
from asyncq._many import (
    NO_OPTIONS,
    EnqueueResult,
    ManyWriter,
    TaskItem,
    takes_call_options,
    task_ids_by_batch,
)
from asyncq._options import (
    EnqueueOptions,
    ResolvedOptions,
    check_names,
    new_task_id,
    resolve,
)
from asyncq._prepared import Prepared, plain_like
from asyncq.errors import (
    DuplicateTaskError,
    InvalidOptionError,
    NotReplicatedError,
    ResultNotKeptError,
    ResultTimeoutError,
    TaskFailedError,
    TaskIdConflictError,
    TaskNotFoundError,
)
from asyncq.task import Task, TaskInfo, TaskState, new_task_info

__all__ = ["Client", "EnqueueResult"]

# How long a scheduler's fire lock lives: far longer than schedulers can disagree on a fire.
FIRE_LOCK_TTL = 600

# Options whose stored values depend on the call (time, id, payload): never planned ahead.
_PER_CALL_OPTIONS = frozenset({"process_at", "process_in", "task_id", "unique", "group"})
# timeout, deadline, next process time, retention: what TaskInfo takes from the options.
_SharedFields = tuple[timedelta | None, datetime | None, datetime | None, timedelta]
# The options object, (timeout, deadline, retention) from it, and the last process time
# with its datetime: the parts of a TaskInfo that repeat from task to task.
_FieldsCache = tuple[
    ResolvedOptions, tuple[timedelta | None, datetime | None, timedelta], float, datetime | None
]


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _checked_replication(replicas: object, seconds: object) -> tuple[int, float]:
    """``wait_replicas`` and ``replica_timeout``, checked."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 0 <= replicas <= 1000:
        raise InvalidOptionError(
            f"wait_replicas must be a whole number from 0 to 1000, got {replicas!r}"
        )
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
        raise InvalidOptionError(
            f"replica_timeout must be a number of seconds above 0 and at most 3600, got {seconds!r}"
        )
    return replicas, float(seconds)


def _unencodable(task: Task, error: Exception) -> TypeError:
    """The error of a task whose fields were changed, after it was made, into values the
    wire format cannot carry (its checks run when a ``Task`` is made)."""
    return TypeError(
        f"task {task.type!r} cannot be written: {error}; its type and headers must be str "
        "(headers a dict of str to str), its payload bytes"
    )


class Client:
    """Enqueues tasks. Use as ``async with Client(connector) as client:``.

    The client connects its connector on entry and releases it on exit; a
    connector may be shared with a server or an inspector in the same process.
    Plain enqueues made at the same moment (a busy web app) share round trips:
    the first goes out at once, the ones that arrive meanwhile go out together.

    ``wait_replicas``: each enqueue returns only once that many replicas of its queue's
    master hold the task (Redis's ``WAIT``), so a failover right after cannot lose it; a
    task stored without them within ``replica_timeout`` seconds raises
    ``NotReplicatedError`` (it is written all the same). 0, the default, waits for none.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        clock: Clock | None = None,
        wait_replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        self.connector = connector
        self._broker = Broker(connector)
        replication = _checked_replication(wait_replicas, replica_timeout)
        if replication[0]:
            self._broker.wait_replicas = replication
        self._clock: Clock = clock or SystemClock()
        self._batchers: dict[str, Coalescer[Prepared, int]] = {}
        self._fields_cache: _FieldsCache | None = None
        self._plans: dict[tuple[object, ...], tuple[Prepared, MessageTemplate]] = {}

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

    # -- enqueue -----------------------------------------------------------------------------

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
        plan = self._plan(options)
        if plan is not None and isinstance(task, Task):
            prepared = self._like(*plan, task, self._clock.time_ns())
        else:
            prepared = self._prepare(task, options)
        if not self._broker.queue_registered(prepared.opts.queue):
            await self._broker.register_queue(prepared.opts.queue)
        if prepared.plain:
            batcher = self._batcher(prepared.keys)
            code = await batcher.submit(prepared)
        else:
            code = await self._write_one(prepared)
        return self._outcome(prepared, code)

    async def wait_result(
        self,
        task: TaskInfo | str,
        *,
        queue: str | None = None,
        timeout: float | None = 30.0,  # noqa: ASYNC109 - a plain timeout reads best here
    ) -> bytes:
        """Wait until a task completes and return its result (``b""`` if it wrote none).

        ``task`` is the ``TaskInfo`` from ``enqueue`` or an id (then give ``queue``).
        The task must be enqueued with ``retention`` for its result to outlive it.
        Raises ``TaskFailedError`` when it is archived, ``ResultNotKeptError`` when it
        finished without retention, ``TaskNotFoundError`` when there is no such task,
        and ``ResultTimeoutError`` after ``timeout`` seconds (``None``: no limit). Retries
        are waited for.
        """
        if timeout is None:
            timeout = math.inf
        elif (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout)
        ):
            raise InvalidOptionError(
                f"timeout must be a number of seconds or None, got {timeout!r}"
            )
        task_id = task if isinstance(task, str) else task.id
        queue_name = queue if queue is not None else getattr(task, "queue", "default")
        keys = self._broker.keys(queue_name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A TaskInfo proves the task was stored: if it is gone, it finished unkept.
        delay, seen = 0.002, not isinstance(task, str)
        while True:
            state, result, msg = await self.connector.execute(
                "HMGET", keys.task(task_id), "state", "result", "msg"
            )
            if state == b"completed":
                return bytes(result or b"")
            if state == b"archived":
                raise TaskFailedError(task_id, decode_message(msg).error_msg)
            if state is None:
                group = getattr(task, "group", "")
                if group:
                    raise ResultNotKeptError(
                        f"task {task_id!r} of group {group!r} was aggregated into a new task, "
                        "which holds the result; a grouped task keeps none of its own"
                    )
                if seen:
                    raise ResultNotKeptError(
                        f"task {task_id!r} finished but was not kept; enqueue it with "
                        "retention= to wait for its result"
                    )
                raise TaskNotFoundError(
                    f"no task {task_id!r} in queue {queue_name!r} (a task enqueued without "
                    "retention is deleted as soon as it succeeds)"
                )
            seen = True
            if loop.time() >= deadline:
                raise ResultTimeoutError(f"task {task_id!r} did not finish within {timeout:g}s")
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
            delay = min(delay * 2, 0.1)

    async def enqueue_once(
        self, task: Task, options: Mapping[str, object], lock: tuple[str, int]
    ) -> TaskInfo | None:
        """Enqueue unless another caller already took ``lock`` (an entry's fire, for the
        Scheduler): ``lock`` is (entry id, fire time). Returns None when it was taken.

        The lock lives in the queue's slot and is taken by the same script that stores
        the task, so a fire is enqueued exactly once however many schedulers try.
        """
        prepared = self._prepare(task, options)
        entry_id, fire_time = lock
        fire = (prepared.keys.fired(entry_id, fire_time), FIRE_LOCK_TTL)
        await self._broker.register_queue(prepared.opts.queue)
        code = await self._write_one(prepared, fire)
        if code == ALREADY_FIRED:
            return None
        return self._outcome(prepared, code)

    async def enqueue_many(
        self, tasks: Iterable[TaskItem], **options: Unpack[EnqueueOptions]
    ) -> list[EnqueueResult]:
        """Store many tasks with as few round trips as possible; one result per task, in order.

        Each item is a ``Task`` or a ``(Task, options)`` pair whose options override
        the call's. Plain tasks are sent in batches, one script call per queue and
        batch (so per node), queues in parallel, and a queue's batches in order; unique,
        scheduled and grouped tasks are sent one by one, concurrently. A task refused
        (bad option, duplicate, id taken) or lost to a failing node gets its ``error``;
        the others are unaffected. A bad option of the call itself, or an item that is
        not a task, raises at once, before anything is written.
        """
        check_names(options)
        call_options = _given(options)
        shared = self._prepare(Task("-"), call_options)  # the call's options, checked once
        template = (
            self._template(shared) if shared.plain and "task_id" not in call_options else None
        )
        items = list(tasks)
        plain_count = sum(map(takes_call_options, items))  # also refuses what is no task
        results: list[EnqueueResult | None] = [None] * len(items)
        writer = ManyWriter(self, shared, results)
        ids = task_ids_by_batch(plain_count if template else 0)
        async with asyncio.TaskGroup() as group:
            writer.group = group
            for index, item in enumerate(items):
                task, own = (item, NO_OPTIONS) if isinstance(item, Task) else item
                own = _given(own)  # an item's None leaves the call's option as it is
                if template is not None and not own:
                    task_id = next(ids)
                    try:
                        msg = template.encode(task.type, task.raw_payload, task_id, task.headers)
                    except (ValueError, TypeError) as error:  # changed since it was made
                        results[index] = EnqueueResult(task=task, error=_unencodable(task, error))
                        continue
                    if writer.put(shared.keys, index, task, task_id, msg, None):
                        await writer.send(shared.keys)
                    continue
                try:
                    prepared = self._prepare(task, {**call_options, **own})
                except (ValueError, TypeError) as error:
                    results[index] = EnqueueResult(task=task, error=error)
                    continue
                if not prepared.plain:
                    writer.spawn_single(index, prepared)
                    continue
                if writer.put(prepared.keys, index, task, prepared.task_id, prepared.msg, prepared):
                    await writer.send(prepared.keys)
            await writer.flush()
        return [r for r in results if r is not None]

    # -- helpers -----------------------------------------------------------------------------

    def _prepare(self, task: Task, options: Mapping[str, object]) -> Prepared:
        if not isinstance(task, Task):
            raise TypeError(f"expected an asyncq.Task, got {type(task).__name__}")
        now_ns = self._clock.time_ns()
        now = now_ns / 1e9
        opts = resolve(options, now)
        keys = self._broker.keys(opts.queue)
        unique_key = keys.unique(task.type, task.raw_payload) if opts.unique_ttl else ""
        try:
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
        except (ValueError, TypeError) as error:
            raise _unencodable(task, error) from None
        if opts.process_at is not None and opts.process_at > now:
            state, process_at = TaskState.SCHEDULED, opts.process_at
        elif opts.group:
            state, process_at = TaskState.AGGREGATING, now
        else:
            state, process_at = TaskState.PENDING, now
        return Prepared(
            task, opts, keys, msg, unique_key, state, process_at, now_ns, opts.task_id,
            opts.generated_id,
        )  # fmt: skip

    @staticmethod
    def _template(shared: Prepared) -> MessageTemplate:
        opts = shared.opts
        return MessageTemplate(
            queue=opts.queue, max_retry=opts.max_retry, timeout=opts.timeout,
            deadline=opts.deadline, retention=opts.retention, group=opts.group,
        )  # fmt: skip

    @staticmethod
    def _like(shared: Prepared, template: MessageTemplate, task: Task, now_ns: int) -> Prepared:
        """A plain task with the same options as ``shared``: only id, time and message differ."""
        if not isinstance(task, Task):
            raise TypeError(f"expected an asyncq.Task, got {type(task).__name__}")
        task_id = new_task_id()
        try:
            msg = template.encode(task.type, task.raw_payload, task_id, task.headers)
        except (ValueError, TypeError) as error:
            raise _unencodable(task, error) from None
        return plain_like(shared, task, task_id, msg, now_ns)

    def _describe_like(
        self, shared: Prepared, written_ns: int, task: Task, task_id: str
    ) -> TaskInfo:
        """The TaskInfo of a task stored from ``enqueue_many``'s template path, in a batch
        written at ``written_ns`` (its pending_since, so its next_process_at)."""
        return self._outcome(plain_like(shared, task, task_id, b"", written_ns), ENQUEUED)

    def _plan(self, options: Mapping[str, object]) -> tuple[Prepared, MessageTemplate] | None:
        """Checked options and a message template for plain enqueues, kept per distinct
        options, so a web app enqueueing the same kind of task pays for checks once."""
        if not options.keys().isdisjoint(_PER_CALL_OPTIONS):
            return None
        try:
            # Call sites repeat their keyword order. The types are part of the key, as
            # True == 1 and 3.0 == 3: a value refused for its type must not match a plan.
            key = (*options.items(), *map(type, options.values()))
            plan = self._plans.get(key)
        except TypeError:  # an unhashable (so invalid) value: the full check will say why
            return None
        if plan is None:
            shared = self._prepare(Task("-"), options)
            if not shared.plain:
                return None
            if len(self._plans) >= 256:
                self._plans.clear()
            plan = self._plans[key] = (shared, self._template(shared))
        return plan

    def _batcher(self, keys: QueueKeys) -> Coalescer[Prepared, int]:
        batcher = self._batchers.get(keys.name)
        if batcher is None:

            async def flush(items: list[Prepared], since: float) -> list[int]:
                now_ns = self._clock.time_ns()
                pending_since = now_ns / 1e9
                task_ids: list[str] = []
                messages: list[bytes] = []
                fresh = True
                for p in items:
                    task_ids.append(p.task_id)
                    messages.append(p.msg)
                    fresh = fresh and p.generated_id
                    # Pending from the moment the group is written: one time for the whole
                    # group, so its TaskInfos share one next_process_at (see _shared_fields).
                    p.process_at = pending_since
                # The oldest call's time limit counts from when it was made.
                ends = since + self.connector.retry_deadline
                return await self._broker.enqueue_batch(
                    keys, task_ids, messages, now_ns, fresh_ids=fresh, ends=ends
                )

            batcher = self._batchers[keys.name] = Coalescer(flush)
        return batcher

    async def _write_one(self, p: Prepared, fire: tuple[str, int] = ("", 0)) -> int:
        opts = p.opts
        if p.state is TaskState.SCHEDULED:
            return await self._broker.schedule(
                p.keys, p.task_id, p.msg, int(p.process_at), opts.group, p.unique_key,
                opts.unique_ttl, fire,
            )  # fmt: skip
        if p.state is TaskState.AGGREGATING:
            return await self._broker.add_to_group(
                p.keys, p.task_id, p.msg, int(p.process_at), opts.group, p.unique_key,
                opts.unique_ttl, fire,
            )  # fmt: skip
        return await self._broker.enqueue(
            p.keys, p.task_id, p.msg, p.now_ns, p.unique_key, opts.unique_ttl, fire
        )

    def _result(self, prepared: Prepared, code: int) -> EnqueueResult:
        try:
            return EnqueueResult(task=prepared.task, info=self._outcome(prepared, code))
        except (DuplicateTaskError, TaskIdConflictError, NotReplicatedError) as error:
            return EnqueueResult(task=prepared.task, error=error)

    def _not_replicated(self, info: TaskInfo) -> NotReplicatedError:
        replicas, seconds = self._broker.wait_replicas or (0, 0.0)
        return NotReplicatedError(info, replicas, seconds)

    def _outcome(self, p: Prepared, code: int) -> TaskInfo:
        """The TaskInfo of a stored task, or the error its script result means."""
        opts = p.opts
        if code == DUPLICATE:
            raise DuplicateTaskError(opts.queue, p.unique_key)
        # A generated UUID4 cannot collide: a conflict means the connector re-sent a
        # call that had already succeeded before its reply was lost, so it is success.
        if code in (ID_CONFLICT, ID_CONFLICT_UNCONFIRMED) and not p.generated_id:
            raise TaskIdConflictError(opts.queue, p.task_id)
        assert code in (ENQUEUED, ID_CONFLICT, UNCONFIRMED, ID_CONFLICT_UNCONFIRMED)
        timeout, deadline, next_at, retention = self._shared_fields(p)
        # Every field, in TaskInfo's order (new_task_info checks nothing; see task.py).
        info = new_task_info(
            p.task_id, opts.queue, p.task.type, p.task.payload, p.state, opts.max_retry,
            0, dict(p.task.headers), "", None,  # retried, headers, last_error, last_failed_at
            timeout, deadline, opts.group, next_at, retention,
            None, None, False,  # completed_at, result, is_orphaned
        )  # fmt: skip
        if code in (UNCONFIRMED, ID_CONFLICT_UNCONFIRMED):
            raise self._not_replicated(info)
        return info

    def _shared_fields(self, p: Prepared) -> _SharedFields:
        """The TaskInfo fields that follow from the options and the time alone. The last
        answer is kept: a batch, or a web app's plan, asks with the same options object
        thousands of times, and a batch also with the same time."""
        opts = p.opts
        cached = self._fields_cache
        if cached is None or cached[0] is not opts:
            from_options = (
                timedelta(seconds=opts.timeout) if opts.timeout else None,
                _utc(opts.deadline) if opts.deadline else None,
                timedelta(seconds=opts.retention),
            )
            cached = self._fields_cache = (opts, from_options, -1.0, None)
        _, (timeout, deadline, retention), at, next_at = cached
        if p.state is TaskState.AGGREGATING:
            next_at = None
        elif p.process_at != at:
            next_at = _utc(p.process_at)
            self._fields_cache = (opts, cached[1], p.process_at, next_at)
        return timeout, deadline, next_at, retention


def _given(options: Mapping[str, object]) -> Mapping[str, object]:
    """``options`` without those given as ``None``, which mean "as if left out"."""
    if None in options.values():
        return {name: value for name, value in options.items() if value is not None}
    return options
