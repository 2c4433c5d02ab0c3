"""The Inspector: look at and manage queues, tasks, servers and schedulers.

It reads and writes the state asynq stores, so it sees what Go's asynq writes and
Go's tools see what it changes. Everything works on a Redis Cluster and on one Redis.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from redis.exceptions import RedisError, ResponseError

from asyncq._broker.inspect import SET_STATES, InspectBroker, RawTask
from asyncq._broker.keys import (
    ALL_QUEUES,
    ALL_SCHEDULERS,
    ALL_SERVERS,
    CANCEL_CHANNEL,
    scheduler_history_key,
    validate_queue_name,
)
from asyncq._broker.message import decode_message
from asyncq._broker.rdb import Broker
from asyncq._cluster.connector import Connector
from asyncq._cluster.slots import queue_slot
from asyncq._proto.asynq_pb2 import (
    SchedulerEnqueueEvent,
    SchedulerEntry,
    ServerInfo,
    TaskMessage,
    WorkerInfo,
)
from asyncq.errors import (
    InvalidOptionError,
    QueueNotEmptyError,
    QueueNotFoundError,
    TaskDecodeError,
    TaskNotFoundError,
    TaskStateError,
)
from asyncq.task import TaskInfo, TaskState

__all__ = [
    "ClusterNode",
    "DailyStats",
    "GroupInfo",
    "Inspector",
    "QueueInfo",
    "SchedulerEntryInfo",
    "SchedulerEvent",
    "ServerRecord",
    "WorkerRecord",
]

STATES = ("pending", "active", "scheduled", "retry", "archived", "completed", "aggregating")


# The earliest and latest times a datetime holds (years 1 and 9999), in UTC.
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _utc(seconds: float) -> datetime:
    """``seconds`` since the epoch in UTC. Another writer can store any int64 (Go's tools
    print them all): a time before year 1 reads as ``datetime.min``, one after year 9999 (or
    NaN) as ``datetime.max`` (both in UTC), rather than failing the whole answer."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return _EARLIEST if seconds < 0 else _LATEST


def _span(seconds: float) -> timedelta:
    """``seconds`` as a duration; one longer than a timedelta holds (about 2.7 million
    years) reads as ``timedelta.max`` (``timedelta.min`` when negative)."""
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return timedelta.min if seconds < 0 else timedelta.max


def _stamp(ts: Timestamp) -> datetime:
    return _utc(ts.seconds + ts.nanos / 1e9)


def _optional_stamp(ts: Timestamp) -> datetime | None:
    # Go writes its zero time (year 1, negative seconds) for "never".
    return _stamp(ts) if ts.seconds > 0 else None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue's sizes, latency, counters and state at ``timestamp``."""

    queue: str
    size: int
    pending: int
    active: int
    scheduled: int
    retry: int
    archived: int
    completed: int
    aggregating: int
    groups: int
    processed_today: int
    failed_today: int
    processed_total: int
    failed_total: int
    paused: bool
    latency: timedelta
    memory_usage: int | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class DailyStats:
    """Processed and failed counts of one UTC day."""

    queue: str
    date: str
    processed: int
    failed: int


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """An aggregation group and how many tasks wait in it."""

    group: str
    size: int


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A task a server is running, as its heartbeat reports it."""

    task_id: str
    task_type: str
    payload: bytes
    queue: str
    started: datetime
    deadline: datetime


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """A running server (asyncq or asynq) as its heartbeat describes it."""

    id: str
    host: str
    pid: int
    concurrency: int
    queues: dict[str, int]
    strict_priority: bool
    status: str
    started: datetime
    active_workers: list[WorkerRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """A node holding a queue's slot: its node id and ``host:port``."""

    id: str
    address: str
    role: str


@dataclass(frozen=True, slots=True)
class SchedulerEntryInfo:
    """A periodic task registered by a running scheduler."""

    id: str
    spec: str
    task_type: str
    payload: bytes
    options: list[str]
    next_enqueue: datetime | None
    prev_enqueue: datetime | None


@dataclass(frozen=True, slots=True)
class SchedulerEvent:
    """One enqueue made by a scheduler entry."""

    task_id: str
    enqueued_at: datetime


_STATE_NAMES = frozenset(state.value for state in TaskState)
_log = logging.getLogger("asyncq.inspector")
# Indexes up to here pass through the listing script's numbers exactly (Lua's are doubles,
# and Redis refuses "1e+18" as an index); no list or set of tasks comes near it.
_FARTHEST_INDEX = 2**48
_BEING_AGGREGATED = -4  # the reply of run_task, archive_task and delete_task (see their scripts)


def task_info(msg: TaskMessage, state: str, result: bytes, score: str, now: float) -> TaskInfo:
    """A ``TaskInfo`` from the stored fields of a task; ``TaskDecodeError`` if its stored
    state is missing or unknown (a hash cut short, or not written by asynq or asyncq)."""
    if state not in _STATE_NAMES:
        raise TaskDecodeError(
            f"task {msg.id!r} of queue {msg.queue!r} has no valid state ({state!r}); "
            "its stored data is incomplete"
        )
    scored = float(score) if score else None
    next_at: datetime | None = None
    if state == "pending":
        next_at = _utc(now)
    elif state in ("scheduled", "retry") and scored is not None:
        next_at = _utc(scored)
    return TaskInfo(
        id=msg.id,
        queue=msg.queue,
        type=msg.type,
        payload=msg.payload,
        state=TaskState(state),
        max_retry=msg.retry,
        retried=msg.retried,
        headers=dict(msg.headers),
        last_error=msg.error_msg,
        last_failed_at=_utc(msg.last_failed_at) if msg.last_failed_at else None,
        timeout=_span(msg.timeout) if msg.timeout else None,
        deadline=_utc(msg.deadline) if msg.deadline else None,
        group=msg.group_key,
        next_process_at=next_at,
        retention=_span(msg.retention),
        completed_at=_utc(msg.completed_at) if msg.completed_at else None,
        result=result or None,
        is_orphaned=state == "active" and (scored is None or scored < now),
    )


_Record = TypeVar("_Record", ServerInfo, WorkerInfo, SchedulerEntry, SchedulerEnqueueEvent)


def _parsed(kind: type[_Record], raw: bytes, key: str) -> _Record | None:
    """A record of a server, worker or scheduler, or None (logged) when its bytes are not
    one: as in asynq's listings, one corrupt record is left out rather than failing all."""
    try:
        return kind.FromString(raw)
    except DecodeError as error:
        _log.warning("left out a corrupt %s in %s: %s", kind.__name__, key, error)
        return None


def _names(members: list[bytes], key: str, what: str) -> list[str]:
    """The members of a global set (queues, servers, schedulers) as text; one that is not
    UTF-8 (no asynq or asyncq writes one) is left out with a warning, not failing all."""
    names = []
    for member in members:
        try:
            names.append(member.decode())
        except UnicodeDecodeError:
            _log.warning("skipped %s %r in %s: its name is not UTF-8", what, member, key)
    return names


class Inspector:
    """Reads and manages queues. Use as ``async with Inspector(connector) as inspector:``."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._broker = Broker(connector)
        self._inspect = InspectBroker(self._broker)

    async def __aenter__(self) -> Inspector:
        await self.connector.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.connector.aclose()

    # -- queues ------------------------------------------------------------------------------

    async def queues(self) -> list[str]:
        """Every known queue name, sorted. A name that is not UTF-8 (another writer's) is
        left out and logged: no queue of asynq or asyncq can have it."""
        return sorted(
            _names(await self.connector.execute("SMEMBERS", ALL_QUEUES), ALL_QUEUES, "queue")
        )

    async def _queue(self, queue: str) -> Any:
        validate_queue_name(queue)
        if not await self.connector.execute("SISMEMBER", ALL_QUEUES, queue):
            raise QueueNotFoundError(f"queue {queue!r} does not exist")
        return self._broker.keys(queue)

    async def queue_info(self, queue: str) -> QueueInfo:
        """Sizes by state, latency of the oldest pending task, counters, pause and memory."""
        keys = await self._queue(queue)
        now = time.time()
        stats = await self._inspect.queue_stats(keys, now)
        pending, active, scheduled, retry, archived, completed = stats[:6]
        processed_today, failed_today, processed_total, failed_total, paused = stats[6:11]
        oldest_ns, groups, aggregating = stats[11:14]
        size = pending + active + scheduled + retry + archived + completed + aggregating
        latency = _span(max(now - oldest_ns / 1e9, 0)) if oldest_ns else timedelta(0)
        return QueueInfo(
            queue=queue, size=size, pending=pending, active=active, scheduled=scheduled,
            retry=retry, archived=archived, completed=completed, aggregating=aggregating,
            groups=groups, processed_today=processed_today, failed_today=failed_today,
            processed_total=processed_total, failed_total=failed_total, paused=bool(paused),
            latency=latency, memory_usage=await self._inspect.memory_usage(keys, size),
            timestamp=_utc(now),
        )  # fmt: skip

    async def history(self, queue: str, days: int = 7) -> list[DailyStats]:
        """Processed and failed counts per UTC day, today first (at most 90 days are kept)."""
        if not 1 <= days <= 90:
            raise InvalidOptionError("days must be between 1 and 90")
        keys = await self._queue(queue)
        rows = await self._inspect.history(keys, days, time.time())
        return [DailyStats(queue, day, processed, failed) for day, processed, failed in rows]

    async def pause(self, queue: str) -> None:
        """Stop workers (asyncq and asynq) from taking this queue's tasks. As in asynq, the
        queue need not exist yet: a queue can be paused before its first task."""
        keys = self._broker.keys(validate_queue_name(queue))
        if not await self._broker.pause(keys, time.time()):
            raise TaskStateError(f"queue {queue!r} is already paused")

    async def unpause(self, queue: str) -> None:
        """Let workers take this queue's tasks again (also a queue paused before its first
        task, by asyncq or by asynq)."""
        keys = self._broker.keys(validate_queue_name(queue))
        if not await self._broker.unpause(keys):
            raise TaskStateError(f"queue {queue!r} is not paused")

    async def delete_queue(self, queue: str, *, force: bool = False) -> None:
        """Delete a queue and every key it has. Refuses while tasks run; refuses a
        queue with tasks unless ``force``."""
        keys = await self._queue(queue)
        code = await self._inspect.remove_queue(keys, force, time.time())
        if code == -1:
            raise QueueNotEmptyError(f"queue {queue!r} has running tasks; try again later")
        if code == -2:
            raise QueueNotEmptyError(
                f"queue {queue!r} still has tasks; use force=True (CLI: --force) to delete them"
            )
        try:
            await self._inspect.delete_unlisted(keys)
        except (RedisError, OSError, TimeoutError) as error:
            # They expire within minutes; the queue itself is gone, so it is unlisted too.
            _log.warning(
                "queue %s is deleted, but not its fire locks and dequeue records (%s: %s); "
                "they expire within ten minutes",
                queue, type(error).__name__, error,
            )  # fmt: skip
        await self.connector.execute("SREM", ALL_QUEUES, queue)

    async def groups(self, queue: str) -> list[GroupInfo]:
        """The queue's aggregation groups and their sizes."""
        keys = await self._queue(queue)
        return [GroupInfo(g, size) for g, size in await self._inspect.groups(keys)]

    # -- tasks -------------------------------------------------------------------------------

    async def task_info(self, queue: str, task_id: str) -> TaskInfo:
        """One task, in whatever state it is."""
        keys = await self._queue(queue)
        found = await self._inspect.task_info(keys, task_id)
        if found is None:
            raise TaskNotFoundError(f"no task {task_id!r} in queue {queue!r}")
        msg, state, result, score = found
        return task_info(decode_message(msg, where=keys.task(task_id)), state, result, score,
                         time.time())  # fmt: skip

    async def list_tasks(
        self, queue: str, state: str, *, page: int = 1, size: int = 30, group: str = ""
    ) -> list[TaskInfo]:
        """One page (1-based) of the tasks in ``state``, oldest first (``group`` for
        aggregating tasks). Active tasks tell whether their lease has run out."""
        if state not in STATES:
            raise InvalidOptionError(f"state must be one of {', '.join(STATES)}; got {state!r}")
        if state == "aggregating" and not group:
            raise InvalidOptionError("listing aggregating tasks needs a group")
        if page < 1 or size < 1:
            raise InvalidOptionError("page and size start at 1")
        keys = await self._queue(queue)
        start = (page - 1) * size
        if start > _FARTHEST_INDEX:
            return []  # far past the end of any list Redis can hold, as any page past its end
        stop = min(start + size - 1, _FARTHEST_INDEX)
        raw = await self._inspect.list_tasks(keys, state, start, stop, group)
        listed = (self._listed(keys.name, state, item) for item in raw)
        return [info for info in listed if info is not None]

    @staticmethod
    def _listed(queue: str, listed_as: str, item: RawTask) -> TaskInfo | None:
        """One row of a listing, or None for a row that holds no task: as asynq's own
        listings do, one bad row is left out (and logged) rather than failing the page,
        whatever makes it unreadable."""
        raw_id, msg, raw_state, result, raw_score = item
        if not msg:
            # An id listed without a task hash (asynq leaves some behind when Redis evicts
            # keys), or a hash with no message: not a task.
            return None
        task_id = raw_id.decode(errors="backslashreplace")  # named in logs only
        state = raw_state.decode(errors="replace")
        if state not in _STATE_NAMES:
            state = listed_as  # a hash cut short: it is where it is listed
        try:
            decoded = decode_message(msg, where=f"{queue}/{task_id}")
            return task_info(decoded, state, result, raw_score.decode(), time.time())
        except TaskDecodeError as error:
            _log.warning("left out of the listing of %s: %s", queue, error)
        except Exception as error:  # any other row that cannot be read: leave it out too
            _log.warning(
                "left out of the listing of %s: task %s/%s cannot be read (%s: %s)",
                queue, queue, task_id, type(error).__name__, error,
            )  # fmt: skip
        return None

    async def run_task(self, queue: str, task_id: str) -> None:
        """Make a waiting task (scheduled, retry, archived, completed, aggregating) pending."""
        keys = await self._queue(queue)
        code = await self._inspect.run_task(keys, task_id, time.time_ns())
        self._check(code, queue, task_id, {-1: "is running", -2: "is already pending"})

    async def archive_task(self, queue: str, task_id: str) -> None:
        """Archive a task that waits (pending, scheduled, retry, aggregating)."""
        keys = await self._queue(queue)
        code = await self._inspect.archive_task(keys, task_id, time.time())
        self._check(
            code, queue, task_id,
            {-1: "is running", -2: "is already archived", -3: "is completed"},
        )  # fmt: skip

    async def delete_task(self, queue: str, task_id: str) -> None:
        """Delete a task that is not running, releasing its unique lock."""
        keys = await self._queue(queue)
        code = await self._inspect.delete_task(keys, task_id)
        self._check(code, queue, task_id, {-1: "is running; cancel it first"})

    @staticmethod
    def _check(code: int, queue: str, task_id: str, refusals: dict[int, str]) -> None:
        if code == 0:
            raise TaskNotFoundError(f"no task {task_id!r} in queue {queue!r}")
        if code == _BEING_AGGREGATED:
            # Between an aggregator's check and its delete the task sits in an aggregation
            # set; moving it then would leave it both there and in its new place.
            raise TaskStateError(
                f"task {task_id!r} is being aggregated right now; try again later (if its "
                "aggregator died, the task returns to its group within about 2 minutes)"
            )
        if code in refusals:
            raise TaskStateError(f"task {task_id!r} {refusals[code]}")

    async def run_all(self, queue: str, state: str, *, group: str = "") -> int:
        """Make every scheduled, retry, archived or aggregating (``group``) task pending."""
        self._allowed(state, ("scheduled", "retry", "archived", "aggregating"), group)
        keys = await self._queue(queue)
        return await self._inspect.run_all(keys, state, time.time_ns(), group)

    async def archive_all(self, queue: str, state: str, *, group: str = "") -> int:
        """Archive every pending, scheduled, retry or aggregating (``group``) task."""
        self._allowed(state, ("pending", "scheduled", "retry", "aggregating"), group)
        keys = await self._queue(queue)
        return await self._inspect.archive_all(keys, state, time.time(), group)

    async def delete_all(self, queue: str, state: str, *, group: str = "") -> int:
        """Delete every task in a state that is not active, releasing unique locks."""
        self._allowed(state, (*SET_STATES, "pending", "aggregating"), group)
        keys = await self._queue(queue)
        return await self._inspect.delete_all(keys, state, group)

    @staticmethod
    def _allowed(state: str, allowed: tuple[str, ...], group: str) -> None:
        if state not in allowed:
            raise InvalidOptionError(f"state must be one of {', '.join(allowed)}; got {state!r}")
        if state == "aggregating" and not group:
            raise InvalidOptionError("aggregating tasks are addressed by group: give group=")

    async def cancel(self, task_id: str) -> None:
        """Ask whichever worker runs ``task_id`` to cancel it (best effort, like asynq)."""
        await self.connector.execute("PUBLISH", CANCEL_CHANNEL, task_id)

    # -- servers, schedulers, cluster -------------------------------------------------------

    async def servers(self) -> list[ServerRecord]:
        """Running servers (asyncq and asynq) with the tasks they are running."""
        records = []
        for key in await self._live_members(ALL_SERVERS, "server"):
            raw = await self.connector.execute("GET", key)
            if raw is None:
                continue
            info = _parsed(ServerInfo, raw, key)
            if info is None:
                continue
            workers_key = key.replace("asynq:servers:", "asynq:workers:", 1)
            listed = await self.connector.execute("HVALS", workers_key)
            workers = [w for w in (_parsed(WorkerInfo, r, workers_key) for r in listed) if w]
            records.append(
                ServerRecord(
                    id=info.server_id, host=info.host, pid=info.pid,
                    concurrency=info.concurrency, queues=dict(info.queues),
                    strict_priority=info.strict_priority, status=info.status,
                    started=_stamp(info.start_time),
                    active_workers=[
                        WorkerRecord(w.task_id, w.task_type, w.task_payload, w.queue,
                                     _stamp(w.start_time), _stamp(w.deadline))
                        for w in workers
                    ],
                )
            )  # fmt: skip
        return sorted(records, key=lambda r: (r.host, r.pid, r.id))

    async def _live_members(self, index: str, what: str) -> list[str]:
        """Members of a heartbeat index whose expiry is in the future; prunes the rest."""
        now = int(time.time())
        await self.connector.execute("ZREMRANGEBYSCORE", index, "-inf", now - 1)
        members = await self.connector.execute("ZRANGEBYSCORE", index, now, "+inf")
        return _names(members, index, what)

    async def scheduler_entries(self) -> list[SchedulerEntryInfo]:
        """Periodic tasks registered by running schedulers (asyncq and asynq)."""
        entries = []
        for key in await self._live_members(ALL_SCHEDULERS, "scheduler"):
            for raw in await self.connector.execute("LRANGE", key, 0, -1):
                e = _parsed(SchedulerEntry, raw, key)
                if e is None:
                    continue
                entries.append(
                    SchedulerEntryInfo(
                        id=e.id, spec=e.spec, task_type=e.task_type, payload=e.task_payload,
                        options=list(e.enqueue_options),
                        next_enqueue=_optional_stamp(e.next_enqueue_time),
                        prev_enqueue=_optional_stamp(e.prev_enqueue_time),
                    )
                )  # fmt: skip
        return sorted(entries, key=lambda e: e.id)

    async def scheduler_history(
        self, entry_id: str, *, page: int = 1, size: int = 30
    ) -> list[SchedulerEvent]:
        """A scheduler entry's enqueue events, newest first."""
        if page < 1 or size < 1:
            raise InvalidOptionError("page and size start at 1")
        start = (page - 1) * size
        key = scheduler_history_key(entry_id)
        raw = await self.connector.execute("ZREVRANGE", key, start, start + size - 1)
        events = (_parsed(SchedulerEnqueueEvent, r, key) for r in raw)
        return [SchedulerEvent(e.task_id, _stamp(e.enqueue_time)) for e in events if e]

    def cluster_key_slot(self, queue: str) -> int:
        """The cluster slot that holds every key of ``queue``."""
        return queue_slot(validate_queue_name(queue))

    async def cluster_nodes(self, queue: str) -> list[ClusterNode]:
        """The nodes that hold ``queue``'s slot: the master first, then its replicas."""
        if not self.connector.is_cluster:
            raise InvalidOptionError("cluster_nodes needs a Redis Cluster (RedisClusterConnector)")
        slot = self.cluster_key_slot(queue)
        try:
            shards = await self.connector.call(lambda c: c.execute_command("CLUSTER SHARDS"))
        except ResponseError:  # Redis 6.2 has no CLUSTER SHARDS
            return await self._nodes_from_cluster_nodes(queue, slot)
        for shard in _shards(shards):
            if any(lo <= slot <= hi for lo, hi in _ranges(shard.get("slots", []))):
                # Failed or still-syncing nodes are left out, as CLUSTER SLOTS (what asynq
                # reads) leaves them out.
                live = [n for n in shard.get("nodes", []) if n.get("health") == "online"]
                nodes = [_node(n, self.connector.tls) for n in live]
                nodes = [n for n in nodes if n.role in ("master", "replica")]
                return sorted(nodes, key=lambda n: n.role != "master")
        raise QueueNotFoundError(f"no node serves slot {slot} of queue {queue!r}")

    async def _nodes_from_cluster_nodes(self, queue: str, slot: int) -> list[ClusterNode]:
        """``cluster_nodes`` from ``CLUSTER NODES``, for servers without ``CLUSTER SHARDS``."""
        table = await self.connector.call(lambda c: c.cluster_nodes())
        for address, fields in table.items():
            flags = str(fields.get("flags", ""))
            ranges = [(int(r[0]), int(r[-1])) for r in fields.get("slots", [])]
            if (
                "master" in flags
                and "fail" not in flags
                and any(lo <= slot <= hi for lo, hi in ranges)
            ):
                master_id = str(fields["node_id"])
                replicas = [
                    ClusterNode(str(f["node_id"]), addr, "replica")
                    for addr, f in table.items()
                    if f.get("master_id") == master_id and "fail" not in str(f.get("flags", ""))
                ]
                return [
                    ClusterNode(master_id, address, "master"),
                    *sorted(replicas, key=lambda n: n.address),
                ]
        raise QueueNotFoundError(f"no node serves slot {slot} of queue {queue!r}")


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {_decode(k): _decode(v) for k, v in value.items()}
    return value


def _pairs(items: Any) -> dict[str, Any]:
    if isinstance(items, dict):
        return dict(_decode(items))
    items = _decode(items)
    return dict(zip(items[::2], items[1::2], strict=False))


def _shards(reply: Any) -> list[dict[str, Any]]:
    """CLUSTER SHARDS as a list of dicts, whichever shape the client returned."""
    if isinstance(reply, dict):  # redis-py may already key it by node
        reply = next(iter(reply.values()))
    shards = []
    for shard in reply:
        fields = _pairs(shard)
        fields["nodes"] = [_pairs(n) for n in fields.get("nodes", [])]
        shards.append(fields)
    return shards


def _ranges(slots: Any) -> list[tuple[int, int]]:
    """Slot ranges from CLUSTER SHARDS: a flat [lo, hi, lo, hi] list or (lo, hi) pairs."""
    if slots and isinstance(slots[0], list | tuple):
        return [(int(lo), int(hi)) for lo, hi in slots]
    return [(int(lo), int(hi)) for lo, hi in zip(slots[::2], slots[1::2], strict=False)]


def _node(fields: dict[str, Any], tls: bool) -> ClusterNode:
    host = fields.get("ip") or fields.get("endpoint") or fields.get("hostname", "")
    # A node with TLS lists both ports: the one this connector uses is its address (as
    # CLUSTER SLOTS, which asynq reads, answers a TLS client with the TLS port). A node
    # serving only one kind lists only that one.
    ports = ("tls-port", "port") if tls else ("port", "tls-port")
    port = next((fields[name] for name in ports if fields.get(name)), "")
    return ClusterNode(
        id=str(fields.get("id", "")), address=f"{host}:{port}", role=str(fields.get("role", ""))
    )
