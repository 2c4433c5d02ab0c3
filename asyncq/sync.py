"""``SyncClient``: the Client for synchronous code (Django, Flask, scripts, Celery-style
``.delay()`` call sites), whose calls block until they are done.

It runs an ordinary ``Client`` on an event loop in a thread of its own, and hands each
call to that loop. Calls made from several threads at once (a threaded web server's
requests) meet on the one loop, so they share round trips to Redis as concurrent
``await client.enqueue(...)`` calls do. Errors are the Client's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterable
from concurrent.futures import CancelledError, Future, InvalidStateError
from types import TracebackType
from typing import Any, TypeVar, Unpack

from asyncq._cluster.connector import Connector
from asyncq._many import TaskItem
from asyncq._options import EnqueueOptions
from asyncq.client import Client, EnqueueResult
from asyncq.task import Task, TaskInfo

__all__ = ["SyncClient"]

T = TypeVar("T")
# How long closing waits for the calls it cancelled to end.
CANCEL_WAIT = 5.0
CLOSED_MESSAGE = "the SyncClient was closed while this call was on its way"


class SyncClient:
    """A ``Client`` for code that is not async: ``with SyncClient(connector) as client:
    client.enqueue(Task(...), queue="emails")``.

    ``connector`` is used on the SyncClient's own event loop only: give it a connector of
    its own, not one an async part of the program uses too. ``client_options`` are the
    ``Client``'s (``wait_replicas``, ``replica_timeout``). Any number of threads may call
    it at once. In a server that forks its workers (gunicorn, uWSGI), make it in each
    worker process, after the fork: a thread does not survive a fork.
    """

    def __init__(self, connector: Connector, **client_options: Any) -> None:
        self._client = Client(connector, **client_options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._calls: set[asyncio.Task[Any]] = set()  # callers' calls now on the loop
        self._waiting: set[Future[Any]] = set()  # what the callers' threads wait on
        # Guards opening, closing, and handing a call to the loop: a call is never handed
        # to a loop that is stopping.
        self._lock = threading.Lock()

    @property
    def connector(self) -> Connector:
        """The connector the client uses (on its own loop)."""
        return self._client.connector

    def open(self) -> None:
        """Start the client's loop and connect; raises the Client's connection errors."""
        with self._lock:
            if self._loop is not None:
                raise RuntimeError("this SyncClient is already open")
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="asyncq-sync", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        try:
            self._on_loop(loop, self._client.__aenter__())
        except BaseException:
            self._stop_loop(loop)
            raise

    def close(self) -> None:
        """Disconnect and stop the loop. A call still on its way is cancelled: it raises
        ``RuntimeError`` in its thread (its task may or may not have been stored)."""
        with self._lock:
            loop = self._loop
            if loop is None or self._closing:
                return
            self._closing = True
        try:
            self._on_loop(loop, self._shut_down())
        finally:
            self._stop_loop(loop)

    async def _shut_down(self) -> None:
        calls = list(self._calls)  # the callers' calls only: the client's own tasks stay
        for call in calls:
            call.cancel()
        if calls:  # bounded: a call that outlives its cancel is failed when the loop stops
            await asyncio.wait(calls, timeout=CANCEL_WAIT)
        await self._client.__aexit__(None, None, None)

    async def _tracked(self, call: Coroutine[Any, Any, T]) -> T:
        """``call``, known to ``close`` while it runs."""
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            return await call
        finally:
            self._calls.discard(task)

    def __enter__(self) -> SyncClient:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def enqueue(self, task: Task, **options: Unpack[EnqueueOptions]) -> TaskInfo:
        """``Client.enqueue``, blocking until the task is stored."""
        return self._run(self._client.enqueue(task, **options))

    def enqueue_many(
        self, tasks: Iterable[TaskItem], **options: Unpack[EnqueueOptions]
    ) -> list[EnqueueResult]:
        """``Client.enqueue_many``, blocking until every task is stored or refused."""
        return self._run(self._client.enqueue_many(list(tasks), **options))

    def wait_result(
        self, task: TaskInfo | str, *, queue: str | None = None, timeout: float | None = 30.0
    ) -> bytes:
        """``Client.wait_result``, blocking until the task completes (or ``timeout``)."""
        return self._run(self._client.wait_result(task, queue=queue, timeout=timeout))

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            loop = self._loop
            if loop is None or self._closing:
                call.close()
                raise RuntimeError(
                    "the SyncClient is not open: use 'with SyncClient(connector) as client:' "
                    "or call open() first"
                )
            if threading.current_thread() is self._thread:
                call.close()
                raise RuntimeError("a SyncClient cannot be called from its own event loop")
            future = asyncio.run_coroutine_threadsafe(self._tracked(call), loop)
            self._waiting.add(future)
            future.add_done_callback(self._waiting.discard)
        try:
            return future.result()
        except CancelledError:
            raise RuntimeError(CLOSED_MESSAGE) from None

    @staticmethod
    def _on_loop(loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, loop).result()

    def _stop_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        thread = self._thread
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join()
        # A call the loop did not finish (handed over as it stopped) would leave its
        # caller waiting for good: it fails instead.
        for future in list(self._waiting):
            if not future.done():
                with contextlib.suppress(InvalidStateError):
                    future.set_exception(RuntimeError(CLOSED_MESSAGE))
        loop.close()
        with self._lock:
            self._loop = self._thread = None
            self._closing = False
