"""Writes the final state of each task: done, completed, retry, archived or requeued.

asynq's rules, in one place: success deletes the task (or keeps it as completed
with retention); a failure retries with backoff until retries are used up, then
archives; ``SkipRetry`` archives at once; ``RevokeTask`` drops the task. A write
that fails is tried again until the task's lease runs out (asynq's syncer); after
that the recoverer owns the task and this worker writes nothing.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta

from redis.exceptions import RedisError

from asyncq._broker.keys import QueueKeys
from asyncq._broker.rdb import Broker
from asyncq._coalesce import Coalescer
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq._worker.config import ServerConfig, default_retry_delay
from asyncq._worker.jobs import Job
from asyncq.errors import ConnectionFailedError, RevokeTask, SkipRetry
from asyncq.task import Task

__all__ = ["Finisher", "error_text", "failed_message"]


def error_text(error: BaseException) -> str:
    """The error message stored with a failed task (``error_msg``)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def failed_message(msg: TaskMessage, error: BaseException, now: float, *, count: bool) -> bytes:
    """A copy of ``msg`` recording a failure; ``count`` adds one to ``retried``."""
    updated = TaskMessage()
    updated.CopyFrom(msg)
    if count:
        updated.retried += 1
    updated.error_msg = error_text(error)
    updated.last_failed_at = int(now)
    return updated.SerializeToString()


class Finisher:
    """Routes a handler's outcome to the broker verb asynq would use."""

    def __init__(self, broker: Broker, config: ServerConfig) -> None:
        self.broker = broker
        self.config = config
        self.clock = config.clock
        self.logger = config.logger
        self._ack_groups: dict[str, Coalescer[tuple[str, str], bool]] = {}

    def _acks(self, keys: QueueKeys) -> Coalescer[tuple[str, str], bool]:
        """Successes of one queue, acknowledged in groups: one script call for all the
        tasks that finished while the previous group was on its way."""
        acks = self._ack_groups.get(keys.name)
        if acks is None:

            async def flush(tasks: list[tuple[str, str]]) -> list[bool]:
                return await self.broker.done_many(keys, tasks, self.clock.time())

            acks = self._ack_groups[keys.name] = Coalescer(flush)
        return acks

    async def succeed(self, job: Job) -> None:
        """The handler returned: delete the task, or keep it as completed with retention."""
        msg, keys = job.msg, job.keys
        if msg.retention > 0:

            async def complete() -> bool:
                now = self.clock.time()
                done = TaskMessage()
                done.CopyFrom(msg)
                done.completed_at = int(now)
                expiry = int(now) + msg.retention
                return await self.broker.mark_as_complete(
                    keys, msg.id, done.SerializeToString(), msg.unique_key, now, expiry
                )

            await self._write(job, "completed", complete)
        else:
            acks = self._acks(keys)
            await self._write(job, "done", lambda: acks.submit((msg.id, msg.unique_key)))

    async def fail(self, job: Job, error: BaseException) -> None:
        """The handler raised (or timed out): retry, archive or drop, as asynq decides."""
        await self._report(job, error)
        if isinstance(error, RevokeTask):
            await self._write(
                job,
                "revoked",
                lambda: self.broker.done(job.keys, job.id, job.msg.unique_key, self.clock.time()),
            )
            return
        await self.retry_or_archive(job.keys, job.msg, error, job=job)

    async def retry_or_archive(
        self,
        keys: QueueKeys,
        msg: TaskMessage,
        error: BaseException,
        *,
        job: Job | None = None,
        recover_cutoff: int | None = None,
    ) -> bool:
        """Move a failed task to retry or archive. Without ``job`` this is the recoverer's
        call for a task whose worker is gone: it is moved only if it is still active with
        no lease, or a lease that ended by ``recover_cutoff``.
        """
        counts = self._counts_as_failure(error)
        if counts and (msg.retried >= msg.retry or isinstance(error, SkipRetry)):

            async def archive() -> bool:
                now = self.clock.time()
                data = failed_message(msg, error, now, count=False)
                return await self.broker.archive(
                    keys, msg.id, data, now=now, recover_cutoff=recover_cutoff
                )

            return await self._write(job, "archived", archive) if job else await archive()

        delay = self._retry_delay(msg, error)

        async def retry() -> bool:
            now = self.clock.time()
            data = failed_message(msg, error, now, count=counts)
            return await self.broker.retry(
                keys,
                msg.id,
                data,
                int(now + delay),
                is_failure=counts,
                now=now,
                recover_cutoff=recover_cutoff,
            )

        return await self._write(job, "retry", retry) if job else await retry()

    async def requeue(self, job: Job) -> None:
        """Shutdown cut the handler short: put the task back at the head of pending."""
        await self._write(
            job, "requeued", lambda: self.broker.requeue(job.keys, job.id, self.clock.time_ns())
        )

    # -- helpers -----------------------------------------------------------------------------

    def _counts_as_failure(self, error: BaseException) -> bool:
        try:
            return bool(self.config.is_failure(error))
        except Exception:
            self.logger.exception("is_failure raised; counting the error as a failure")
            return True

    def _retry_delay(self, msg: TaskMessage, error: BaseException) -> float:
        task = Task.from_bytes(msg.type, msg.payload, dict(msg.headers))
        try:
            delay = self.config.retry_delay(msg.retried, error, task)
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
            if seconds < 0:
                raise ValueError(f"negative retry delay {seconds}")
            return seconds
        except Exception:
            self.logger.exception("retry_delay failed; using the default backoff")
            return default_retry_delay(msg.retried, error, task)

    async def _report(self, job: Job, error: BaseException) -> None:
        handler = self.config.error_handler
        if handler is None:
            return
        try:
            result = handler(job.task, error)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.logger.exception("error_handler raised while reporting task %s", job.id)

    async def _write(self, job: Job | None, what: str, op: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``op`` until it succeeds or the job's lease runs out."""
        delay = 0.05
        while True:
            if job is not None and not job.lease_valid(self.clock.time()):
                self.logger.warning(
                    "lease of task %s ran out before it could be marked %s; "
                    "the recoverer will take it back",
                    job.id,
                    what,
                )
                return False
            try:
                written = await op()
            except (ConnectionFailedError, RedisError, OSError) as error:
                if job is None:
                    raise
                self.logger.warning("could not mark task %s %s (%s); retrying", job.id, what, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if not written:
                self.logger.warning(
                    "task %s was no longer held by this worker when it was to be marked %s",
                    job.id if job else "?",
                    what,
                )
            return written
