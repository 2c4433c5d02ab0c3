"""The scheduler: enqueues periodic tasks, once per fire however many schedulers run.

Entries and their enqueue history are written in asynq's format, so asynq's CLI and
web UI list them. Several scheduler processes may register the same entries for high
availability: each fire takes a lock in the target queue's slot, in the same script
that stores the task, so exactly one of them enqueues it. There is no leader to
elect or hand over: if a scheduler dies, the others simply keep firing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Unpack
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf.timestamp_pb2 import Timestamp

from asyncq._broker.keys import ALL_SCHEDULERS, scheduler_entries_key, scheduler_history_key
from asyncq._broker.scripts import load_script
from asyncq._clock import Clock, SystemClock
from asyncq._cluster.connector import Connector
from asyncq._options import EnqueueOptions, check_names, resolve
from asyncq._proto.asynq_pb2 import SchedulerEnqueueEvent, SchedulerEntry
from asyncq._scheduler.cron import Schedule, parse_schedule
from asyncq._scheduler.goformat import go_option_strings
from asyncq.client import FIRE_LOCK_TTL, Client
from asyncq.errors import (
    AsyncqError,
    ConnectionFailedError,
    InvalidOptionError,
    NotReplicatedError,
)
from asyncq.task import Task, TaskInfo

__all__ = ["PeriodicTaskConfig", "PeriodicTaskManager", "Scheduler", "entry_message"]

# A fire this late is on time: the loop wakes some milliseconds after the fire, more on a
# busy machine, so with misfire_grace=0 ("no catch-up") every fire would count as missed.
ON_TIME = 1.0

GO_ZERO_TIME = -62135596800  # Go's time.Time{} in Unix seconds: "never"
HISTORY_SIZE = 1000
# An entry's history outlives its last fire by this long after the next fire was due: an
# entry that was removed (or whose schedulers all stopped) leaves no key behind for good.
HISTORY_KEPT_AFTER_LAST_FIRE = 30 * 24 * 3600
NAMESPACE = uuid.UUID("6f1c9a52-4a41-4c3e-9b1e-0c4a9e3c2d7a")  # asyncq's entry ids

BeforeEnqueue = Callable[[Task, Mapping[str, object]], "Awaitable[None] | None"]
AfterEnqueue = Callable[["TaskInfo | None", "BaseException | None"], "Awaitable[None] | None"]


@dataclass(frozen=True)
class PeriodicTaskConfig:
    """One periodic task, as a config provider returns it."""

    spec: str
    task: Task
    options: Mapping[str, object] = field(default_factory=dict)


@dataclass
class _Entry:
    id: str
    spec: str
    schedule: Schedule
    task: Task
    options: dict[str, object]
    option_strings: list[str]
    next_fire: datetime | None
    prev_fire: datetime | None = None


def _stamp(moment: datetime | None) -> Timestamp:
    return Timestamp(seconds=int(moment.timestamp()) if moment else GO_ZERO_TIME)


def entry_message(
    entry_id: str,
    spec: str,
    task: Task,
    option_strings: list[str],
    next_fire: datetime | None,
    prev_fire: datetime | None,
) -> bytes:
    """asynq's ``SchedulerEntry`` bytes (times in whole seconds, Go's zero time for "never")."""
    return SchedulerEntry(
        id=entry_id,
        spec=spec,
        task_type=task.type,
        task_payload=task.payload,
        enqueue_options=option_strings,
        next_enqueue_time=_stamp(next_fire),
        prev_enqueue_time=_stamp(prev_fire),
    ).SerializeToString()


async def _call(hook: Callable[..., Any] | None, *args: Any) -> None:
    if hook is None:
        return
    result = hook(*args)
    if inspect.isawaitable(result):
        await result


class Scheduler:
    """Fires registered entries (cron specs, descriptors, ``@every``) into queues.

    ``location`` is the time zone of cron specs (a ``tzinfo`` or a zone name; a spec's
    own ``CRON_TZ=`` prefix wins). ``before_enqueue(task, options)`` and
    ``after_enqueue(info, error)`` run around each fire (``info`` is None when another
    scheduler enqueued that fire). A fire found late (the process was paused) is still
    enqueued within ``misfire_grace`` seconds, else skipped. ``wait_replicas`` and
    ``replica_timeout`` are the ``Client``'s: a fire stored but not confirmed by the
    replicas is logged and given to ``after_enqueue`` with its ``NotReplicatedError``.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        location: tzinfo | str = UTC,
        heartbeat_interval: float = 5.0,
        misfire_grace: float = 60.0,
        before_enqueue: BeforeEnqueue | None = None,
        after_enqueue: AfterEnqueue | None = None,
        clock: Clock | None = None,
        wait_replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        if not 0 <= misfire_grace < FIRE_LOCK_TTL - ON_TIME:
            raise InvalidOptionError(
                f"misfire_grace must be below {FIRE_LOCK_TTL - ON_TIME}s (a fire lock lives "
                f"{FIRE_LOCK_TTL}s), "
                "or a late scheduler could enqueue a fire twice"
            )
        self.connector = connector
        self.location = _zone(location)
        self.heartbeat_interval = heartbeat_interval
        self.misfire_grace = misfire_grace
        self.before_enqueue = before_enqueue
        self.after_enqueue = after_enqueue
        self.clock: Clock = clock or SystemClock()
        self.logger = logging.getLogger("asyncq.scheduler")
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
        self._client = Client(
            connector,
            clock=self.clock,
            wait_replicas=wait_replicas,
            replica_timeout=replica_timeout,
        )
        self._entries: dict[str, _Entry] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    # -- entries -----------------------------------------------------------------------------

    def register(
        self,
        spec: str,
        task: Task,
        *,
        entry_id: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> str:
        """Add an entry; returns its id. The same spec, task and options give the same id
        in every process, which is what lets several schedulers share the work."""
        entry = self._new_entry(spec, task, entry_id, options)
        self._entries[entry.id] = entry
        return entry.id

    def _new_entry(
        self, spec: str, task: Task, entry_id: str | None, options: Mapping[str, object]
    ) -> _Entry:
        """An entry, checked: a bad schedule or option raises ``InvalidOptionError``."""
        try:
            schedule = parse_schedule(spec, self.location)
        except ValueError as error:
            raise InvalidOptionError(f"bad schedule {spec!r}: {error}") from None
        check_names(options)
        resolve(options, self.clock.time())  # refuse bad options now, not at the first fire
        strings = go_option_strings(options)
        ident = entry_id or self._entry_id(spec, task, strings)
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        return _Entry(ident, spec, schedule, task, dict(options), strings, schedule.next_after(now))

    def _entry_id(self, spec: str, task: Task, strings: list[str]) -> str:
        zone = getattr(self.location, "key", str(self.location))
        parts = [spec, task.type, task.payload.hex(), *sorted(strings), zone]
        if task.headers:
            # Entries that differ only in headers are different entries (each with its own
            # fire lock). Left out when empty, so the ids of entries without headers (and
            # with them their fire history) stay what they were.
            parts.append(json.dumps(sorted(task.headers.items())))
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        return str(uuid.uuid5(NAMESPACE, digest))

    def unregister(self, entry_id: str) -> None:
        """Remove an entry; raises ``KeyError`` if there is no such entry."""
        if entry_id not in self._entries:
            raise KeyError(f"no scheduler entry {entry_id!r}")
        del self._entries[entry_id]

    @property
    def entry_ids(self) -> list[str]:
        """The ids of the registered entries."""
        return list(self._entries)

    def next_fire(self, entry_id: str) -> datetime | None:
        """When the entry fires next (UTC)."""
        return self._entries[entry_id].next_fire

    def sync(self, configs: Iterable[PeriodicTaskConfig]) -> None:
        """Make the entries exactly ``configs``: new ones are added, missing ones removed,
        unchanged ones keep their schedule (asynq's PeriodicTaskManager sync).

        A config with a bad schedule or option does not hold the others back: every good
        one is in effect when this raises ``InvalidOptionError`` naming the bad ones.
        """
        wanted: dict[str, _Entry] = {}
        refused: list[str] = []
        for config in configs:
            try:
                entry = self._new_entry(config.spec, config.task, None, config.options)
            except InvalidOptionError as error:
                refused.append(f"{config.spec!r} ({config.task.type}): {error}")
                continue
            wanted[entry.id] = entry
        for ident in [i for i in self._entries if i not in wanted]:
            self.unregister(ident)
        for ident, entry in wanted.items():
            self._entries.setdefault(ident, entry)  # an unchanged entry keeps its next fire
        if refused:
            raise InvalidOptionError(
                f"{len(refused)} periodic task config(s) refused, the others are in effect: "
                + "; ".join(refused)
            )

    # -- firing --------------------------------------------------------------------------

    async def tick(self) -> float:
        """Enqueue every entry that is due now; return seconds until the next fire."""
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        for entry in list(self._entries.values()):
            if entry.next_fire is None or entry.next_fire > now:
                continue
            fire = entry.next_fire
            later = entry.schedule.next_after(fire)
            while later is not None and later <= now:  # only the latest missed fire counts
                fire, later = later, entry.schedule.next_after(later)
            entry.next_fire = later
            if (now - fire).total_seconds() > self.misfire_grace + ON_TIME:
                self.logger.warning("entry %s missed its fire at %s; skipped", entry.id, fire)
            elif not await self._fire(entry, fire):
                # Redis failed: try this fire again at the next tick while within the grace.
                # The fire lock keeps a retried fire from being enqueued twice.
                entry.next_fire = fire
        upcoming = [e.next_fire for e in self._entries.values() if e.next_fire is not None]
        return max((min(upcoming) - now).total_seconds(), 0.0) if upcoming else 3600.0

    async def _fire(self, entry: _Entry, fire: datetime) -> bool:
        """Enqueue one fire; False when Redis failed and the fire should be tried again."""
        entry.prev_fire = fire
        info: TaskInfo | None = None
        error: BaseException | None = None
        retry = False
        try:
            await _call(self.before_enqueue, entry.task, entry.options)
            info = await self._client.enqueue_once(
                entry.task, entry.options, (entry.id, int(fire.timestamp()))
            )
            if info is not None:
                await self._record(entry, info.id)
        except NotReplicatedError as unconfirmed:  # written: not tried again
            info, error = unconfirmed.info, unconfirmed
            self.logger.warning("entry %s: %s", entry.id, unconfirmed)
            try:
                await self._record(entry, info.id)
            except Exception as failure:  # the history is a record, the fire happened
                self.logger.warning("entry %s: history not written: %s", entry.id, failure)
        except ConnectionFailedError as failure:
            error, retry = failure, True
            self.logger.error("entry %s could not enqueue (will retry): %s", entry.id, failure)
        except Exception as failure:  # a bad option, a hook that raised: reported, not retried
            error = failure
            self.logger.error("entry %s could not enqueue: %s", entry.id, failure)
        with contextlib.suppress(Exception):
            await _call(self.after_enqueue, info, error)
        return not retry

    async def _record(self, entry: _Entry, task_id: str) -> None:
        """Add a fire to the entry's history, which lives until some time after the entry's
        next fire was due (see ``HISTORY_KEPT_AFTER_LAST_FIRE``)."""
        now_ns = self.clock.time_ns()
        now = now_ns // 10**9
        event = SchedulerEnqueueEvent(
            task_id=task_id, enqueue_time=Timestamp(seconds=now, nanos=now_ns % 10**9)
        )
        # Relative to the scheduler's clock, not Redis's: the two may disagree.
        until_next = 0 if entry.next_fire is None else int(entry.next_fire.timestamp()) - now
        lifetime = max(until_next, 0) + HISTORY_KEPT_AFTER_LAST_FIRE
        await self.connector.run_script(
            load_script("record_scheduler_event"),
            [scheduler_history_key(entry.id)],
            [now, event.SerializeToString(), HISTORY_SIZE, lifetime],
        )

    async def heartbeat(self) -> None:
        """Publish the entries for asynq's tools (TTL two beats)."""
        ttl = max(int(self.heartbeat_interval * 2), 1)
        key = scheduler_entries_key(self.id)
        messages = [
            entry_message(e.id, e.spec, e.task, e.option_strings, e.next_fire, e.prev_fire)
            for e in self._entries.values()
        ]
        await self.connector.execute("ZADD", ALL_SCHEDULERS, int(self.clock.time()) + ttl, key)
        await self.connector.run_script(
            load_script("write_scheduler_entries"), [key], [ttl, *messages]
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, publish the entries and start firing in the background."""
        await self.connector.connect()
        await self.heartbeat()
        self._tasks = [
            asyncio.create_task(self._loop(self.tick, cap=1.0), name="asyncq-scheduler"),
            asyncio.create_task(self._loop(self._beat, cap=self.heartbeat_interval)),
        ]
        self.logger.info("scheduler %s started with %d entries", self.id, len(self._entries))

    async def _beat(self) -> float:
        await self.heartbeat()
        return self.heartbeat_interval

    async def _loop(self, step: Callable[[], Awaitable[float]], cap: float) -> None:
        while not self._stop.is_set():
            try:
                delay = await step()
            except Exception:
                self.logger.exception("scheduler step failed; trying again")
                delay = cap
            # Capped, so a clock that jumps (or a test's moved clock) is noticed soon.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, cap)):
                    await self._stop.wait()

    async def shutdown(self) -> None:
        """Stop firing and remove this scheduler's entries from the tools' view.

        The enqueue history stays: other schedulers may share the same entries.
        """
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        key = scheduler_entries_key(self.id)
        with contextlib.suppress(AsyncqError):
            await self.connector.execute("ZREM", ALL_SCHEDULERS, key)
            await self.connector.execute("DEL", key)
        await self.connector.aclose()

    async def run(self) -> None:
        """Fire until SIGTERM or SIGINT, then shut down."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self.shutdown()


ConfigProvider = Callable[
    [], "Iterable[PeriodicTaskConfig] | Awaitable[Iterable[PeriodicTaskConfig]]"
]


class PeriodicTaskManager:
    """Keeps a scheduler's entries in step with a config provider (asynq's
    PeriodicTaskManager): ``provider()`` is called every ``sync_interval`` seconds and
    its configs replace the entries; a provider that fails leaves them as they were."""

    def __init__(
        self, scheduler: Scheduler, provider: ConfigProvider, *, sync_interval: float = 180.0
    ) -> None:
        self.scheduler = scheduler
        self.provider = provider
        self.sync_interval = sync_interval

    async def sync_now(self) -> None:
        """Ask the provider once and apply its configs."""
        configs = self.provider()
        if inspect.isawaitable(configs):
            configs = await configs
        self.scheduler.sync(configs)

    async def run(self) -> None:
        """Sync, run the scheduler, and sync again every ``sync_interval`` until stopped."""
        await self.sync_now()
        syncer = asyncio.create_task(self._sync_loop())
        try:
            await self.scheduler.run()
        finally:
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncer

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self.sync_now()
            except InvalidOptionError as error:
                self.scheduler.logger.error("%s", error)
            except Exception:
                self.scheduler.logger.exception("config provider failed; entries unchanged")


def _zone(location: tzinfo | str) -> tzinfo:
    """``location`` as a time zone: a ``tzinfo`` as it is, a name looked up (IANA's, as
    asynq's ``time.LoadLocation``), anything else refused with what to give."""
    if isinstance(location, tzinfo):
        return location
    if not isinstance(location, str):
        raise InvalidOptionError(
            f"location must be a tzinfo or a time zone name, got {type(location).__name__}"
        )
    try:
        return ZoneInfo(location)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidOptionError(
            f"location {location!r} is no time zone known here; give an IANA name such as "
            "'Europe/Paris' or 'UTC' (on a system without time zone data, install tzdata)"
        ) from None
