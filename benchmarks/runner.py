"""The orchestrator: for each topology and library, run every scenario and collect the numbers.

Scenarios per library and topology (each on a fresh queue, Redis flushed before it):

1. ``noop``: enqueue N one by one (timed), then one worker runs them (timed from inside);
   INFO commandstats before the enqueue, after it, and after the processing.
2. ``batch``: enqueue N with the library's batch API (timed), when it has one.
3. ``sleep``: N_sleep tasks enqueued untimed, one worker whose handler sleeps 10 ms.
4. ``latency``: an idle worker; the driver enqueues at a fixed rate; handlers record
   now - enqueue time.

A failing scenario is recorded with its error and the run goes on.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from benchmarks import venvs
from benchmarks.children import Child, ChildError, run_driver
from benchmarks.libs import FLOOR, LIBRARIES, library_info
from benchmarks.redis_env import (
    RedisTarget,
    given_cluster,
    given_standalone,
    start_cluster,
    start_standalone,
)
from benchmarks.spec import ChildSpec, DriverMode, EventLoop, Topology

READY_TIMEOUT_S = 60.0
STALL_S = 60.0
IDLE_BEFORE_LATENCY_S = 1.0


@dataclass
class Settings:
    """Parameters of one run (the command line, resolved)."""

    tasks: int = 20_000
    sleep_tasks: int = 5_000
    latency_tasks: int = 500
    latency_rate: float = 50.0
    concurrency: int = 32
    in_flight: int = 32
    sleep_s: float = 0.01
    batch_size: int = 0
    libs: list[str] = field(default_factory=lambda: list(LIBRARIES))
    topologies: list[Topology] = field(default_factory=lambda: ["standalone", "cluster"])
    redis_url: str = ""
    cluster_nodes: list[str] = field(default_factory=list)
    flush: bool = False
    timeout_scale: float = 1.0
    loop: EventLoop = "asyncio"

    def parameters(self) -> dict[str, Any]:
        """What the report shows as the run's parameters (no addresses)."""
        data = asdict(self)
        for private in ("redis_url", "cluster_nodes", "flush"):
            data.pop(private)
        data["redis"] = {
            "standalone": "given" if self.redis_url else "started by the benchmark",
            "cluster": "given" if self.cluster_nodes else "started by the benchmark (3+3)",
        }
        return data


class Progress:
    """Prints what runs and each result as soon as it is known."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0
        self.prefix = ""

    def start(self, lib: str, topology: str) -> None:
        """A new library/topology pair begins."""
        self.index += 1
        self.prefix = f"[{self.index}/{self.total}] {lib:<7} {topology:<10}"

    def line(self, text: str) -> None:
        """One progress line for the current pair."""
        print(f"{self.prefix} {text}", flush=True)


def _rate(result: dict[str, Any]) -> str:
    rate = result.get("tasks_per_s")
    return f"{rate:,.0f} tasks/s" if isinstance(rate, int | float) else "?"


class LibraryRun:
    """Every scenario of one library on one target."""

    def __init__(
        self,
        lib: str,
        target: RedisTarget,
        settings: Settings,
        python: Path,
        log_dir: Path,
        progress: Progress,
    ) -> None:
        self.lib = lib
        self.info = library_info(lib)
        self.target = target
        self.settings = settings
        self.python = python
        self.log_dir = log_dir
        self.say = progress.line
        self.token = secrets.token_hex(3)
        self.record: dict[str, Any] = {
            "library": lib,
            "topology": target.topology,
            "status": "ok",
            "errors": {},
        }

    # -- plumbing ----------------------------------------------------------------------------

    def _queue(self, scenario: str) -> str:
        name = f"bench-{self.lib}-{scenario}-{self.token}"
        # streaq keeps all of a queue's keys together only with a hash tag in its name.
        if self.lib == "streaq" and self.target.topology == "cluster":
            return "{" + name + "}"
        return name

    def _spec(self, queue: str, **fields: Any) -> ChildSpec:
        return ChildSpec(
            lib=self.lib,
            topology=self.target.topology,
            queue=queue,
            redis_url=self.target.url,
            cluster_nodes=self.target.nodes,
            concurrency=self.settings.concurrency,
            in_flight=self.settings.in_flight,
            batch_size=self.settings.batch_size,
            sleep_s=self.settings.sleep_s,
            loop=self.settings.loop,
            **fields,
        )

    def _timeout(self, count: int, floor_rate: float) -> float:
        """Seconds a step may take: fail if slower than ``floor_rate`` tasks/s (scaled)."""
        return (60 + count / floor_rate) * self.settings.timeout_scale

    def _fresh(self) -> None:
        if self.target.owned or self.settings.flush:
            self.target.flush()

    def _drive(self, spec: ChildSpec) -> dict[str, Any]:
        result = run_driver(self.python, spec, self.log_dir, self._timeout(spec.count, 100))
        result.pop("event", None)
        return result

    def _work(
        self,
        spec: ChildSpec,
        while_running: Callable[[], None] | None = None,
        at_result: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Run a worker child until its result; optionally drive load once it is ready."""
        child = Child(self.python, "benchmarks.worker_main", spec, self.log_dir)
        try:
            child.wait_for("ready", READY_TIMEOUT_S)
            if while_running is not None:
                while_running()
            result = child.wait_for("result", self._timeout(spec.count, 20), stall_s=STALL_S)
            if at_result is not None:
                at_result()
            try:
                child.wait_for("stopped", 30)
            except ChildError as error:
                result["stop_note"] = str(error)
        finally:
            child.finish()
        result.pop("event", None)
        if result.get("handled", 0) < spec.count:
            raise ChildError(f"handled {result.get('handled')} of {spec.count}")
        return result

    def _scenario(self, name: str, body: Callable[[], None]) -> None:
        try:
            body()
        except (ChildError, OSError, RuntimeError, TimeoutError) as error:
            message = str(error) or type(error).__name__
            self.record["errors"][name] = message
            self.say(f"{name}: FAILED: {message}")
        except Exception as error:  # any other bug must not end the whole run either
            message = f"{type(error).__name__}: {error}"
            self.record["errors"][name] = message
            self.say(f"{name}: FAILED: {message}")

    # -- scenarios ---------------------------------------------------------------------------

    def noop(self) -> None:
        """Enqueue one by one, then process with a no-op handler; count Redis commands."""
        n = self.settings.tasks
        self._fresh()
        queue = self._queue("noop")
        before = self.target.snapshot()
        enq = self._drive(self._spec(queue, mode="single", count=n))
        self.record["enqueue_single"] = enq
        self.say(f"enqueue one by one: {n:,} in {enq['seconds']:.2f} s = {_rate(enq)}")
        enqueued = self.target.snapshot()
        after: list[Any] = []
        work = self._work(
            self._spec(queue, count=n, workload="noop"),
            at_result=lambda: after.append(self.target.snapshot()),
        )
        self.record["process_noop"] = work
        self.say(
            f"process no-op: {n:,} in {work['seconds']:.2f} s = {_rate(work)}, "
            f"{work['cpu_s_per_1000']:.3f} CPU s/1k, peak RSS {work['max_rss_mb']:.0f} MB"
        )
        enqueue_cmds = self.target.commands_between(before, enqueued)
        process_cmds = self.target.commands_between(enqueued, after[0])
        top = sorted(process_cmds.items(), key=lambda kv: -kv[1])[:8]
        self.record["commands"] = {
            "redis_cpu_s_per_1000": (after[0].cpu_s - before.cpu_s) * 1000 / n,
            "enqueue_per_task": sum(enqueue_cmds.values()) / n,
            "processing_per_task": sum(process_cmds.values()) / n,
            "total_per_task": (sum(enqueue_cmds.values()) + sum(process_cmds.values())) / n,
            "enqueue_by_command": dict(sorted(enqueue_cmds.items(), key=lambda kv: -kv[1])[:8]),
            "processing_by_command": dict(top),
        }
        c = self.record["commands"]
        self.say(
            f"Redis commands/task: {c['total_per_task']:.2f} "
            f"(enqueue {c['enqueue_per_task']:.2f}, processing {c['processing_per_task']:.2f}); "
            f"Redis CPU {c['redis_cpu_s_per_1000']:.3f} s/1k tasks"
        )

    def callers(self) -> None:
        """Enqueue N one by one again, from ``in_flight`` long-lived callers (the shape of
        a web app's request handlers) instead of a gather of N calls."""
        n = self.settings.tasks
        self._fresh()
        enq = self._drive(self._spec(self._queue("callers"), mode="callers", count=n))
        self.record["enqueue_callers"] = enq
        self.say(
            f"enqueue one by one from {self.settings.in_flight} callers: {n:,} in "
            f"{enq['seconds']:.2f} s = {_rate(enq)}"
        )

    def batch(self) -> None:
        """Enqueue N with the library's batch API, if it has one."""
        if not self.info.batch_api:
            self.record["enqueue_batch"] = {"unsupported": True}
            self.say("enqueue batched: n/a (no batch API)")
            return
        n = self.settings.tasks
        self._fresh()
        enq = self._drive(self._spec(self._queue("batch"), mode="batch", count=n))
        self.record["enqueue_batch"] = enq
        note = f" [{enq['note']}]" if enq.get("note") else ""
        self.say(
            f"enqueue batched ({self.info.batch_api}): {n:,} in {enq['seconds']:.2f} s "
            f"= {_rate(enq)}{note}"
        )

    def sleep(self) -> None:
        """Process N_sleep tasks whose handler sleeps ``sleep_s``."""
        n = self.settings.sleep_tasks
        self._fresh()
        queue = self._queue("sleep")
        mode = "batch" if self.info.batch_api else "single"
        self._drive(self._spec(queue, mode=mode, count=n))
        work = self._work(self._spec(queue, count=n, workload="sleep"))
        self.record["process_sleep"] = work
        ideal = self.settings.concurrency / self.settings.sleep_s
        self.say(
            f"process sleep {self.settings.sleep_s * 1000:.0f} ms: {n:,} in "
            f"{work['seconds']:.2f} s = {_rate(work)} (ideal {ideal:,.0f})"
        )

    def latency(self) -> None:
        """Pickup latency of an idle worker at a steady, low enqueue rate."""
        n = self.settings.latency_tasks
        self._fresh()
        queue = self._queue("latency")
        driver = self._spec(queue, mode="paced", count=n, rate=self.settings.latency_rate)
        driven: list[dict[str, Any]] = []

        def drive() -> None:
            time.sleep(IDLE_BEFORE_LATENCY_S)
            driven.append(self._drive(driver))

        work = self._work(
            self._spec(queue, count=n, workload="noop", record_latency=True),
            while_running=drive,
        )
        lat = work.get("latency_ms", {})
        self.record["latency"] = {**lat, "driver": driven[0] if driven else None}
        self.say(
            f"pickup latency at {self.settings.latency_rate:g}/s: p50 {lat.get('p50', 0):.1f} ms,"
            f" p99 {lat.get('p99', 0):.1f} ms, max {lat.get('max', 0):.1f} ms"
        )

    def run(self) -> dict[str, Any]:
        """All scenarios, in order; returns the library's record."""
        started = time.monotonic()
        scenarios = [
            ("noop", self.noop), ("callers", self.callers), ("batch", self.batch),
            ("sleep", self.sleep), ("latency", self.latency),
        ]  # fmt: skip
        for name, body in scenarios:
            self._scenario(name, body)
        if self.record["errors"]:
            every = len(self.record["errors"]) == len(scenarios)
            self.record["status"] = "failed" if every else "partial"
        self.record["wall_s"] = round(time.monotonic() - started, 1)
        self.say(f"done in {self.record['wall_s']:.0f} s")
        return self.record


def _open_target(topology: Topology, settings: Settings) -> RedisTarget:
    if topology == "standalone":
        if settings.redis_url:
            return given_standalone(settings.redis_url)
        return start_standalone()
    if settings.cluster_nodes:
        return given_cluster(settings.cluster_nodes)
    return start_cluster()


def plan(settings: Settings) -> list[tuple[Topology, str]]:
    """Every (topology, library) pair the run visits, skipped ones included."""
    return [(topology, lib) for topology in settings.topologies for lib in settings.libs]


def run(settings: Settings) -> dict[str, Any]:
    """Run the whole benchmark; return the runs and the Redis versions seen."""
    pythons = {lib: venvs.ensure(LIBRARIES[lib].venv) for lib in settings.libs}
    pairs = plan(settings)
    progress = Progress(len(pairs))
    log_dir = Path(tempfile.mkdtemp(prefix="asyncq-bench-logs-"))
    runs: list[dict[str, Any]] = []
    redis_versions: dict[str, str] = {}
    floor: dict[str, dict[str, Any]] = {}
    failures = False
    for topology in settings.topologies:
        given = settings.cluster_nodes if topology == "cluster" else settings.redis_url
        print(f"== {topology}: {'connecting' if given else 'starting Redis'}", flush=True)
        target = _open_target(topology, settings)
        try:
            try:
                redis_versions[topology] = target.redis_version()
            except redis.RedisError as error:
                raise SystemExit(f"cannot reach the {topology} Redis: {error}") from error
            print(f"== {target.describe}, Redis {redis_versions[topology]}", flush=True)
            for pair_topology, lib in pairs:
                if pair_topology != topology:
                    continue
                progress.start(lib, topology)
                skip = LIBRARIES[lib].cluster_skip if topology == "cluster" else ""
                if skip:
                    progress.line(f"skipped: {skip}")
                    runs.append(
                        {"library": lib, "topology": topology, "status": "skipped", "reason": skip}
                    )
                    continue
                record = LibraryRun(lib, target, settings, pythons[lib], log_dir, progress).run()
                failures = failures or bool(record["errors"])
                runs.append(record)
            floor[topology] = _pickup_floor(target, settings, log_dir)
            failures = failures or "error" in floor[topology]
        finally:
            target.close()
    ceiling = _method_ceiling(settings, pythons, log_dir)
    if failures:
        print(f"child logs (stderr of every worker and driver): {log_dir}", flush=True)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return {
        "runs": runs,
        "redis_versions": redis_versions,
        "method_ceiling": ceiling,
        "pickup_floor": floor,
    }


def _pickup_floor(target: RedisTarget, settings: Settings, log_dir: Path) -> dict[str, Any]:
    """The latency scenario with no library (``LPUSH`` and a ``BLPOP`` loop): a reference
    for the pickup columns. A failure is recorded (``error``) and ends nothing."""
    progress = Progress(1)
    progress.prefix = f"== pickup floor, {target.topology} (no library):"
    try:
        python = venvs.ensure(FLOOR.venv)
    except (OSError, RuntimeError, SystemExit) as error:
        progress.line(f"FAILED: cannot set up its environment: {error}")
        return {"error": f"environment: {error}"}
    floor = LibraryRun(FLOOR.name, target, settings, python, log_dir, progress)
    floor._scenario("latency", floor.latency)
    if floor.record["errors"]:
        return {"error": floor.record["errors"]["latency"]}
    latency: dict[str, Any] = floor.record["latency"]
    return {key: latency[key] for key in ("p50", "p90", "p99", "max") if key in latency}


def _method_ceiling(settings: Settings, pythons: dict[str, Path], log_dir: Path) -> dict[str, Any]:
    """Both one-by-one methods with no library in them (best of three driver runs each): the
    most enqueue calls/s any library can show here, to read those columns against."""
    lib = "asyncq" if "asyncq" in pythons else next(iter(pythons))
    timeout = 60.0 * settings.timeout_scale
    found: dict[str, Any] = {}
    methods: list[tuple[DriverMode, str, str]] = [
        ("ceiling", "single", "one-by-one method alone"),
        ("callers_ceiling", "callers", f"{settings.in_flight} callers alone"),
    ]
    for mode, key, what in methods:
        spec = ChildSpec(
            lib=lib, topology="standalone", queue="", mode=mode,
            count=settings.tasks, in_flight=settings.in_flight, loop=settings.loop,
        )  # fmt: skip
        try:
            rates = [
                run_driver(pythons[lib], spec, log_dir, timeout)["tasks_per_s"] for _ in range(3)
            ]
        except ChildError as error:  # the libraries' numbers are kept; only this line is lost
            print(f"== {what}: failed: {error}", flush=True)
            continue
        print(f"== {what} (no library): {max(rates):,.0f} calls/s", flush=True)
        found[f"{key}_per_s"], found[f"{key}_runs"] = max(rates), rates
    if "single_runs" in found:
        found["runs"] = found.pop("single_runs")  # the older files' name
    return found
