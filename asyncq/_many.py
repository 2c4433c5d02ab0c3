"""The parts of ``Client.enqueue_many``: its per-task results, and the writer that sends
plain tasks in batches while the rest are still being prepared."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Mapping
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING

from asyncq._broker.keys import QueueKeys
from asyncq._broker.rdb import ID_CONFLICT_UNCONFIRMED, UNCONFIRMED
from asyncq._options import new_task_ids
from asyncq._prepared import Prepared
from asyncq.task import Task, TaskInfo

if TYPE_CHECKING:
    from asyncq.client import Client

__all__ = [
    "BATCH_SIZE",
    "NO_OPTIONS",
    "EnqueueResult",
    "ManyWriter",
    "TaskItem",
    "takes_call_options",
    "task_ids_by_batch",
]

BATCH_SIZE = 1000  # tasks per script call in enqueue_many: big enough, far below Redis limits

TaskItem = Task | tuple[Task, Mapping[str, object]]


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


NO_OPTIONS: Mapping[str, object] = MappingProxyType({})


def task_ids_by_batch(count: int) -> Iterator[str]:
    """``count`` new task ids, made a batch at a time, so that the first batch can be on
    its way to Redis before the ids of the last one exist."""
    for start in range(0, count, BATCH_SIZE):
        yield from new_task_ids(min(BATCH_SIZE, count - start))


def takes_call_options(item: object) -> bool:
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
        return all(value is None for value in item[1].values())  # None: as if left out
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
        self.prepared: list[Prepared | None] = []


class ManyWriter:
    """Writes ``enqueue_many``'s tasks while the rest are still being prepared.

    Plain tasks go in batches of ``BATCH_SIZE``, one script call each; a queue's batches
    are sent one after another, so its tasks keep their order, while the next batch is
    encoded. Other tasks are written one by one, concurrently. Every outcome lands in
    ``results`` at the task's index.
    """

    def __init__(
        self, client: Client, shared: Prepared, results: list[EnqueueResult | None]
    ) -> None:
        self._client = client
        self._shared = shared
        self._results = results
        self._buffers: dict[str, _Batch] = {}
        self._tails: dict[str, asyncio.Task[None]] = {}
        self.group: asyncio.TaskGroup | None = None

    def put(
        self,
        keys: QueueKeys,
        index: int,
        task: Task,
        task_id: str,
        msg: bytes,
        prepared: Prepared | None,
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

    def spawn_single(self, index: int, prepared: Prepared) -> None:
        """Write a task that cannot go in a batch (unique, scheduled, grouped) on its own."""
        self._spawn(self._single(index, prepared))

    async def _send(self, batch: _Batch) -> None:
        client, results = self._client, self._results
        try:
            await client._broker.register_queue(batch.keys.name)
            fresh = all(p is None or p.generated_id for p in batch.prepared)
            written_ns = client._clock.time_ns()  # the batch's pending_since
            codes = await client._broker.enqueue_batch(
                batch.keys, batch.task_ids, batch.messages, written_ns, fresh_ids=fresh
            )
        except Exception as error:
            for index, task in zip(batch.indexes, batch.tasks, strict=True):
                results[index] = EnqueueResult(task=task, error=error)
            return
        # Each TaskInfo says when its batch was written, as a single enqueue's does.
        describe = partial(client._describe_like, self._shared, written_ns)
        written_at = written_ns / 1e9
        for position, index in enumerate(batch.indexes):
            prepared = batch.prepared[position]
            if prepared is not None:
                prepared.process_at = written_at
                results[index] = client._result(prepared, codes[position])
            else:
                # A generated id is never taken: ID_CONFLICT means a re-sent call that
                # had already succeeded, so every code is a success here (unconfirmed
                # by the replicas, when the client waits for them and they did not).
                task = batch.tasks[position]
                task_id = batch.task_ids[position]
                if codes[position] in (UNCONFIRMED, ID_CONFLICT_UNCONFIRMED):
                    unconfirmed = client._not_replicated(describe(task, task_id))
                    results[index] = EnqueueResult(task=task, error=unconfirmed)
                else:
                    results[index] = EnqueueResult._stored(task, task_id, describe)

    async def _single(self, index: int, prepared: Prepared) -> None:
        client = self._client
        try:
            await client._broker.register_queue(prepared.opts.queue)
            self._results[index] = client._result(prepared, await client._write_one(prepared))
        except Exception as error:
            self._results[index] = EnqueueResult(task=prepared.task, error=error)

    def _spawn(self, coro: Coroutine[None, None, None]) -> asyncio.Task[None]:
        assert self.group is not None, "the writer runs inside enqueue_many's TaskGroup"
        return self.group.create_task(coro)
