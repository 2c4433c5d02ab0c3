"""Writes the final state of each task: done, completed, retry, archived or requeued.

asynq's rules, in one place: success deletes the task (or keeps it as completed
with retention); a failure retries with backoff until retries are used up, then
archives; ``SkipRetry`` archives at once; ``RevokeTask`` drops the task. A write
that fails is tried again until the task's lease runs out (asynq's syncer); after
that the recoverer owns the task and this worker writes nothing.

Plain successes, nearly all the writes of a busy worker, are acknowledged in groups
per queue by a sender task, and no handler's task waits for its own: the job leaves
the book once its group is written (or given up), so a shutdown still waits for it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta

from redis.exceptions import RedisError

from asyncq._broker.keys import QueueKeys
from asyncq._broker.rdb import Broker
from asyncq._options import MAX_DURATION
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq._worker.config import ServerConfig, default_retry_delay
from asyncq._worker.jobs import Job, JobBook
from asyncq.errors import ConnectionFailedError, RevokeTask, SkipRetry
from asyncq.task import Task

__all__ = ["Finisher", "error_text", "failed_message"]

MAX_ACK_GROUP = 512  # successes acknowledged by one script call at most
FIRST_RETRY_DELAY = 0.05  # a failed write is tried again after this, doubling...
MAX_RETRY_DELAY = 1.0  # ... up to this


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

    def __init__(self, broker: Broker, config: ServerConfig, jobs: JobBook) -> None:
        self.broker = broker
        self.config = config
        self.clock = config.clock
        self.logger = config.logger
        self.jobs = jobs  # acknowledged jobs leave it once written
        self._acks: dict[str, _Acks] = {}
        self._group: asyncio.TaskGroup | None = None

    def start(self, group: asyncio.TaskGroup) -> None:
        """Run the senders of grouped acknowledgements as children of ``group``."""
        self._group = group

    async def succeed(self, job: Job) -> None:
        """The handler returned: keep the task as completed, as its retention asks.

        A task without retention goes through ``acknowledge`` instead."""
        msg, keys = job.msg, job.keys

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

    def acknowledge(self, job: Job) -> None:
        """The handler returned and the task is not kept: delete it (asynq's Done) in a
        group with the other successes of its queue. Nothing waits for the write: the
        job leaves the book once it is written, or once its lease has run out."""
        acks = self._acks.get(job.keys.name)
        if acks is None:
            acks = self._acks[job.keys.name] = _Acks(job.keys)
        acks.waiting.append(job)
        if acks.sender is None:
            # One sender per queue, started by the first success when none runs: the
            # successes that come while its call is on its way make the next group.
            assert self._group is not None, "the finisher was not started"
            sender = self._send_acks(acks)
            try:
                acks.sender = self._group.create_task(sender, name=f"asyncq-acks-{job.keys.name}")
            except RuntimeError:  # the server is being torn down: the leases run out
                sender.close()
                self._give_up(acks.waiting, "the server is stopping")
                acks.waiting.clear()

    async def _send_acks(self, acks: _Acks) -> None:
        """Send the waiting successes of one queue in groups until none is left."""
        delay = FIRST_RETRY_DELAY
        group: list[Job] = []
        try:
            while acks.waiting:
                group = acks.waiting[:MAX_ACK_GROUP]
                del acks.waiting[:MAX_ACK_GROUP]
                again = await self._ack_group(acks.keys, group)
                group = []
                if again:
                    acks.waiting[:0] = again
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                else:
                    delay = FIRST_RETRY_DELAY
        finally:
            acks.sender = None
            if group or acks.waiting:  # cancelled with the server: nothing more is written
                self._give_up(group + acks.waiting, "the server stopped")
                acks.waiting.clear()

    async def _ack_group(self, keys: QueueKeys, group: list[Job]) -> list[Job]:
        """Acknowledge ``group``; returns the jobs to try again (the write failed)."""
        now = self.clock.time()
        live = [job for job in group if job.lease_valid(now)]
        if len(live) < len(group):
            self._give_up([job for job in group if job not in live], "its lease ran out")
        if not live:
            return []
        try:
            written = await self.broker.done_many(
                keys, [(job.id, job.msg.unique_key) for job in live], now
            )
        except (ConnectionFailedError, RedisError, OSError) as error:
            self.logger.warning("could not mark task %s done (%s); retrying", _ids(live), error)
            return live
        except Exception:
            # A bug or an unexpected reply: leave the tasks to the recoverer rather than
            # let them bring the whole server down.
            self.logger.exception("could not record the outcome of task %s", _ids(live))
            written = [True] * len(live)
        for job, done in zip(live, written, strict=True):
            if not done:
                self.logger.warning(
                    "task %s was no longer held by this worker when it was to be marked done",
                    job.id,
                )
            self.jobs.remove(job)
        return []

    def _give_up(self, jobs: list[Job], why: str) -> None:
        for job in jobs:
            self.logger.warning(
                "task %s could not be marked done (%s); the recoverer will take it back",
                job.id,
                why,
            )
            self.jobs.remove(job)

    async def fail(self, job: Job, error: BaseException) -> None:
        """The handler raised (or timed out): retry, archive or drop, as asynq decides."""
        await self._report(job, error)
        if isinstance(error, RevokeTask):
            why = error_text(error)
            self.logger.info("task %s revoked by its handler: %s", _named(job.msg), why)
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
        last_try = msg.retried >= msg.retry or isinstance(error, SkipRetry)
        # A task whose worker died on its last try is archived whatever ``is_failure`` says,
        # as asynq's recoverer does: retried without counting, a task that keeps killing its
        # worker would come back for good.
        if last_try and (counts or job is None):
            if job is not None and isinstance(error, SkipRetry):  # the handler's own choice
                self.logger.warning(
                    "task %s failed on try %d of %d and is archived without retrying, as its "
                    "handler asked: %s",
                    _named(msg), msg.retried + 1, msg.retry + 1, error_text(error),
                )  # fmt: skip
                self.logger.debug("task %s failed here:", msg.id, exc_info=error)
            elif job is not None:  # the recoverer says what it does itself
                self.logger.error(
                    "task %s failed on its last try (%d of %d) and is archived: %s",
                    _named(msg), msg.retried + 1, msg.retry + 1, error_text(error),
                    exc_info=error,
                )  # fmt: skip

            async def archive() -> bool:
                now = self.clock.time()
                data = failed_message(msg, error, now, count=False)
                return await self.broker.archive(
                    keys, msg.id, data, now=now, recover_cutoff=recover_cutoff
                )

            return await self._write(job, "archived", archive) if job else await archive()

        delay = self._retry_delay(msg, error)
        if job is not None:
            self.logger.warning(
                "task %s failed (try %d of %d), retry in %.0fs: %s",
                _named(msg), msg.retried + 1, msg.retry + 1, delay, error_text(error),
            )  # fmt: skip
            self.logger.debug("task %s failed here:", msg.id, exc_info=error)

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
        task = Task._stored(msg.type, msg.payload, msg.headers)
        try:
            delay = self.config.retry_delay(msg.retried, error, task)
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
            # Infinite or NaN would break the retry's time (and the recoverer's pass over
            # every queue after it); past a century it breaks date maths elsewhere.
            if not 0 <= seconds <= MAX_DURATION:
                raise ValueError(f"retry delay {seconds} is not between 0 and {MAX_DURATION}s")
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
        delay = FIRST_RETRY_DELAY
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
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            if not written:
                self.logger.warning(
                    "task %s was no longer held by this worker when it was to be marked %s",
                    job.id if job else "?",
                    what,
                )
            return written


def _named(msg: TaskMessage) -> str:
    """A task as log lines name it: its id, type and queue."""
    return f"{msg.id} ({msg.type}, queue {msg.queue})"


def _ids(jobs: list[Job], shown: int = 3) -> str:
    """The ids of a group of jobs for a log line: the first few, and how many more."""
    text = ", ".join(job.id for job in jobs[:shown])
    return f"{text} and {len(jobs) - shown} more" if len(jobs) > shown else text


class _Acks:
    """The successes of one queue waiting to be acknowledged, and the task sending them."""

    __slots__ = ("keys", "sender", "waiting")

    def __init__(self, keys: QueueKeys) -> None:
        self.keys = keys
        self.waiting: list[Job] = []
        self.sender: asyncio.Task[None] | None = None
