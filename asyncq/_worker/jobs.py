"""Running tasks ("jobs"), the concurrency slots they hold, and the book that lists them."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from asyncq._broker.keys import QueueKeys
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq.task import Task

__all__ = ["Job", "JobBook", "Slots", "StopReason"]


class StopReason(enum.Enum):
    """Why the worker cancelled a running handler; decides what is written afterwards."""

    SHUTDOWN = "shutdown"  # requeue the task for another worker
    LEASE_LOST = "lease lost"  # write nothing: the recoverer owns the task now
    ABANDONED = "abandoned"  # ignored cancellation at shutdown: write nothing, lease runs out
    CANCELED = "canceled"  # cancelled on request: a failure, retried as asynq does
    DEADLINE = "deadline exceeded"  # ran past its deadline: a failure, retried as asynq does


@dataclass(eq=False, slots=True)
class Job:
    """One task being processed by this worker, with its lease and deadline."""

    id: str  # the task id (msg.id), read several times per task: kept as a plain field
    keys: QueueKeys
    msg: TaskMessage
    task: Task
    started: float
    deadline: float
    lease_expiry: float
    runner: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    in_handler: bool = field(default=True)
    # The deadline on the event loop's clock, and its timer once it is near (see Deadlines).
    due: float = 0.0
    timer: asyncio.TimerHandle | None = None

    def lease_valid(self, now: float) -> bool:
        """Whether this worker may still write the task's final state."""
        return now < self.lease_expiry

    def abandon(self) -> None:
        """Give up on a handler that ignores cancellation: whatever it does, write nothing."""
        self.stop_reason = StopReason.ABANDONED

    def stop(self, reason: StopReason) -> None:
        """Cancel the handler (once); the reason decides what happens to the task."""
        # Only the handler is cancelled: a final write in progress must complete.
        if self.stop_reason is None and self.runner is not None and self.in_handler:
            self.stop_reason = reason
            self.runner.cancel()


class JobBook:
    """The jobs running in this server, by task id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._empty.clear()

    def remove(self, job: Job) -> None:
        if self._jobs.get(job.id) is job:
            del self._jobs[job.id]
        if not self._jobs:
            self._empty.set()

    async def wait_empty(self) -> None:
        """Wait until no job runs or writes its outcome."""
        await self._empty.wait()

    def get(self, task_id: str) -> Job | None:
        return self._jobs.get(task_id)

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def by_queue(self) -> dict[str, list[Job]]:
        """Running jobs grouped by queue name."""
        grouped: dict[str, list[Job]] = {}
        for job in self._jobs.values():
            grouped.setdefault(job.keys.name, []).append(job)
        return grouped


class Slots:
    """The concurrency limit: a task takes a slot before it is dequeued and gives it
    back when its handler returns."""

    def __init__(self, size: int, on_free: Callable[[], None] = lambda: None) -> None:
        self.size = size
        self.free = size
        self._on_free = on_free
        # ``on_free`` runs when slots come back to a full book, and when this many
        # become free again (the dispatcher's threshold for waiting in watches).
        self.call_when_free = 1

    def take(self, most: int) -> int:
        """Take up to ``most`` free slots at once; returns how many (0 when none is free)."""
        taken = min(self.free, most)
        self.free -= taken
        return taken

    def give(self, count: int = 1) -> None:
        """Return slots (a task finished, or a dequeue found fewer tasks than slots)."""
        before = self.free
        self.free += count
        if self.free > self.size:
            raise RuntimeError("more concurrency slots returned than taken")
        if before == 0 or before < self.call_when_free <= self.free:
            self._on_free()
