"""Child process: enqueue tasks with one library's client and report how long it took.

``python -m benchmarks.driver_main SPEC_JSON`` runs one mode:

- ``single``: ``count`` single enqueues, ``in_flight`` at a time (gather + semaphore);
- ``callers``: ``count`` single enqueues from ``in_flight`` long-lived callers, each
  awaiting its calls in turn (as a web app's request handlers do);
- ``batch``: the library's batch API (all tasks in one call unless ``batch_size`` is set);
- ``paced``: one enqueue every ``1/rate`` s, for the pickup-latency scenario;
- ``ceiling``: the ``single`` method with no library at all (each call only waits one turn
  of the event loop): the most calls/s that method can show on this machine;
  ``callers_ceiling`` the same for the ``callers`` method.

It prints one ``result`` event (or ``error``); connecting and closing are not timed.
"""

from __future__ import annotations

import sys
import time

from benchmarks.libs import load_adapter
from benchmarks.libs.base import BatchUnsupportedError
from benchmarks.measure import enqueue_by_callers, enqueue_concurrently, enqueue_paced, one_turn
from benchmarks.protocol import emit, run_child
from benchmarks.spec import ChildSpec


async def drive(spec: ChildSpec) -> None:
    """Connect, run the mode, report, close."""
    if spec.mode in ("ceiling", "callers_ceiling"):
        method = enqueue_concurrently if spec.mode == "ceiling" else enqueue_by_callers
        seconds = await method(one_turn, spec.count, spec.in_flight)
        emit("result", count=spec.count, seconds=seconds, tasks_per_s=spec.count / seconds)
        return
    adapter = load_adapter(spec)
    await adapter.open_client()
    try:
        if spec.mode == "single":
            seconds = await enqueue_concurrently(adapter.enqueue, spec.count, spec.in_flight)
        elif spec.mode == "callers":
            seconds = await enqueue_by_callers(adapter.enqueue, spec.count, spec.in_flight)
        elif spec.mode == "paced":
            seconds = await enqueue_paced(adapter.enqueue, spec.count, spec.rate)
        else:
            stamps = [time.time()] * spec.count
            start = time.perf_counter()
            try:
                await adapter.enqueue_batch(stamps)
            except BatchUnsupportedError:
                emit("result", unsupported=True)
                return
            seconds = time.perf_counter() - start
    finally:
        await adapter.close_client()
    emit(
        "result",
        count=spec.count,
        seconds=seconds,
        tasks_per_s=spec.count / seconds if seconds > 0 else None,
        note=adapter.batch_note,
    )


def main() -> int:
    """Entry point: the only argument is the ChildSpec as JSON."""
    spec = ChildSpec.from_json(sys.argv[1])
    return run_child(lambda: drive(spec), spec.loop)


if __name__ == "__main__":
    sys.exit(main())
