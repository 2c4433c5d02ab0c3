"""The client: puts tasks into queues from any asyncio program (a web app, a script)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from types import MappingProxyType, TracebackType
from typing import Unpack

from asyncq._broker.keys import QueueKeys
from asyncq._broker.message import MessageTemplate, decode_message, new_message
from asyncq._broker.rdb import ALREADY_FIRED, DUPLICATE, ENQUEUED, ID_CONFLICT, Broker
from asyncq._clock import Clock, SystemClock
from asyncq._cluster.connector import Connector
from asyncq._coalesce import Coalescer
from asyncq._options import (
    EnqueueOptions,
    ResolvedOptions,
    check_names,
    new_task_id,
    new_task_ids,
    resolve,
)
from asyncq.errors import (
    DuplicateTaskError,
    ResultNotKeptError,
    ResultTimeoutError,
    TaskFailedError,
    TaskIdConflictError,
    TaskNotFoundError,
)
from asyncq.task import Task, TaskInfo, TaskState, new_task_info

__all__ = ["Client", "EnqueueResult"]

BATCH_SIZE = 1000  # tasks per script call in enqueue_many: big enough, far below Redis limits
# How long a scheduler's fire lock lives: far longer than schedulers can disagree on a fire.
FIRE_LOCK_TTL = 600

TaskItem = Task | tuple[Task, Mapping[str, object]]
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


class EnqueueResult:
    """One task's outcome in ``enqueue_many``: its ``info``, or the ``error`` that stopped it."""

    __slots__ = ("_describe", "_info", "_task_id", "error", "task")

    def __init__(
        self, task: Task, info: TaskInfo | None = None, error: Exception | None = None
    ) -> None:
        self.task = task
        self.error = error
        self._info = info
        self._describe: Callable[[Task, str], TaskInfo] | None = None
        self._task_id = ""

    @classmethod
    def _stored(
        cls, task: Task, task_id: str, describe: Callable[[Task, str], TaskInfo]
    ) -> EnqueueResult:
        """A stored task whose ``TaskInfo`` is built only if someone asks for it: a batch
        of thousands is mostly checked with ``ok`` alone. ``describe(task, task_id)``
        builds it, and is shared by the whole batch."""
        result = cls(task)
        result._describe = describe
        result._task_id = task_id
        return result

    @property
    def info(self) -> TaskInfo | None:
        """What was stored (None when the task was refused)."""
        if self._info is None and self._describe is not None:
            self._info, self._describe = self._describe(self.task, self._task_id), None
        return self._info

    @property
    def ok(self) -> bool:
        """True when the task was stored."""
        return self.error is None

    def __repr__(self) -> str:
        outcome = f"error={self.error!r}" if self.error is not None else f"info={self.info!r}"
        return f"EnqueueResult(task={self.task!r}, {outcome})"


@dataclass(slots=True)
class _Prepared:
    """A task checked and encoded, ready to be written."""

    task: Task
    opts: ResolvedOptions
    keys: QueueKeys
    msg: bytes
    unique_key: str
    state: TaskState
    process_at: float
    now_ns: int
    task_id: str
    generated_id: bool

    @property
    def plain(self) -> bool:
        """A plain pending task: the kind that travels in batches."""
        return self.state is TaskState.PENDING and not self.unique_key


def _plain_like(shared: _Prepared, task: Task, task_id: str, msg: bytes, now_ns: int) -> _Prepared:
    """A plain task with the options of ``shared``, its own id, message and time."""
    return _Prepared(
        task, shared.opts, shared.keys, msg, "", shared.state, now_ns / 1e9, now_ns, task_id,
        True,
    )  # fmt: skip


class Client:
    """Enqueues tasks. Use as ``async with Client(connector) as client:``.

    The client connects its connector on entry and releases it on exit; a
    connector may be shared with a server or an inspector in the same process.
    Plain enqueues made at the same moment (a busy web app) share round trips:
    the first goes out at once, the ones that arrive meanwhile go out together.
    """

    def __init__(self, connector: Connector, *, clock: Clock | None = None) -> None:
        self.connector = connector
        self._broker = Broker(connector)
        self._clock: Clock = clock or SystemClock()
        self._batchers: dict[str, Coalescer[_Prepared, int]] = {}
        self._fields_cache: _FieldsCache | None = None
        self._plans: dict[tuple[tuple[str, object], ...], tuple[_Prepared, MessageTemplate]] = {}

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
        timeout: float = 30.0,  # noqa: ASYNC109 - a plain timeout reads best for this call
    ) -> bytes:
        """Wait until a task completes and return its result (``b""`` if it wrote none).

        ``task`` is the ``TaskInfo`` from ``enqueue`` or an id (then give ``queue``).
        The task must be enqueued with ``retention`` for its result to outlive it.
        Raises ``TaskFailedError`` when it is archived, ``ResultNotKeptError`` when it
        finished without retention, ``TaskNotFoundError`` when there is no such task,
        and ``ResultTimeoutError`` after ``timeout`` seconds. Retries are waited for.
        """
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
        shared = self._prepare(Task("-"), options)  # the call's options, checked once
        template = self._template(shared) if shared.plain and "task_id" not in options else None
        items = list(tasks)
        plain_count = sum(map(_takes_call_options, items))  # also refuses what is no task
        results: list[EnqueueResult | None] = [None] * len(items)
        writer = _ManyWriter(self, shared, results)
        ids = _task_ids_by_batch(plain_count if template else 0)
        async with asyncio.TaskGroup() as group:
            writer.group = group
            for index, item in enumerate(items):
                task, own = (item, _NO_OPTIONS) if isinstance(item, Task) else item
                if template is not None and not own:
                    task_id = next(ids)
                    msg = template.encode(task.type, task.raw_payload, task_id, task.headers)
                    if writer.put(shared.keys, index, task, task_id, msg, None):
                        await writer.send(shared.keys)
                    continue
                try:
                    prepared = self._prepare(task, {**options, **own})
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

    def _prepare(self, task: Task, options: Mapping[str, object]) -> _Prepared:
        if not isinstance(task, Task):
            raise TypeError(f"expected an asyncq.Task, got {type(task).__name__}")
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
        if opts.process_at is not None and opts.process_at > now:
            state, process_at = TaskState.SCHEDULED, opts.process_at
        elif opts.group:
            state, process_at = TaskState.AGGREGATING, now
        else:
            state, process_at = TaskState.PENDING, now
        return _Prepared(
            task, opts, keys, msg, unique_key, state, process_at, now_ns, opts.task_id,
            opts.generated_id,
        )  # fmt: skip

    @staticmethod
    def _template(shared: _Prepared) -> MessageTemplate:
        opts = shared.opts
        return MessageTemplate(
            queue=opts.queue, max_retry=opts.max_retry, timeout=opts.timeout,
            deadline=opts.deadline, retention=opts.retention, group=opts.group,
        )  # fmt: skip

    @staticmethod
    def _like(shared: _Prepared, template: MessageTemplate, task: Task, now_ns: int) -> _Prepared:
        """A plain task with the same options as ``shared``: only id, time and message differ."""
        if not isinstance(task, Task):
            raise TypeError(f"expected an asyncq.Task, got {type(task).__name__}")
        task_id = new_task_id()
        msg = template.encode(task.type, task.raw_payload, task_id, task.headers)
        return _plain_like(shared, task, task_id, msg, now_ns)

    def _describe_like(self, shared: _Prepared, task: Task, task_id: str) -> TaskInfo:
        """The TaskInfo of a task stored from ``enqueue_many``'s template path."""
        return self._outcome(_plain_like(shared, task, task_id, b"", shared.now_ns), ENQUEUED)

    def _plan(self, options: Mapping[str, object]) -> tuple[_Prepared, MessageTemplate] | None:
        """Checked options and a message template for plain enqueues, kept per distinct
        options, so a web app enqueueing the same kind of task pays for checks once."""
        if not options.keys().isdisjoint(_PER_CALL_OPTIONS):
            return None
        try:
            key = tuple(options.items())  # call sites repeat their keyword order
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

    def _batcher(self, keys: QueueKeys) -> Coalescer[_Prepared, int]:
        batcher = self._batchers.get(keys.name)
        if batcher is None:

            async def flush(items: list[_Prepared]) -> list[int]:
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
                return await self._broker.enqueue_batch(
                    keys, task_ids, messages, now_ns, fresh_ids=fresh
                )

            batcher = self._batchers[keys.name] = Coalescer(flush)
        return batcher

    async def _write_one(self, p: _Prepared, fire: tuple[str, int] = ("", 0)) -> int:
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

    def _result(self, prepared: _Prepared, code: int) -> EnqueueResult:
        try:
            return EnqueueResult(task=prepared.task, info=self._outcome(prepared, code))
        except (DuplicateTaskError, TaskIdConflictError) as error:
            return EnqueueResult(task=prepared.task, error=error)

    def _outcome(self, p: _Prepared, code: int) -> TaskInfo:
        """The TaskInfo of a stored task, or the error its script result means."""
        opts = p.opts
        if code == DUPLICATE:
            raise DuplicateTaskError(opts.queue, p.unique_key)
        # A generated UUID4 cannot collide: a conflict means the connector re-sent a
        # call that had already succeeded before its reply was lost, so it is success.
        if code == ID_CONFLICT and not p.generated_id:
            raise TaskIdConflictError(opts.queue, p.task_id)
        assert code in (ENQUEUED, ID_CONFLICT)
        timeout, deadline, next_at, retention = self._shared_fields(p)
        # Every field, in TaskInfo's order (new_task_info checks nothing; see task.py).
        return new_task_info(
            p.task_id, opts.queue, p.task.type, p.task.payload, p.state, opts.max_retry,
            0, dict(p.task.headers), "", None,  # retried, headers, last_error, last_failed_at
            timeout, deadline, opts.group, next_at, retention,
            None, None, False,  # completed_at, result, is_orphaned
        )  # fmt: skip

    def _shared_fields(self, p: _Prepared) -> _SharedFields:
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


_NO_OPTIONS: Mapping[str, object] = MappingProxyType({})


def _task_ids_by_batch(count: int) -> Iterator[str]:
    """``count`` new task ids, made a batch at a time, so that the first batch can be on
    its way to Redis before the ids of the last one exist."""
    for start in range(0, count, BATCH_SIZE):
        yield from new_task_ids(min(BATCH_SIZE, count - start))


def _takes_call_options(item: object) -> bool:
    """Whether an ``enqueue_many`` item is a bare task (or has no options of its own);
    raises a TypeError for an item that is neither a Task nor a (Task, options) pair."""
    if isinstance(item, Task):
        return True
    if (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], Task)
        and isinstance(item[1], Mapping)
    ):
        return not item[1]
    raise TypeError(
        f"enqueue_many takes asyncq.Task items or (Task, options) pairs, got {item!r:.80}"
    )


class _Batch:
    """The plain tasks of one queue waiting to be sent, as parallel lists: one list per
    field rather than a tuple per task keeps the garbage collector out of big batches."""

    __slots__ = ("indexes", "keys", "messages", "prepared", "task_ids", "tasks")

    def __init__(self, keys: QueueKeys) -> None:
        self.keys = keys
        self.indexes: list[int] = []
        self.tasks: list[Task] = []
        self.task_ids: list[str] = []
        self.messages: list[bytes] = []
        self.prepared: list[_Prepared | None] = []


class _ManyWriter:
    """Writes ``enqueue_many``'s tasks while the rest are still being prepared.

    Plain tasks go in batches of ``BATCH_SIZE``, one script call each; a queue's batches
    are sent one after another, so its tasks keep their order, while the next batch is
    encoded. Other tasks are written one by one, concurrently. Every outcome lands in
    ``results`` at the task's index.
    """

    def __init__(
        self, client: Client, shared: _Prepared, results: list[EnqueueResult | None]
    ) -> None:
        self._client = client
        self._shared = shared
        self._results = results
        self._buffers: dict[str, _Batch] = {}
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._describe = partial(client._describe_like, shared)
        self.group: asyncio.TaskGroup | None = None

    def put(
        self,
        keys: QueueKeys,
        index: int,
        task: Task,
        task_id: str,
        msg: bytes,
        prepared: _Prepared | None,
    ) -> bool:
        """Add a plain task to its queue's next batch; True when that batch is full.
        ``prepared`` is None for a task that takes the call's options."""
        batch = self._buffers.get(keys.name)
        if batch is None:
            batch = self._buffers[keys.name] = _Batch(keys)
        batch.indexes.append(index)
        batch.tasks.append(task)
        batch.task_ids.append(task_id)
        batch.messages.append(msg)
        batch.prepared.append(prepared)
        return len(batch.indexes) >= BATCH_SIZE

    async def send(self, keys: QueueKeys) -> None:
        """Send a queue's batch once its previous one is stored, so the queue keeps its
        order, and let it go out at once: the next batch is encoded while Redis stores
        this one. (Redis is the faster of the two, so the wait is rarely a wait.)"""
        batch = self._buffers.pop(keys.name)
        previous = self._tails.get(keys.name)
        if previous is not None:
            await previous
        self._tails[keys.name] = self._spawn(self._send(batch))
        await asyncio.sleep(0)  # the send runs up to its write before encoding goes on

    async def flush(self) -> None:
        """Send what is left in the batches."""
        for batch in list(self._buffers.values()):
            await self.send(batch.keys)

    def spawn_single(self, index: int, prepared: _Prepared) -> None:
        """Write a task that cannot go in a batch (unique, scheduled, grouped) on its own."""
        self._spawn(self._single(index, prepared))

    async def _send(self, batch: _Batch) -> None:
        client, results = self._client, self._results
        try:
            await client._broker.register_queue(batch.keys.name)
            fresh = all(p is None or p.generated_id for p in batch.prepared)
            codes = await client._broker.enqueue_batch(
                batch.keys, batch.task_ids, batch.messages, client._clock.time_ns(),
                fresh_ids=fresh,
            )  # fmt: skip
        except Exception as error:
            for index, task in zip(batch.indexes, batch.tasks, strict=True):
                results[index] = EnqueueResult(task=task, error=error)
            return
        describe = self._describe
        for position, index in enumerate(batch.indexes):
            prepared = batch.prepared[position]
            if prepared is not None:
                results[index] = client._result(prepared, codes[position])
            else:
                # A generated id is never taken: ID_CONFLICT means a re-sent call that
                # had already succeeded, so every code is a success here.
                task = batch.tasks[position]
                results[index] = EnqueueResult._stored(task, batch.task_ids[position], describe)

    async def _single(self, index: int, prepared: _Prepared) -> None:
        client = self._client
        try:
            await client._broker.register_queue(prepared.opts.queue)
            self._results[index] = client._result(prepared, await client._write_one(prepared))
        except Exception as error:
            self._results[index] = EnqueueResult(task=prepared.task, error=error)

    def _spawn(self, coro: Coroutine[None, None, None]) -> asyncio.Task[None]:
        assert self.group is not None, "the writer runs inside enqueue_many's TaskGroup"
        return self.group.create_task(coro)
