"""ServeMux: routes each task to the coroutine registered for its type, through middleware."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from asyncq.errors import HandlerNotFoundError
from asyncq.task import Task

__all__ = ["Handler", "Middleware", "ServeMux", "is_async_callable"]

Handler = Callable[[Task], Awaitable[None]]
"""A coroutine function that processes one task; raising means the task failed."""

Middleware = Callable[[Handler], Handler]
"""Wraps a handler into another (logging, metrics, tracing, ...)."""

# Task types whose handler is remembered; a worker seeing more (prefix patterns allow
# any number) starts over rather than grow without bound.
MAX_CACHED_TYPES = 1024


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` gives an awaitable: an ``async def`` or an object with one."""
    if inspect.isclass(fn):
        return False  # calling a class builds an instance, it does not run a handler
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


async def _not_found(task: Task) -> None:
    raise HandlerNotFoundError(f"no handler is registered for task type {task.type!r}")


class ServeMux:
    """Maps task types to handlers, the way asynq's ServeMux does.

    A task goes to the handler registered for exactly its type; failing that, to
    the handler of the longest registered pattern that is a prefix of its type
    (plain string prefix: ``"email"`` also matches ``"emailing"``; among equal
    lengths the first registered wins). No match fails the task with
    ``HandlerNotFoundError``, which is retried like any failure.

    Middleware added with ``use`` wraps every handler (the not-found one too);
    the first one added is the outermost.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._middleware: list[Middleware] = []
        self._wrapped: dict[str, Handler] = {}
        self._by_type: dict[str, Handler] = {}  # task type -> its wrapped handler
        self._by_length: list[str] = []

    def handle(self, pattern: str, handler: Handler) -> None:
        """Register ``handler`` (an ``async def`` function) for ``pattern``."""
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValueError(f"handler pattern must be a non-blank str, got {pattern!r}")
        if pattern in self._handlers:
            raise ValueError(f"a handler for {pattern!r} is already registered")
        if not is_async_callable(handler):
            raise TypeError(
                f"handler for {pattern!r} must be a coroutine function (async def), got "
                f"{handler!r}; asyncq awaits handlers on its event loop. For blocking code, "
                "call it with `await asyncio.to_thread(fn, ...)` inside an async handler"
            )
        self._handlers[pattern] = handler
        # Longest first; sorted() is stable, so equal lengths keep registration order.
        self._by_length = sorted(self._handlers, key=len, reverse=True)
        self._wrapped.clear()
        self._by_type.clear()

    def handler(self, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator form of ``handle``: ``@mux.handler("email:send")``."""
        if callable(pattern):  # ``@mux.handler`` without a pattern would register nothing
            name = getattr(pattern, "__name__", "handler")
            raise TypeError(
                f"@mux.handler needs the task type it handles: write "
                f'@mux.handler("some:type") above {name}(), not @mux.handler'
            )
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValueError(f"handler pattern must be a non-blank str, got {pattern!r}")

        def register(fn: Handler) -> Handler:
            self.handle(pattern, fn)
            return fn

        return register

    def use(self, *middleware: Middleware) -> None:
        """Add middleware; each is ``def mw(next_handler) -> handler``."""
        for mw in middleware:
            if not callable(mw):
                raise TypeError(f"middleware must be callable, got {mw!r}")
            self._middleware.append(mw)
        self._wrapped.clear()
        self._by_type.clear()

    @property
    def patterns(self) -> list[str]:
        """The registered patterns, in registration order."""
        return list(self._handlers)

    def match(self, task_type: str) -> str | None:
        """The pattern that would handle ``task_type``, or ``None``."""
        if task_type in self._handlers:
            return task_type
        for pattern in self._by_length:
            if task_type.startswith(pattern):
                return pattern
        return None

    def resolve(self, task_type: str) -> Handler:
        """The handler for ``task_type``, wrapped in the middleware (built once, then cached).

        Called for every task a worker runs, so the answer is also remembered per type.
        """
        handler = self._by_type.get(task_type)
        if handler is None:
            pattern = self.match(task_type)
            key = pattern if pattern is not None else ""
            handler = self._wrapped.get(key)
            if handler is None:
                handler = self._handlers[pattern] if pattern is not None else _not_found
                for mw in reversed(self._middleware):
                    handler = mw(handler)
                self._wrapped[key] = handler
            if len(self._by_type) >= MAX_CACHED_TYPES:
                self._by_type.clear()
            self._by_type[task_type] = handler
        return handler

    async def __call__(self, task: Task) -> None:
        """Process ``task`` with the matching handler (a ServeMux is itself a handler)."""
        await self.resolve(task.type)(task)
