"""The dispatcher: takes concurrency slots, dequeues tasks, and runs each handler.

Slots are taken *before* dequeuing, so no task is leased unless a slot waits for
it. When several slots are free, one script call takes several tasks of a queue.
Every handler runs as its own child task (so context variables stay its own),
stopped at the task's deadline by ``Deadlines``; whatever it raises is caught there
and routed by the finisher, so one bad handler never disturbs another. A plain
success is handed to the finisher's grouped acknowledgements, and the task ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from asyncq._aio import wait_unless
from asyncq._broker.keys import QueueKeys
from asyncq._broker.message import decode_stored
from asyncq._broker.rdb import Broker
from asyncq._cluster.router import QueueRouter
from asyncq._proto.asynq_pb2 import TaskMessage
from asyncq._worker.config import ServerConfig
from asyncq._worker.deadlines import Deadlines
from asyncq._worker.finisher import Finisher
from asyncq._worker.jobs import Job, JobBook, Slots, StopReason
from asyncq._worker.waker import WakeUpDemand
from asyncq._worker.watches import MAX_WATCHED_QUEUES, ArmedWatch, Watches
from asyncq.errors import (
    TaskCanceledError,
    TaskDeadlineExceededError,
    TaskDecodeError,
)
from asyncq.servemux import ServeMux
from asyncq.task import Task

__all__ = ["Dispatcher", "compute_deadline"]

DEFAULT_TIMEOUT = 1800
MAX_BATCH = 64  # tasks taken by one dequeue call at most
# Dequeues on their way at once. With one, the worker sat idle while Redis ran it (half
# of a busy worker's time); with two, each for half of the slots, Redis runs one while
# the worker starts the other's handlers and acknowledges them.
MAX_FETCHES = 2
LATEST_DEADLINE = 253402300799.0  # 9999-12-31T23:59:59Z, the last second a datetime holds
ERROR_BACKOFF = 1.0  # pause after Redis stayed unreachable, so an outage is not a busy loop
# A dequeue still unanswered after this long is left to finish on its own while the other
# queues are served: on a cluster, one queue's master may be failing over or its slot
# moving to another master, and the connector waits that out (up to its retry_deadline).
# A dequeue normally answers within milliseconds; a busy machine must not reach this, as
# a late dequeue changes the order in which queues are served.
LATE_AFTER = 2.0
FORGET_WITHIN = 2.0  # the most a stop spends deleting its last dequeue records


def compute_deadline(msg: TaskMessage, now: float) -> float:
    """When the handler must be done: asynq's rule, the earlier of timeout and deadline
    (kept below year 9999, so absurd values from any client cannot break the worker)."""
    if msg.timeout and msg.deadline:
        deadline = float(min(int(now) + msg.timeout, msg.deadline))
    elif msg.timeout:
        deadline = now + msg.timeout
    elif msg.deadline:
        deadline = float(msg.deadline)
    else:
        deadline = now + DEFAULT_TIMEOUT
    return min(deadline, LATEST_DEADLINE)


Taken = list[tuple[QueueKeys, str, bytes]]


class _Fetched(NamedTuple):
    """What a dequeue round brought: the tasks taken, and whether a queue failed."""

    found: Taken
    failed: bool


class _Fetch(NamedTuple):
    """A dequeue on its way: its call, the slots it holds, and the lease it writes."""

    call: asyncio.Future[_Fetched]
    wanted: int
    lease_expiry: int


class _Late(Exception):
    """A queue's dequeue did not answer in time and goes on in the background."""


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Dispatcher:
    """Feeds handlers from the queues, within the concurrency limit."""

    def __init__(
        self,
        broker: Broker,
        router: QueueRouter,
        handler: Callable[[Task], Awaitable[None]],
        config: ServerConfig,
        jobs: JobBook,
        finisher: Finisher,
    ) -> None:
        self.broker = broker
        self.router = router
        self.handler = handler
        # A plain ServeMux is asked for each type's handler, which is then awaited
        # directly: one coroutine less per task than awaiting the mux itself.
        self._resolve: Callable[[str], Callable[[Task], Awaitable[None]]] | None = None
        if isinstance(handler, ServeMux) and type(handler).__call__ is ServeMux.__call__:
            self._resolve = handler.resolve
        self.config = config
        self.clock = config.clock
        self.logger = config.logger
        self.jobs = jobs
        self.finisher = finisher
        self.slots = Slots(config.concurrency, on_free=self._slot_freed)
        # Each dequeue asks for half of the slots, so that two can be on their way.
        self._per_fetch = max(1, min(MAX_BATCH, config.concurrency // MAX_FETCHES))
        self.deadlines = Deadlines(jobs)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._idle_waiter: asyncio.Future[None] | None = None
        self.watches = Watches(broker, self.logger)
        self.wake_ups = WakeUpDemand()  # the waker subscribes while this asks for it
        self._watch_next = True  # False for one wait after a watch woke for a paused queue
        # The queues the next dequeue looks at, when only watches that took nothing were
        # woken (the others' queues were just seen empty); None: every queue.
        self._look_next: list[str] | None = None
        self._watch_stop: asyncio.Future[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        # Only where queues live on different masters can one be slow while others are not.
        self._may_be_late = broker.connector.is_cluster and len(router.queues) > 1
        self._late: dict[asyncio.Task[None], str] = {}  # dequeues landing late, and queues
        self._hurried = asyncio.Event()  # a stop that waits for no late dequeue

    def start(self, group: asyncio.TaskGroup) -> None:
        """Start the dequeue loop; handlers become children of ``group``."""
        self._group = group
        self._task = group.create_task(self._loop(), name="asyncq-dispatcher")

    @property
    def loop_task(self) -> asyncio.Task[None]:
        """The dequeue loop's task (to watch for a crash)."""
        assert self._task is not None, "the dispatcher was not started"
        return self._task

    def wake(self) -> None:
        """Look at the queues now instead of at the next poll."""
        self._wake.set()
        if self._idle_waiter is not None:
            _resolve(self._idle_waiter)

    def _slot_freed(self) -> None:
        if self._idle_waiter is not None:
            _resolve(self._idle_waiter)

    async def _idle(self, seconds: float | None) -> None:
        """Sleep until ``wake``, a freed slot, ``request_stop`` or ``seconds`` pass.

        One future and one timer: a wake-up resumes the loop in a single turn.
        """
        if self._stop.is_set() or (seconds is not None and self._wake.is_set()):
            return
        loop = asyncio.get_running_loop()
        waiter = self._idle_waiter = loop.create_future()
        timer = None
        if seconds is not None:
            timer = loop.call_later(seconds, _resolve, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._idle_waiter = None

    def request_stop(self) -> None:
        """Take no more tasks from now on (a dequeue in flight completes)."""
        self._stop.set()
        self.wake()
        if self._watch_stop is not None:
            _resolve(self._watch_stop)

    async def stop_fetching(self) -> None:
        """Take no more tasks and wait for the loop to end; running handlers go on.

        A loop that died of an error is not re-raised here: the server reports it.
        """
        self.request_stop()
        if self._task is not None:
            # Asked to hurry, the loop is not waited for: a call of it may be waiting out
            # a failing node. Torn down, what its dequeues took waits for the recoverer.
            await wait_unless(self._hurried, [self._task])
            self._task.cancel()  # nothing to do if it has ended
            await asyncio.wait({self._task})
        try:
            async with asyncio.timeout(FORGET_WITHIN):
                await self.broker.forget_dequeues()
        except Exception as error:  # they expire on their own within a minute
            self.logger.debug("could not delete the last dequeue records: %s", error)

    @property
    def fetching(self) -> bool:
        """True until the dequeue loop has ended (a dequeue in flight at a stop completes)."""
        return self._task is not None and not self._task.done()

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        try:
            await self._fetch_until_stopped()
        finally:
            self.watches.close()

    async def _fetch_until_stopped(self) -> None:
        fetches: list[_Fetch] = []  # dequeues on their way, oldest first
        try:
            await self._fetch_while_running(fetches)
            while fetches:  # a dequeue on its way at a stop completes, and its tasks run
                await asyncio.wait({fetches[0].call})
                await self._fetched(fetches.pop(0))
            await self._wait_for_late_dequeues()
        except BaseException:
            # Torn down (not stopped): as when one dequeue was awaited here, the ones on
            # their way are dropped, and what they took waits for the recoverer.
            calls: list[asyncio.Future[Any]] = [fetch.call for fetch in fetches]
            calls += self._late
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            raise

    async def _wait_for_late_dequeues(self) -> None:
        """At a stop, wait for the dequeues landing late (their tasks go back to their
        queues), unless told to hurry: then they are dropped, and whatever they took
        comes back through the recoverer once its lease runs out."""
        while self._late and not self._hurried.is_set():
            await wait_unless(self._hurried, self._late)
        landers = list(self._late)
        for lander in landers:
            lander.cancel()
        await asyncio.gather(*landers, return_exceptions=True)

    @property
    def late_queues(self) -> list[str]:
        """The queues whose dequeue is landing late (see ``LATE_AFTER``): diagnostics."""
        return list(self._late.values())

    def hurry(self) -> None:
        """Stop waiting for late dequeues at the stop (see ``_wait_for_late_dequeues``)."""
        self._hurried.set()

    async def _fetch_while_running(self, fetches: list[_Fetch]) -> None:
        """Keep up to two dequeues on their way while slots are free, launch what each
        took in order, and wait for tasks when the queues are empty, until a stop."""
        emptied = False  # the last look found every queue empty: no need to look again
        while not self._stop.is_set():
            while not emptied and self.slots.free and len(fetches) < MAX_FETCHES:
                fetches.append(self._start_fetch())
            if not fetches:
                if self.slots.free == 0:
                    await self._idle(None)  # until a slot frees up (or a stop)
                elif emptied:
                    emptied = await self._wait_for_tasks()
                continue
            oldest = fetches[0]
            if not oldest.call.done():
                # A freed slot may start the second dequeue before this one is back.
                await self._idle(None)
                continue
            fetches.pop(0)
            emptied = await self._fetched(oldest)  # the latest look decides

    def _start_fetch(self) -> _Fetch:
        """Take slots and send a dequeue for them; its reply wakes the loop."""
        wanted = self.slots.take(self._per_fetch)
        # Cleared before looking, so a wake-up that arrives meanwhile is not lost.
        self._wake.clear()
        lease_expiry = int(self.clock.time() + self.config.lease_duration)
        only, self._look_next = self._look_next, None
        call = asyncio.ensure_future(self._fetch(wanted, lease_expiry, only))
        call.add_done_callback(lambda _: self._slot_freed())  # wakes the loop, as a slot does
        return _Fetch(call, wanted, lease_expiry)

    async def _fetched(self, fetch: _Fetch) -> bool:
        """Launch what a dequeue took and give back the slots it did not fill; returns
        True when it emptied every queue (the next step is a wait, not a dequeue)."""
        found, failed = fetch.call.result()
        wanted = fetch.wanted
        if len(found) < wanted:
            self.slots.give(wanted - len(found))
        if found:
            # Tasks came since a watch woke for a paused queue: that queue may run again
            # now, so the next wait may watch (a loop that keeps finding work cannot spin).
            self._watch_next = True
            await self._launch_all(found, float(fetch.lease_expiry))
        if failed and not found:
            # Every queue failed (Redis down, busy or out of memory): pause instead of
            # spinning, then try again. Nothing taken so far is dropped. Only a stop ends
            # the pause: the other dequeue failing too would otherwise halve it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), ERROR_BACKOFF)
            return False
        # Every queue was emptied: looking again at once would only cost an empty round
        # trip, and hold up the handlers just started. A new task wakes the loop (a
        # wake-up during the dequeue is kept), and the poll finds the rest.
        return len(found) < wanted and not failed

    async def _wait_for_tasks(self) -> bool:
        """Every queue is empty: wait for a new task, in Redis when possible (see
        ``watches``), else for a wake-up message or the poll interval.

        Returns True when the watches' dequeues left every queue empty (each took fewer
        tasks than it asked for), so the next step is another wait, not a dequeue.
        """
        interval = self.config.task_check_interval
        queues = self.router.queues
        # One free slot is enough: watches share the free slots, and one given none
        # only wakes the worker (see ``watches``).
        can_watch = (
            self.watches.available and len(queues) <= MAX_WATCHED_QUEUES and self.slots.free >= 1
        )
        if not (can_watch and self._watch_next) or self._stop.is_set():
            self._watch_next = True
            with self.wake_ups.waiting():
                await self._idle(interval)
            return False
        # Wake-ups are not needed while watching, as a wait on a list that already holds
        # a task ends at once; the waker lets its subscription go when only watches wait.
        self._wake.clear()
        wanted = self.slots.take(MAX_BATCH)
        # The dequeue runs when a task lands, up to ``interval`` from now: the lease it
        # writes covers the wait, so a task taken late still holds a full lease.
        lease_expiry = int(self.clock.time() + self.config.lease_duration + interval)
        self._watch_stop = asyncio.get_running_loop().create_future()
        try:
            shares = self.router.watch_shares(wanted, skipping=self.late_queues)
            launched, emptied = await self._watch(shares, interval, lease_expiry)
        finally:
            self._watch_stop = None
        if launched < wanted:
            self.slots.give(wanted - launched)
        return emptied

    async def _watch(
        self, shares: list[tuple[str, int]], block: float, lease_expiry: int
    ) -> tuple[int, bool]:
        """Arm the watches, launch what the first to answer took, release and collect the
        others; returns how many tasks were launched (corrupt ones give their slot back)
        and whether every queue was left empty. When only watches that took nothing were
        woken, the next dequeue looks at their queues alone."""
        open_within = LATE_AFTER if self._may_be_late else None
        armed = await self.watches.arm(shares, block, lease_expiry, open_within)
        if armed is None:  # no watch could be opened: wait the ordinary way this time
            with self.wake_ups.waiting():
                await self._idle(block)
            return 0, False
        assert self._watch_stop is not None
        await asyncio.wait(
            [*(one.dequeued for one in armed), self._watch_stop],
            return_when=asyncio.FIRST_COMPLETED,
        )
        answered = [one for one in armed if one.dequeued.done()]
        waiting = [one for one in armed if not one.dequeued.done()]
        woken: list[str] = []  # queues whose watch took nothing, woken by a task
        launched, emptied = await self._collect(answered, lease_expiry, woken)
        self.watches.release(waiting)
        released = await self._released_in_time(waiting, lease_expiry)
        launched_later, emptied_later = await self._collect(released, lease_expiry, woken)
        emptied = emptied and emptied_later and len(armed) == len(shares) and released == waiting
        if emptied and woken:  # every other queue was seen empty: look at these alone
            self._look_next = woken
            return launched + launched_later, False
        return launched + launched_later, emptied

    async def _released_in_time(
        self, released: list[ArmedWatch], lease_expiry: int
    ) -> list[ArmedWatch]:
        """The released watches whose dequeue answers within ``LATE_AFTER``; the others
        (a master frozen or failing over) are left to land on their own, as a late
        dequeue is, so that the other queues are served meanwhile."""
        if not released or not self._may_be_late:
            return released
        await asyncio.wait([one.dequeued for one in released], timeout=LATE_AFTER)
        for one in released:
            if not one.dequeued.done():
                taken = asyncio.ensure_future(self._taken_by(one))
                self._land_later(one.watch.keys, taken, lease_expiry)
        return [one for one in released if one.dequeued.done()]

    async def _taken_by(self, armed: ArmedWatch) -> list[tuple[str, bytes]]:
        return (await self.watches.collect(armed)).taken

    async def _collect(
        self, armed: list[ArmedWatch], lease_expiry: int, woken: list[str]
    ) -> tuple[int, bool]:
        """Launch what the watches took; returns how many, and whether each watch that
        asked for tasks took fewer than it asked for (its queue was emptied). A watch
        that asked for none and was woken by a task adds its queue to ``woken``."""
        found: list[tuple[QueueKeys, str, bytes]] = []
        emptied = True
        for one in armed:
            taken, wait_plainly, answered, was_woken = await self.watches.collect(one)
            if wait_plainly:
                self._watch_next = False  # so a paused queue cannot make the loop spin
            if one.count == 0 and was_woken:
                woken.append(one.watch.keys.name)
            emptied = emptied and answered and (len(taken) < one.count or one.count == 0)
            found += [(one.watch.keys, task_id, raw) for task_id, raw in taken]
        if found:
            expiry = await self._lease_after_the_wait(found, lease_expiry)
            await self._launch_all(found, float(expiry))
        return len(found), emptied

    async def _lease_after_the_wait(
        self, found: list[tuple[QueueKeys, str, bytes]], lease_expiry: int
    ) -> int:
        """The lease of tasks a watch (or a late dequeue) took. Normally the one written
        at arming; if the clock moved on further than the wait can explain (a suspended
        machine, a test's clock, a dequeue that waited out a failover), the leases are
        extended first, as the heartbeater would. (A released watch may be waited for
        ``LATE_AFTER`` after its wait ended: that much is explained, and extending then
        would send a call through redis-py, which may be busy with a frozen node.)"""
        now = self.clock.time()
        if lease_expiry - now >= self.config.lease_duration - LATE_AFTER - 1:
            return lease_expiry
        expiry = int(now + self.config.lease_duration)
        by_queue: dict[str, tuple[QueueKeys, list[str]]] = {}
        for keys, task_id, _ in found:
            by_queue.setdefault(keys.name, (keys, []))[1].append(task_id)
        try:
            for keys, task_ids in by_queue.values():
                await self.broker.extend_leases(keys, task_ids, expiry)
        except Exception as error:  # the heartbeater tries again; the recoverer is last
            self.logger.warning("could not extend the leases of tasks just taken: %s", error)
            return lease_expiry
        return expiry

    async def _fetch(
        self, wanted: int, lease_expiry: int, only: list[str] | None = None
    ) -> _Fetched:
        """Dequeue up to ``wanted`` tasks, trying the queues (``only`` these, if given)
        in the router's order.

        A queue that fails is logged and skipped, so the tasks already taken from other
        queues (now leased) still run; so is a queue whose dequeue is late (see
        ``LATE_AFTER``), and it is not asked again until that dequeue has landed.
        """
        found: Taken = []
        failed = False
        order = self.router.order()
        for queue in order if only is None else [q for q in order if q in only]:
            if self._late and queue in self._late.values():  # looked at for each queue, as
                continue  # another dequeue may have gone late on it meanwhile
            keys = self.broker.keys(queue)
            try:
                taken = await self._dequeue(keys, wanted - len(found), lease_expiry)
            except _Late:
                continue
            except Exception as error:
                failed = True
                self.logger.error("dequeue from %s failed: %s", queue, error)
                continue
            found += [(keys, task_id, raw) for task_id, raw in taken]
            if len(found) >= wanted:
                break
        return _Fetched(found, failed)

    async def _dequeue(
        self, keys: QueueKeys, count: int, lease_expiry: int
    ) -> list[tuple[str, bytes]]:
        """One queue's dequeue; raises ``_Late`` when it is left to land on its own."""
        if not self._may_be_late:
            return await self.broker.dequeue(keys, count, lease_expiry)
        call = asyncio.ensure_future(self.broker.dequeue(keys, count, lease_expiry))
        try:
            await asyncio.wait({call}, timeout=LATE_AFTER)
        except BaseException:  # torn down: the call goes with this fetch
            call.cancel()
            raise
        if call.done():
            return call.result()
        self._land_later(keys, call, lease_expiry)
        raise _Late

    def _land_later(
        self, keys: QueueKeys, call: asyncio.Future[list[tuple[str, bytes]]], lease_expiry: int
    ) -> None:
        """Leave a late dequeue (or watch) to land on its own; its queue is skipped until
        then."""
        assert self._group is not None
        lander = self._group.create_task(self._land(keys, call, lease_expiry))
        self._late[lander] = keys.name
        lander.add_done_callback(self._late.pop)

    async def _land(
        self, keys: QueueKeys, call: asyncio.Future[list[tuple[str, bytes]]], lease_expiry: int
    ) -> None:
        """Run what a late dequeue took in the slots free when it lands; put the rest back
        at the head of the queue, in order. (Its slots went back at once, so that the other
        queues were served meanwhile, and may be taken now.) After a stop, nothing runs."""
        try:
            taken = await call
        except Exception as error:
            self.logger.error("dequeue from %s failed: %s", keys.name, error)
            return
        room = 0 if self._stop.is_set() else self.slots.take(len(taken))
        if room:
            found = [(keys, task_id, raw) for task_id, raw in taken[:room]]
            expiry = await self._lease_after_the_wait(found, lease_expiry)
            await self._launch_all(found, float(expiry))
        # Each goes to the head, so the newest goes first and the oldest ends up first.
        for task_id, _ in reversed(taken[room:]):
            try:
                await self.broker.requeue(keys, task_id, self.clock.time_ns())
            except Exception as error:  # its lease runs out and the recoverer brings it back
                self.logger.warning("could not put back task %s: %s", task_id, error)

    async def _launch_all(
        self, found: list[tuple[QueueKeys, str, bytes]], lease_expiry: float
    ) -> None:
        """Start a handler for each task taken (a corrupt one is archived instead)."""
        now = self.clock.time()  # one reading for the batch: it was taken at one moment
        for keys, task_id, raw in found:
            try:
                job = self._job(keys, task_id, raw, now, lease_expiry)
            except (TaskDecodeError, ValueError, OverflowError, OSError) as error:
                await self._archive_corrupt(keys, task_id, raw, error)
                self.slots.give(1)
                now = self.clock.time()
                continue
            self.jobs.add(job)
            self.deadlines.watch(job, max(job.deadline - now, 0.0))
            assert self._group is not None
            job.runner = self._group.create_task(self._run(job), name=f"asyncq-task-{job.id}")
        # Let the handlers begin before this loop's next call to Redis: on a busy machine
        # a send can wait for a core, and a task should not wait behind it.
        await asyncio.sleep(0)

    def _job(
        self, keys: QueueKeys, task_id: str, raw: bytes, now: float, lease_expiry: float
    ) -> Job:
        """The job of one dequeued task; raises if its message cannot be read."""
        msg = decode_stored(raw, task_id, keys.task(task_id))
        deadline = compute_deadline(msg, now)
        # Most tasks carry no headers: skip copying an empty map (a third of the cost).
        headers = dict(msg.headers) if msg.headers else None
        write_result = self.broker.write_result
        task = Task._dequeued(
            msg.type,
            msg.payload,
            headers,
            (msg.id, msg.queue, msg.retried, msg.retry),
            deadline,
            lambda data: write_result(keys, msg.id, data),
        )
        return Job(
            id=msg.id,
            keys=keys,
            msg=msg,
            task=task,
            started=now,
            deadline=deadline,
            lease_expiry=lease_expiry,
        )

    async def _archive_corrupt(
        self, keys: QueueKeys, task_id: str, raw: bytes, error: Exception
    ) -> None:
        # The bytes are kept as they are: nothing is lost, and an operator can look.
        self.logger.error("archiving task %s: %s", task_id, error)
        try:
            await self.broker.archive(keys, task_id, raw, now=self.clock.time())
        except Exception as write_error:
            self.logger.error("could not archive corrupt task %s: %s", task_id, write_error)

    # -- one task ----------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        written_elsewhere = False
        try:
            try:
                error = await self._call_handler(job)
            finally:
                # The slot limits running handlers: it is free as soon as the handler is
                # done, so the next task is dequeued while this one's outcome is written.
                self.slots.give(1)
            if error is None and job.stop_reason is None and job.msg.retention == 0:
                # The common case: acknowledged in a group, and the finisher takes the job
                # out of the book once that is written. This task has nothing left to do.
                self.finisher.acknowledge(job)
                written_elsewhere = True
            else:
                await self._finish(job, error)
        except Exception:
            # A bug or an unexpected reply while writing: leave the task to the recoverer
            # rather than let one task bring the whole server down.
            self.logger.exception("could not record the outcome of task %s", job.id)
        finally:
            if not written_elsewhere:
                self.jobs.remove(job)

    async def _finish(self, job: Job, error: BaseException | None) -> None:
        """Write the outcome of a handler that failed, was stopped, or keeps its task."""
        if job.stop_reason is StopReason.SHUTDOWN:
            await self.finisher.requeue(job)
        elif job.stop_reason is StopReason.CANCELED:
            await self.finisher.fail(job, TaskCanceledError(f"task {job.id} was canceled"))
        elif job.stop_reason is not None and job.stop_reason is not StopReason.DEADLINE:
            self.logger.warning("task %s stopped (%s)", job.id, job.stop_reason.value)
        elif error is None:
            await self.finisher.succeed(job)
        else:
            await self.finisher.fail(job, error)

    async def _call_handler(self, job: Job) -> BaseException | None:
        """Await the handler; return what it raised, if anything.

        The deadline is enforced by ``Deadlines``, which stops the job (cancels this
        task) with ``StopReason.DEADLINE``; every stop is undone here once the handler
        has ended, so the outcome can still be written.
        """
        outcome: BaseException | None = None
        task, resolve = job.task, self._resolve
        try:
            if job.deadline <= self.clock.time():
                # Its deadline passed while it waited: asynq does not call the handler then,
                # and neither does asyncq (not even the part before its first await).
                outcome = TaskDeadlineExceededError(
                    f"task {job.id} reached its deadline before it could start"
                )
            else:
                # Typed to return None, but a handler may return anything: it is looked at.
                handler: Callable[[Task], Awaitable[object]] = (
                    self.handler if resolve is None else resolve(task.type)
                )
                returned = await handler(task)
                if isinstance(returned, BaseException):
                    # asynq's handlers return their error: one ported that way must fail
                    # its task, not have it deleted as done.
                    outcome = returned
        except asyncio.CancelledError as error:
            if job.stop_reason is None:
                current = asyncio.current_task()
                if current is not None and current.cancelling() == 0:
                    # Raised inside the handler (an inner task it awaited was cancelled):
                    # an ordinary failure, not a request to stop.
                    return error
                raise  # the server itself is being torn down
        except KeyboardInterrupt:
            raise  # the process is being stopped by hand
        except BaseException as error:
            # Whatever a handler raises fails its task, not the server: sys.exit(), a test
            # framework's Failed or Skipped, a library's own BaseException subclass.
            outcome = error
        finally:
            job.in_handler = False
            Deadlines.release(job)
            task._result_writer = None  # asynq refuses results once the handler is done
        reason = job.stop_reason
        if reason is None:
            return outcome
        # The stop cancelled this task once: take that back, so the outcome is written.
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            current.uncancel()
        if reason is StopReason.DEADLINE and outcome is None:
            # Cancelled at the deadline (or returned late, ignoring the cancellation).
            allowed = max(job.deadline - job.started, 0.0)
            return TaskDeadlineExceededError(
                f"task {job.id} ran past its deadline ({allowed:.1f}s) and was cancelled"
            )
        return outcome
