"""Measurements taken inside the child processes: the handler probe and the enqueue loops.

Every library's handler calls the same ``Probe``, so all of them time, sleep and count
the same way. Standard library only (arq runs in an interpreter with nothing else).
"""

from __future__ import annotations

import asyncio
import math
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
Enqueue = Callable[[float], Awaitable[None]]


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB.

    On Linux this is VmHWM of /proc/self/status: ``ru_maxrss`` would be wrong for a child,
    since Linux carries the parent's peak over fork and exec (every child would show at
    least the orchestrator's size).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``values``, nearest-rank method."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Probe:
    """The body of the benchmark handler, identical for every library.

    Each call receives the wall time the task was enqueued at. The probe notes the first
    call and the ``expect``-th return (times and CPU), optionally sleeps, and records the
    pickup latency (now - enqueue time) when asked to.
    """

    def __init__(self, expect: int, *, sleep_s: float = 0.0, record_latency: bool = False) -> None:
        self.expect = expect
        self.sleep_s = sleep_s
        self.record_latency = record_latency
        self.started = 0
        self.returned = 0
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self._first: float | None = None
        self._last: float | None = None
        self._cpu_first = 0.0
        self._cpu_last = 0.0

    async def __call__(self, enqueued_at: float) -> None:
        """Run one task: this is what every library's handler does."""
        now = time.time()
        if self._first is None:
            self._first = time.perf_counter()
            self._cpu_first = cpu_seconds()
        self.started += 1
        if self.record_latency:
            self.latencies.append(now - enqueued_at)
        if self.sleep_s > 0:
            await asyncio.sleep(self.sleep_s)
        self.returned += 1
        if self.returned == self.expect:
            self._last = time.perf_counter()
            self._cpu_last = cpu_seconds()
            self.done.set()

    def result(self) -> dict[str, Any]:
        """The numbers of a finished (or partial) run, ready for JSON."""
        out: dict[str, Any] = {"handled": self.returned, "expected": self.expect}
        if self._first is not None and self._last is not None:
            seconds = self._last - self._first
            cpu = self._cpu_last - self._cpu_first
            out["seconds"] = seconds
            out["tasks_per_s"] = self.expect / seconds if seconds > 0 else math.inf
            out["cpu_s"] = cpu
            out["cpu_s_per_1000"] = cpu * 1000 / self.expect
        out["max_rss_mb"] = peak_rss_mb()
        if self.record_latency and self.latencies:
            millis = [v * 1000 for v in self.latencies]
            out["latency_ms"] = {
                "p50": percentile(millis, 0.50),
                "p90": percentile(millis, 0.90),
                "p99": percentile(millis, 0.99),
                "max": max(millis),
                "mean": sum(millis) / len(millis),
                "count": len(millis),
            }
        return out


async def enqueue_concurrently(enqueue: Enqueue, count: int, in_flight: int) -> float:
    """Enqueue ``count`` tasks one call each, ``in_flight`` at a time; return the seconds taken.

    This is streaq's method for libraries without a batch API: ``asyncio.gather`` over all
    calls behind an ``asyncio.Semaphore``.
    """
    limit = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with limit:
            await enqueue(time.time())

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - start


async def enqueue_by_callers(enqueue: Enqueue, count: int, callers: int) -> float:
    """Enqueue ``count`` tasks from ``callers`` long-lived callers, each awaiting its calls
    one after another; return the seconds taken.

    The shape of a web app's request handlers, each enqueueing as it goes: as many calls
    in flight as ``enqueue_concurrently``, but no asyncio task or semaphore wait per call,
    so the method itself costs far less and a library's own cost shows more plainly.
    """
    share, extra = divmod(count, callers)

    async def caller(calls: int) -> None:
        for _ in range(calls):
            await enqueue(time.time())

    start = time.perf_counter()
    await asyncio.gather(*(caller(share + (i < extra)) for i in range(callers)))
    return time.perf_counter() - start


async def one_turn(enqueued_at: float) -> None:
    """Stands in for an enqueue call that costs nothing but one wait: it gives the event
    loop a single turn, as a call waiting for a reply must. ``enqueue_concurrently`` over
    this is the fastest any library's one-by-one enqueue can be measured on the machine."""
    await asyncio.sleep(0)


async def enqueue_paced(enqueue: Enqueue, count: int, rate: float) -> float:
    """Start one enqueue every ``1/rate`` seconds on a fixed schedule; return the seconds taken.

    Calls are not awaited before the next one starts, so a slow call does not shift the
    schedule; each task carries the wall time its enqueue call began.
    """
    start = time.perf_counter()
    running: set[asyncio.Task[None]] = set()
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        call = asyncio.ensure_future(enqueue(time.time()))
        running.add(call)
        call.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    return time.perf_counter() - start


def chunks(values: Sequence[T], size: int) -> list[Sequence[T]]:
    """Split ``values`` into chunks of ``size`` (``size <= 0``: one chunk)."""
    if size <= 0 or size >= len(values):
        return [values]
    return [values[i : i + size] for i in range(0, len(values), size)]
