"""The server: runs handlers for the tasks of its queues, on one event loop.

``await server.run(mux)`` serves until SIGTERM or SIGINT; ``start`` and
``shutdown`` embed a server in an application that owns its event loop.
Components are wired here and stopped in asynq's order: producers before
consumers, and the heartbeater last, so it can clear the server's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from asyncq._aio import mark_seen, wait_unless
from asyncq._broker.rdb import Broker
from asyncq._broker.servers import clear_server_state
from asyncq._clock import Clock
from asyncq._cluster.connector import Connector
from asyncq._cluster.router import QueueRouter
from asyncq._worker.aggregator import Aggregator
from asyncq._worker.config import (
    ErrorHandler,
    GroupAggregator,
    HealthCheck,
    IsFailure,
    RetryDelay,
    ServerConfig,
    default_retry_delay,
    seconds,
)
from asyncq._worker.dispatcher import Dispatcher
from asyncq._worker.finisher import Finisher
from asyncq._worker.heartbeater import Heartbeater, new_identity
from asyncq._worker.jobs import JobBook, StopReason
from asyncq._worker.maintenance import Forwarder, HealthChecker, Janitor
from asyncq._worker.recoverer import Recoverer
from asyncq._worker.subscriber import CancelSubscriber
from asyncq._worker.waker import Waker
from asyncq.servemux import Handler, ServeMux, is_async_callable

__all__ = ["Server"]

Duration = timedelta | float


def _check_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    """Refuse, with a hint, a thread or a loop where ``run`` could not handle signals."""
    try:
        loop.add_signal_handler(signal.SIGTERM, lambda: None)
    except (RuntimeError, ValueError, NotImplementedError) as error:
        raise RuntimeError(
            f"Server.run() handles signals, which needs the main thread and a loop that "
            f"supports them ({error}); use start() and shutdown() instead"
        ) from None
    loop.remove_signal_handler(signal.SIGTERM)


class Server:
    """A worker: dequeues tasks from its queues and runs their handlers.

    Defaults are asynq's: concurrency = CPU count, queue ``default``, weighted
    priorities, 25 retries with Sidekiq's backoff, 8 s shutdown timeout, 30 s
    leases renewed every 5 s. Durations are seconds or ``timedelta``.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        concurrency: int | None = None,
        queues: Mapping[str, int] | None = None,
        strict_priority: bool = False,
        retry_delay: RetryDelay = default_retry_delay,
        is_failure: IsFailure | None = None,
        error_handler: ErrorHandler | None = None,
        shutdown_timeout: Duration = 8.0,
        health_check: HealthCheck | None = None,
        health_check_interval: Duration = 15.0,
        task_check_interval: Duration = 1.0,
        delayed_task_check_interval: Duration = 5.0,
        janitor_interval: Duration = 8.0,
        janitor_batch_size: int = 100,
        lease_duration: Duration = 30.0,
        heartbeat_interval: Duration = 5.0,
        recoverer_interval: Duration = 60.0,
        group_aggregator: GroupAggregator | None = None,
        group_grace_period: Duration = 60.0,
        group_max_delay: Duration = 0.0,
        group_max_size: int = 0,
        group_check_interval: Duration = 0.0,
        clock: Clock | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "strict_priority": strict_priority,
            "retry_delay": retry_delay,
            "error_handler": error_handler,
            "health_check": health_check,
            "janitor_batch_size": janitor_batch_size,
            "shutdown_timeout": seconds("shutdown_timeout", shutdown_timeout),
            "health_check_interval": seconds(
                "health_check_interval", health_check_interval, minimum=0.01
            ),
            "task_check_interval": seconds(
                "task_check_interval", task_check_interval, minimum=0.001
            ),
            "delayed_task_check_interval": seconds(
                "delayed_task_check_interval", delayed_task_check_interval, minimum=0.01
            ),
            "janitor_interval": seconds("janitor_interval", janitor_interval, minimum=0.01),
            "lease_duration": seconds("lease_duration", lease_duration, minimum=1),
            "heartbeat_interval": seconds("heartbeat_interval", heartbeat_interval, minimum=0.01),
            "recoverer_interval": seconds("recoverer_interval", recoverer_interval, minimum=0.01),
            "group_aggregator": group_aggregator,
            "group_grace_period": seconds("group_grace_period", group_grace_period),
            "group_max_delay": seconds("group_max_delay", group_max_delay),
            "group_max_size": group_max_size,
            "group_check_interval": seconds("group_check_interval", group_check_interval),
        }
        if concurrency is not None:
            options["concurrency"] = concurrency
        if queues is not None:
            # Anything but a mapping is for QueueRouter to refuse, with a clear message.
            options["queues"] = dict(queues) if isinstance(queues, Mapping) else queues
        if is_failure is not None:
            options["is_failure"] = is_failure
        if clock is not None:
            options["clock"] = clock
        self.config = ServerConfig(**options)
        self.connector = connector
        self.router = QueueRouter(self.config.queues, strict=strict_priority)
        self.broker = Broker(connector)
        self.identity = new_identity()
        self._jobs = JobBook()
        self._runner: asyncio.Task[None] | None = None
        self._dispatcher: Dispatcher | None = None
        self._heartbeater: Heartbeater | None = None
        self._components: list[Any] = []
        self._ready = asyncio.Event()
        self._release = asyncio.Event()
        self._shutting_down: asyncio.Future[None] | None = None
        self._hurry = asyncio.Event()  # stop waiting for running handlers: cancel them now

    # -- public lifecycle ------------------------------------------------------------------------

    def component(self, name: str) -> Any:
        """A running background component by name ("forwarder", "recoverer", "janitor",
        "waker", "subscriber", "aggregator", "health check"), for diagnostics and tests."""
        for component in self._components:
            if getattr(component, "name", None) == name:
                return component
        raise KeyError(f"no component {name!r} is running")

    @property
    def fetching(self) -> bool:
        """Whether the server may still take tasks: False once a ``stop()`` has taken
        effect (a dequeue already in flight when it was asked completes first)."""
        return self._dispatcher is not None and self._dispatcher.fetching

    @property
    def running_tasks(self) -> int:
        """How many handlers are running now."""
        return len(self._jobs)

    async def start(self, handler: Handler) -> None:
        """Connect and start serving in the background; returns once the server runs."""
        if self._runner is not None:
            raise RuntimeError("this server was already started")
        if not is_async_callable(handler):
            raise TypeError(
                f"handler must be a ServeMux or an async function (async def), got {handler!r}"
            )
        await self.connector.connect()
        self._runner = asyncio.create_task(self._serve(handler), name="asyncq-server")
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({ready, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        if self._runner.done():
            ready.cancel()
            await self.connector.aclose()
            self._runner.result()  # raises what stopped it
            raise RuntimeError("the server stopped while starting")
        self.config.logger.info(
            "server %s serving %s with concurrency %d",
            self.identity.server_id,
            ", ".join(f"{q} (priority {p})" for q, p in self.router.configured.items()),
            self.config.concurrency,
        )
        self._announce_handlers(handler)

    def _announce_handlers(self, handler: Handler) -> None:
        """Log the task types a ServeMux handles (as Celery lists its tasks at start); an
        empty one is a mistake worth a warning: every task would fail and be retried."""
        if not isinstance(handler, ServeMux):
            return
        if handler.patterns:
            self.config.logger.info("handling task types %s", ", ".join(handler.patterns))
        else:
            self.config.logger.warning(
                "the ServeMux has no handler: every task will fail with "
                "HandlerNotFoundError and be retried; register handlers before starting"
            )

    def stop(self) -> None:
        """Stop taking new tasks (SIGTSTP); running handlers go on. ``shutdown`` still needed.

        A dequeue already on its way completes, so a task enqueued at that very moment may
        still be taken; ``fetching`` turns False once nothing more can be.
        """
        if self._dispatcher is not None:
            self._dispatcher.request_stop()
        if self._heartbeater is not None:
            self._heartbeater.status = "stopped"

    async def shutdown(self) -> None:
        """Stop gracefully: no new tasks, let running ones finish within
        ``shutdown_timeout``, then cancel and requeue the rest, and clear the records.

        A handler that ignores cancellation is abandoned after a short grace: its task
        is put back into pending all the same (as asynq does), while the handler may
        still be running in this process. Every call waits for the same shutdown to end.
        """
        if self._runner is None:
            return
        if self._shutting_down is None:
            self._shutting_down = asyncio.ensure_future(self._shutdown())
            self._shutting_down.add_done_callback(mark_seen)  # its callers may all be gone
        # Shielded: a caller cancelled meanwhile (a web app's lifespan hook, say) does not
        # cut the shutdown short for the others.
        await asyncio.shield(self._shutting_down)

    def hurry(self) -> None:
        """Stop waiting for running handlers (a second Ctrl-C): a shutdown under way, or
        the next one, cancels them at once and puts their tasks back into pending (and
        waits for no dequeue that is late, see docs/worker.md)."""
        self._hurry.set()
        if self._dispatcher is not None:
            self._dispatcher.hurry()

    async def _shutdown(self) -> None:
        assert self._runner is not None
        if self._runner.done():
            await self._after_crash()
            return
        assert self._dispatcher is not None and self._heartbeater is not None
        forwarder, recoverer, janitor, *others = self._components
        await forwarder.stop(self._hurry)
        await self._dispatcher.stop_fetching()
        abandoned = await self._drain()
        for component in (recoverer, janitor, *others):
            await component.stop(self._hurry)
        await self._heartbeater.stop(self._hurry)
        self._release.set()
        if not abandoned:  # an abandoned handler holds the task group open for good
            await asyncio.wait({self._runner}, timeout=self.config.cancel_grace)
        await self.connector.aclose()

    async def _wait_for_stop_or_crash(
        self, stop_requested: asyncio.Event, dispatcher: asyncio.Task[None]
    ) -> asyncio.Task[None] | None:
        """Wait for a stop signal; return the task that crashed instead, if one does.

        The dispatcher is watched on its own: if it dies of a bug its siblings are
        cancelled, and one that swallows the cancellation would hide the crash. A
        dispatcher that simply ended (SIGTSTP) is no crash: the server waits on.
        """
        assert self._runner is not None
        waiter = asyncio.ensure_future(stop_requested.wait())
        watched: set[asyncio.Future[Any]] = {waiter, self._runner, dispatcher}
        try:
            while True:
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done():
                    return None
                for task in (self._runner, dispatcher):
                    if task.done() and (task.cancelled() or task.exception() is not None):
                        return task
                if self._runner.done():
                    return self._runner
                watched.discard(dispatcher)  # ended cleanly after a stop(): keep waiting
        finally:
            waiter.cancel()

    async def _after_crash(self) -> None:
        """The server's task group ended by itself (a bug): tidy up and say why."""
        assert self._runner is not None
        error = None if self._runner.cancelled() else self._runner.exception()
        self.config.logger.error("the server stopped unexpectedly: %r", error)
        if self._heartbeater is not None:
            with contextlib.suppress(Exception):
                await clear_server_state(self.connector, self.identity)
        await self.connector.aclose()

    async def run(self, handler: Handler) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully; a second SIGTERM or
        SIGINT stops waiting for running handlers (``hurry``). SIGTSTP: stop fetching.

        Needs the main thread (signals); elsewhere, use ``start`` and ``shutdown``.
        """
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()

        def on_stop_signal() -> None:
            if stop_requested.is_set():
                self.config.logger.warning("stop signal again: cancelling running tasks now")
                self.hurry()
            stop_requested.set()

        handled = {signal.SIGTERM: on_stop_signal, signal.SIGINT: on_stop_signal}
        if hasattr(signal, "SIGTSTP"):
            handled[signal.SIGTSTP] = self.stop
        # Checked before anything starts; installed once started, so that Ctrl-C while
        # connecting still stops the program at once (a start waits out retry_deadline).
        _check_signal_handlers(loop)
        await self.start(handler)
        installed: list[signal.Signals] = []
        try:
            for signum, callback in handled.items():
                loop.add_signal_handler(signum, callback)
                installed.append(signum)
            assert self._runner is not None
            assert self._dispatcher is not None
            crashed = await self._wait_for_stop_or_crash(stop_requested, self._dispatcher.loop_task)
            if crashed is not None and self._shutting_down is not None:
                # shutdown() was called from elsewhere: that ended the server, no crash.
                await self.shutdown()
                if crashed.cancelled() or crashed.exception() is None:
                    return
            if crashed is not None:
                self.config.logger.error("the server stopped unexpectedly; shutting down")
                await self.shutdown()
                if not crashed.cancelled():
                    crashed.result()  # re-raise what ended the server
                raise RuntimeError("the server stopped unexpectedly")
            self.config.logger.info("shutting down (signal again to cancel running tasks now)")
            await self.shutdown()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    # -- inside ----------------------------------------------------------------------------------

    async def _serve(self, handler: Handler) -> None:
        config = self.config
        finisher = Finisher(self.broker, config, self._jobs)
        dispatcher = Dispatcher(self.broker, self.router, handler, config, self._jobs, finisher)
        heartbeater = Heartbeater(self.broker, self.router, config, self._jobs, self.identity)
        recoverer = Recoverer(self.broker, self.router, config, finisher)
        components: list[Any] = [
            Forwarder(self.broker, self.router, config, dispatcher.wake),
            recoverer,
            Janitor(self.broker, self.router, config),
            Waker(self.broker, self.router, dispatcher.wake, dispatcher.wake_ups, config.logger),
            CancelSubscriber(self.connector, self._jobs, config.logger),
        ]
        if config.health_check is not None:
            components.append(HealthChecker(self.broker, config, config.health_check))
        if config.group_aggregator is not None:
            components.append(Aggregator(self.broker, self.router, config, config.group_aggregator))
        self._dispatcher, self._heartbeater, self._components = dispatcher, heartbeater, components
        if self._hurry.is_set():
            dispatcher.hurry()
        async with asyncio.TaskGroup() as group:
            finisher.start(group)
            heartbeater.start(group)
            for component in components:
                component.start(group)
            dispatcher.start(group)
            self._ready.set()
            await self._release.wait()

    async def _drain(self) -> int:
        """Wait for running handlers up to the shutdown timeout, then cancel and requeue;
        return how many handlers ignored the cancellation (their tasks are requeued too)."""
        assert self._dispatcher is not None
        if len(self._jobs) and not self._hurry.is_set():
            self.config.logger.info(
                "waiting up to %.0fs for %d running task(s)",
                self.config.shutdown_timeout,
                len(self._jobs),
            )
            drained = asyncio.ensure_future(self._jobs.wait_empty())
            await wait_unless(self._hurry, [drained], self.config.shutdown_timeout)
            drained.cancel()
        if not len(self._jobs):
            return 0
        self.config.logger.warning(
            "%s: cancelling %d running task(s) and requeueing them",
            "asked to hurry" if self._hurry.is_set() else "shutdown timeout",
            len(self._jobs),
        )
        for job in self._jobs:
            job.stop(StopReason.SHUTDOWN)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.cancel_grace):
                await self._jobs.wait_empty()
        abandoned = [job for job in self._jobs if job.in_handler]
        for job in self._jobs:
            if job.in_handler:
                self.config.logger.error(
                    "handler of task %s ignores cancellation; abandoning it and requeueing "
                    "the task (the handler may still be running in this process)",
                    job.id,
                )
            else:  # its handler is done; Redis has not taken its outcome yet
                self.config.logger.error(
                    "the outcome of task %s is not written yet; leaving it: the task keeps "
                    "its lease until it runs out, then it is retried",
                    job.id,
                )
            job.abandon()  # whatever the handler does from now on, nothing more is written
        finisher = self._dispatcher.finisher
        await asyncio.gather(*(finisher.requeue(job) for job in abandoned))
        return len(abandoned)
