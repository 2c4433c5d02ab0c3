"""Child process: run one library's worker until it has handled the tasks it expects.

``python -m benchmarks.worker_main SPEC_JSON`` prints ``ready`` once the worker runs,
``progress`` every second, then ``result`` (the probe's numbers) after the last task plus
a short settle time, so the library's final acknowledgements reach Redis before the
orchestrator reads the command counters. Then it stops the worker and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from benchmarks.libs import load_adapter
from benchmarks.measure import Probe
from benchmarks.protocol import emit, run_child
from benchmarks.spec import ChildSpec

STOP_TIMEOUT_S = 15.0


async def _report_progress(probe: Probe, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        emit("progress", handled=probe.returned)


async def serve(spec: ChildSpec) -> None:
    """Start the worker, wait for the probe to see every task, report, stop."""
    adapter = load_adapter(spec)
    probe = Probe(
        spec.count,
        sleep_s=spec.sleep_s if spec.workload == "sleep" else 0.0,
        record_latency=spec.record_latency,
    )
    await adapter.start_worker(probe)
    emit("ready")
    reporter = asyncio.create_task(_report_progress(probe, spec.progress_every_s))
    try:
        await probe.done.wait()  # the orchestrator's timeout bounds this wait
        await asyncio.sleep(spec.settle_s)
    finally:
        reporter.cancel()
    emit("result", **probe.result())
    try:
        await asyncio.wait_for(adapter.stop_worker(), STOP_TIMEOUT_S)
    except Exception as error:  # the numbers are in; a messy stop is only worth a note
        emit("warning", message=f"worker stop: {type(error).__name__}: {error}")
    emit("stopped")


def main() -> int:
    """Entry point: the only argument is the ChildSpec as JSON."""
    spec = ChildSpec.from_json(sys.argv[1])
    code = run_child(lambda: serve(spec), spec.loop)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
