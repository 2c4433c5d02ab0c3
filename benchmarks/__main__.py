"""``python -m benchmarks``: measure asyncq and its peers in one run and write the results.

Started from any Python 3.11+, it first moves itself into ``.venv-bench`` (creating it
when needed), where matplotlib, psutil and the peers are installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

from benchmarks import venvs
from benchmarks.libs import LIBRARIES

QUICK_TASKS = 2_000
QUICK_LATENCY_TASKS = 100


def _libs(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LIBRARIES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown: {', '.join(unknown)} (choose from {', '.join(LIBRARIES)})"
        )
    return [name for name in LIBRARIES if name in names]  # always in the canonical order


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Throughput, latency, CPU, memory and Redis commands of asyncq and its "
        "peers (arq, saq, taskiq, streaq), on a standalone Redis and a 3+3 Redis Cluster.",
    )
    p.add_argument("--redis-url", default="", help="use this Redis instead of starting one")
    p.add_argument(
        "--cluster-nodes",
        default="",
        metavar="H:P,...",
        help="use this Redis Cluster instead of starting one",
    )
    p.add_argument(
        "--flush",
        action="store_true",
        help="FLUSHALL a given Redis between libraries (never done without this)",
    )
    p.add_argument(
        "--only",
        type=_libs,
        default=list(LIBRARIES),
        metavar="LIB,...",
        help=f"libraries to run (default: {','.join(LIBRARIES)})",
    )
    p.add_argument("--topology", choices=["standalone", "cluster", "both"], default="both")
    p.add_argument("--tasks", type=int, default=None, help="N (default 20,000; --quick 2,000)")
    p.add_argument("--sleep-tasks", type=int, default=None, help="tasks of the sleep run (N/4)")
    p.add_argument(
        "--latency-tasks",
        type=int,
        default=None,
        help="tasks of the pickup-latency run (default 500; --quick 100)",
    )
    p.add_argument("--latency-rate", type=float, default=50.0, help="enqueues per second (50)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="tasks per batch-enqueue call (default: all N in one call)",
    )
    p.add_argument(
        "--timeout-scale",
        type=float,
        default=1.0,
        help="multiply every child's timeout (slow machines)",
    )
    p.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the event loop every library's processes run on (default asyncio)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: N=2,000, 100 latency tasks")
    p.add_argument(
        "--out",
        default=None,
        help="result name under benchmarks/results (default latest; --quick: quick)",
    )
    p.add_argument(
        "--write-readme", action="store_true", help="put the table into benchmarks/README.md"
    )
    p.add_argument(
        "--no-venv",
        action="store_true",
        help="run in this interpreter instead of .venv-bench (it must have everything)",
    )
    return p


def main() -> int:
    """Parse, run, report."""
    args = parser().parse_args()
    if not args.no_venv and not venvs.running_in(venvs.SHARED):
        venvs.reexec_in_shared("benchmarks")

    # Imported only here: they need packages that live in .venv-bench.
    from benchmarks import machine, report, runner
    from benchmarks.chart import draw

    tasks = args.tasks or (QUICK_TASKS if args.quick else 20_000)
    settings = runner.Settings(
        tasks=tasks,
        sleep_tasks=args.sleep_tasks or max(1, tasks // 4),
        latency_tasks=args.latency_tasks or (QUICK_LATENCY_TASKS if args.quick else 500),
        latency_rate=args.latency_rate,
        batch_size=args.batch_size,
        libs=args.only,
        topologies=["standalone", "cluster"] if args.topology == "both" else [args.topology],
        redis_url=args.redis_url,
        cluster_nodes=[n.strip() for n in args.cluster_nodes.split(",") if n.strip()],
        flush=args.flush,
        timeout_scale=args.timeout_scale,
        loop=args.loop,
    )
    name = args.out or ("quick" if args.quick else "latest")
    load_before = os.getloadavg()
    started = time.monotonic()
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    outcome = runner.run(settings)
    doc = {
        "generated": generated,
        "wall_s": round(time.monotonic() - started, 1),
        "machine": {
            **machine.describe(outcome["redis_versions"], settings.libs),
            # Other work on the machine skews every number: a high load here means re-run.
            "load_avg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        },
        "parameters": settings.parameters(),
        "runs": outcome["runs"],
        "method_ceiling": outcome["method_ceiling"],
        "pickup_floor": outcome["pickup_floor"],
    }
    json_path = report.write_json(doc, name)
    png_path = draw(doc, json_path.with_suffix(".png"))
    print()
    print(report.summary(doc))
    print()
    print(
        f"wrote benchmarks/results/{json_path.name} and {png_path.name} "
        f"in {doc['wall_s'] / 60:.1f} min"
    )
    if args.write_readme:
        report.write_readme(doc, name)
        print("updated benchmarks/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
