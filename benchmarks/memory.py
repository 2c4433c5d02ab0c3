"""``python -m benchmarks.memory``: does an asyncq worker's memory stay flat over many tasks?

One worker process (concurrency 32, a no-op handler) serves a queue; this process enqueues
tasks in steps (20,000 by default) up to a total (200,000), waits after each step until the
queue is empty, and reads the worker's resident memory (VmRSS) from ``/proc``. A worker
that keeps something per task grows step by step; a flat one stays within a few percent.

    python -m benchmarks.memory                        # standalone Redis, started here
    python -m benchmarks.memory --topology cluster     # a 3+3 cluster, started here
    python -m benchmarks.memory --redis-url redis://127.0.0.1:6379/0

Linux only (it reads ``/proc/<pid>/status``). Results go to ``results/memory.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import venvs

if __name__ == "__main__" and not venvs.running_in(venvs.SHARED):
    # Any Python can start it, as ``python -m benchmarks``: asyncq's dependencies live in
    # .venv-bench, so the command moves there before importing asyncq.
    venvs.reexec_in_shared("benchmarks.memory")

import asyncq
from asyncq.testing import LocalRedisCluster, RedisServerProcess

RESULTS = Path(__file__).resolve().parent / "results"
DRAIN_TIMEOUT_S = 300.0


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _connector(target: str) -> asyncq.Connector:
    if target.startswith("redis://"):
        return asyncq.RedisConnector(target)
    return asyncq.RedisClusterConnector(target.split(","))


async def serve(target: str, queue: str) -> None:
    """The worker child: serve ``queue`` until SIGTERM."""

    async def noop(task: asyncq.Task) -> None:
        return None

    mux = asyncq.ServeMux()
    mux.handle("noop", noop)
    server = asyncq.Server(_connector(target), concurrency=32, queues={queue: 1})
    await server.start(mux)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.shutdown()


async def _drained(client: asyncq.Client, queue: str) -> None:
    keys = [f"asynq:{{{queue}}}:pending", f"asynq:{{{queue}}}:active"]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        lengths = [await client.connector.execute("LLEN", key) for key in keys]
        if sum(lengths) == 0:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"queue {queue!r} not drained within {DRAIN_TIMEOUT_S:g}s")


async def drive(
    target: str, worker: subprocess.Popen[str], args: argparse.Namespace
) -> list[tuple[int, float]]:
    """Enqueue step by step; after each step, wait for an empty queue and read the RSS."""
    readings: list[tuple[int, float]] = []
    async with asyncq.Client(_connector(target)) as client:
        done = 0
        while done < args.tasks:
            step = min(args.step, args.tasks - done)
            results = await client.enqueue_many(
                [asyncq.Task("noop", {"i": done + i}) for i in range(step)], queue=args.queue
            )
            if not all(r.ok for r in results):
                raise RuntimeError("some tasks were not enqueued")
            await _drained(client, args.queue)
            done += step
            readings.append((done, rss_mb(worker.pid)))
            print(f"  {done:>9,} tasks processed: worker RSS {readings[-1][1]:.1f} MB", flush=True)
    return readings


def _start_redis(args: argparse.Namespace) -> tuple[str, object | None]:
    if args.redis_url:
        return args.redis_url, None
    if args.topology == "cluster":
        cluster = LocalRedisCluster(3, 1).start()
        return ",".join(cluster.seeds), cluster
    server = RedisServerProcess().start()
    return server.url, server


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--step", type=int, default=20_000)
    parser.add_argument("--topology", choices=["standalone", "cluster"], default="standalone")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--queue", default=f"memory-{os.getpid()}")
    parser.add_argument("--serve", nargs=2, metavar=("TARGET", "QUEUE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(*args.serve))
        return 0
    target, owned = _start_redis(args)
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.memory", "--serve", target, args.queue],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the worker did not start")
        print(f"worker pid {worker.pid}, {args.topology}, {args.tasks:,} tasks", flush=True)
        readings = asyncio.run(drive(target, worker, args))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        if owned is not None:
            owned.stop()  # type: ignore[attr-defined]
    first, last = readings[0][1], readings[-1][1]
    growth = (last - first) / first * 100
    print(f"RSS after {readings[0][0]:,}: {first:.1f} MB; after {readings[-1][0]:,}: "
          f"{last:.1f} MB; growth {growth:+.1f}%")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "memory.json"
    out.write_text(
        json.dumps(
            {"topology": args.topology, "readings": readings, "growth_percent": growth}, indent=2
        )
    )
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
