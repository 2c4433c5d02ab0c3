"""The broker: asynq's RDB verbs in snake_case, the only layer that runs commands.

Each verb maps to a method of asynq's ``internal/rdb/rdb.go`` and leaves Redis in
a state a Go peer could have produced. Components use the broker, never raw Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from asyncq._aio import mark_seen
from asyncq._broker.keys import ALL_QUEUES, QueueKeys
from asyncq._broker.packing import pack_pairs
from asyncq._broker.scripts import LuaScript, load_script
from asyncq._cluster.connector import Connector
from asyncq._options import new_task_id

__all__ = [
    "DUPLICATE",
    "ENQUEUED",
    "ID_CONFLICT",
    "ID_CONFLICT_UNCONFIRMED",
    "UNCONFIRMED",
    "Broker",
]

# Results of the enqueue-family scripts.
ENQUEUED = 1
ID_CONFLICT = 0
DUPLICATE = -1
ALREADY_FIRED = -2  # a scheduler's fire lock was taken by another scheduler
UNCONFIRMED = 2  # stored, but fewer replicas than asked for confirmed it in time
# An id found taken while the replicas did not confirm: the caller's own generated id
# (a re-sent call's first send stored it) is UNCONFIRMED; another is a real conflict.
ID_CONFLICT_UNCONFIRMED = 3

# How long a client trusts that it has added a queue to `asynq:queues`. asynq caches
# it forever, so a queue removed by another process stays invisible to the CLI until
# the client restarts; a short lifetime re-adds it at the cost of one SADD a minute.
QUEUE_REGISTRATION_TTL = 60.0

STATS_TTL = 90 * 24 * 3600  # daily counters expire after 90 days, as asynq's do
ARCHIVE_MAX_AGE = 90 * 24 * 3600
ARCHIVE_MAX_SIZE = 10_000
FORWARD_BATCH = 100
# How long a dequeue remembers what it took, for a re-sent call: longer than the
# connector keeps retrying one call.
DEQUEUE_RECORD_TTL = 60

_log = logging.getLogger("asyncq.broker")

Arg = str | bytes | int | float


def utc_date(unix_seconds: float) -> str:
    """The UTC day of a time, as the daily counters name it (``YYYY-MM-DD``)."""
    return _day_name(int(unix_seconds // 86400))


@lru_cache(maxsize=4)
def _day_name(day: int) -> str:
    # Called for every acknowledgement: the name changes once a day, so it is cached.
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


class Broker:
    """asynq's storage verbs over a connector (cluster or single Redis)."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._keys: dict[str, QueueKeys] = {}
        self._registered: dict[str, float] = {}
        self._registering: dict[str, asyncio.Future[None]] = {}
        # queue -> records of its answered dequeues not yet deleted (one per call in flight
        # at most: each call deletes one)
        self._dequeue_records: dict[str, list[str]] = {}
        # (replicas, seconds): the enqueue-family verbs wait until that many replicas hold
        # each write, and answer UNCONFIRMED for a task stored without them (see Client).
        self.wait_replicas: tuple[int, float] | None = None

    def keys(self, queue: str) -> QueueKeys:
        """The (cached) keys of ``queue``; raises ``InvalidQueueNameError`` for a bad name."""
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys(queue)
        return keys

    def queue_registered(self, queue: str) -> bool:
        """Whether this client added ``queue`` to ``asynq:queues`` within the last minute
        (a check without a coroutine, for the enqueue hot path)."""
        since = time.monotonic() - self._registered.get(queue, -QUEUE_REGISTRATION_TTL)
        return since < QUEUE_REGISTRATION_TTL

    async def register_queue(self, queue: str) -> None:
        """``SADD asynq:queues <queue>``, sent at most once a minute per queue and client.

        Callers that find the queue unregistered at the same moment (a burst of first
        enqueues) share one ``SADD``, instead of one each over as many new connections.
        """
        if self.queue_registered(queue):
            return
        sending = self._registering.get(queue)
        if sending is None:
            sending = self._registering[queue] = asyncio.ensure_future(self._register(queue))
            # Seen at once, so a failure whose callers all left is not reported.
            sending.add_done_callback(mark_seen)
        await asyncio.shield(sending)  # a cancelled caller leaves the others' SADD alone

    async def _register(self, queue: str) -> None:
        try:
            await self.connector.execute("SADD", ALL_QUEUES, queue)
            self._registered[queue] = time.monotonic()
        finally:
            # Gone as soon as it is done, so the next caller after a failure tries again.
            self._registering.pop(queue, None)

    async def enqueue(
        self,
        keys: QueueKeys,
        task_id: str,
        msg: bytes,
        now_ns: int,
        unique_key: str,
        ttl: int,
        fire: tuple[str, int] = ("", 0),
    ) -> int:
        """asynq's Enqueue / EnqueueUnique: a new pending task.

        Returns ENQUEUED, ID_CONFLICT or DUPLICATE, as every enqueue-family verb does
        (or UNCONFIRMED, when ``wait_replicas`` is set and the replicas did not confirm).
        """
        script_keys = [keys.task(task_id), keys.pending]
        if unique_key:
            script_keys.append(unique_key)
        args: list[Arg] = [msg, task_id, now_ns, keys.wakeup, ttl, *fire]
        return await self._store_one(load_script("enqueue"), script_keys, args, keys, task_id, msg)

    async def schedule(
        self,
        keys: QueueKeys,
        task_id: str,
        msg: bytes,
        process_at: int,
        group: str,
        unique_key: str,
        ttl: int,
        fire: tuple[str, int] = ("", 0),
    ) -> int:
        """asynq's Schedule / ScheduleUnique: a new task due at ``process_at`` (Unix s)."""
        script_keys = [keys.task(task_id), keys.scheduled, keys.groups]
        if unique_key:
            script_keys.append(unique_key)
        args: list[Arg] = [msg, process_at, task_id, group, ttl, *fire]
        return await self._store_one(load_script("schedule"), script_keys, args, keys, task_id, msg)

    async def add_to_group(
        self,
        keys: QueueKeys,
        task_id: str,
        msg: bytes,
        now: int,
        group: str,
        unique_key: str,
        ttl: int,
        fire: tuple[str, int] = ("", 0),
    ) -> int:
        """asynq's AddToGroup / AddToGroupUnique: a new task waiting for aggregation."""
        script_keys = [keys.task(task_id), keys.group(group), keys.groups]
        if unique_key:
            script_keys.append(unique_key)
        args: list[Arg] = [msg, task_id, now, group, ttl, *fire]
        return await self._store_one(
            load_script("add_to_group"), script_keys, args, keys, task_id, msg
        )

    async def enqueue_batch(
        self,
        keys: QueueKeys,
        task_ids: list[str],
        messages: list[bytes],
        now_ns: int,
        *,
        fresh_ids: bool = False,
        ends: float | None = None,
    ) -> list[int]:
        """Many plain Enqueues into one queue in one call: ENQUEUED or ID_CONFLICT per task.

        ``fresh_ids``: every id is a random UUID4 made for this call, so no stored task
        can hold one (but a re-send's own), and a first send need not look for them.
        ``ends``: the monotonic time the call gives up by (see ``Connector.run_script``).
        """
        blob = pack_pairs([task_id.encode() for task_id in task_ids], messages)
        fresh = "1" if fresh_ids else "0"
        args: list[Arg] = [now_ns, keys.task_prefix, keys.wakeup, blob, fresh]
        script_keys = [keys.pending, keys.slot_guard]
        taken, confirmed = await self._store(
            load_script("enqueue_batch"), script_keys, args, keys, blob,
            lambda taken: len(task_ids) - len(taken), ends,
        )  # fmt: skip
        codes = [ENQUEUED if confirmed else UNCONFIRMED] * len(task_ids)
        for position in taken:
            codes[int(position) - 1] = ID_CONFLICT if confirmed else ID_CONFLICT_UNCONFIRMED
        return codes

    async def _store_one(
        self,
        script: LuaScript,
        script_keys: list[str],
        args: list[Arg],
        keys: QueueKeys,
        task_id: str,
        msg: bytes,
    ) -> int:
        if self.wait_replicas is None:  # the common case: no message packed for a check
            reply, _ = await self._store(script, script_keys, args, keys, b"", _one_if_stored)
            return int(reply)
        pair = pack_pairs([task_id.encode()], [msg])
        reply, confirmed = await self._store(script, script_keys, args, keys, pair, _one_if_stored)
        code = int(reply)
        if confirmed:
            return code
        return {ENQUEUED: UNCONFIRMED, ID_CONFLICT: ID_CONFLICT_UNCONFIRMED}.get(code, code)

    async def _store(
        self,
        script: LuaScript,
        script_keys: list[str],
        args: list[Arg],
        keys: QueueKeys,
        stored: bytes,
        stored_count: Callable[[Any], int],
        ends: float | None = None,
    ) -> tuple[Any, bool]:
        """Run one of the enqueue-family scripts; returns its reply and whether the
        replicas asked for (``wait_replicas``) confirmed it. The scripts' last argument
        says whether the call may repeat one that was stored: then the task's own
        message, found in place, means success rather than an id conflict (a reply lost
        to a timeout or failover). ``stored``: the (id, message) pairs the call stores,
        packed, for the check that confirms them after a call redis-py had to take;
        ``stored_count(reply)``: how many of them the reply says were stored. ``ends``:
        when the call gives up (a call waiting for replicas keeps its own limits)."""
        first = [*args, "0"]
        if self.wait_replicas is None:
            again = [*args, "1"]
            reply = await self.connector.run_script(
                script, script_keys, first, resend=again, ends=ends
            )
            return reply, True
        again = [*args, "2"]  # a task found stored is written again, for the WAIT behind
        replicas, seconds = self.wait_replicas
        check_args: list[Arg] = [keys.task_prefix, stored]
        check = (load_script("confirm_stored"), [keys.slot_guard], check_args)
        reply, acknowledged, found = await self.connector.replicated.run(
            script, script_keys, first, resend=again, confirm=check, replicas=replicas,
            replica_timeout=seconds,
        )  # fmt: skip
        # Where the check ran, a task it did not find may have been lost with its master.
        confirmed = acknowledged >= replicas and (found is None or found >= stored_count(reply))
        return reply, confirmed

    async def run_queue_script(
        self, keys: QueueKeys, name: str, script_keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """Run one of the queue scripts that build keys from their arguments (task hashes,
        groups), with the queue's slot guard declared last: while the slot migrates to
        another master, Redis refuses the call before it runs and the connector retries,
        instead of the script failing at the first key already moved (``keys.slot_guard``)."""
        return await self.connector.run_script(
            load_script(name), [*script_keys, keys.slot_guard], args
        )

    # -- the worker's verbs ------------------------------------------------------------------

    async def dequeue(
        self, keys: QueueKeys, count: int, lease_expiry: int
    ) -> list[tuple[str, bytes]]:
        """asynq's Dequeue for up to ``count`` tasks at once: (id, message bytes) pairs."""
        # The token is fixed before the connector's retries, so a re-sent call is replayed.
        # The previous call's record is dropped by this one: it has been answered, and so
        # no extra key outlives the next poll.
        script_keys, args = self.dequeue_call(keys, count, lease_expiry)
        return await self.send_dequeue(keys, script_keys, args)

    async def send_dequeue(
        self, keys: QueueKeys, script_keys: list[str], args: list[Arg]
    ) -> list[tuple[str, bytes]]:
        """Run a dequeue made by ``dequeue_call`` through the connector (with its retries);
        sent again with the same record key, it hands back what the first send took."""
        reply = await self.connector.run_script(load_script("dequeue"), script_keys, args)
        return self.dequeue_taken(keys, script_keys[-1], reply)

    def dequeue_call(
        self, keys: QueueKeys, count: int, lease_expiry: int
    ) -> tuple[list[str], list[Arg]]:
        """The keys and arguments of one dequeue script call (for a caller that sends it
        itself); hand its reply to ``dequeue_taken``."""
        record = f"{keys.prefix}dequeue:{new_task_id()}"
        answered = self._dequeue_records.get(keys.name)
        previous = answered.pop(0) if answered else ""
        script_keys = [keys.pending, keys.paused, keys.active, keys.lease, record]
        return script_keys, [lease_expiry, keys.task_prefix, count, DEQUEUE_RECORD_TTL, previous]

    def dequeue_taken(
        self, keys: QueueKeys, record: str, reply: list[bytes] | int
    ) -> list[tuple[str, bytes]]:
        """The (id, message bytes) pairs of a dequeue's reply; keeps its record for the
        next call to delete. (A paused queue answers 0: nothing taken.)"""
        if not isinstance(reply, list):
            return []
        if reply:
            self._dequeue_records.setdefault(keys.name, []).append(record)
        return _id_message_pairs(reply)

    async def done(self, keys: QueueKeys, task_id: str, unique_key: str, now: float) -> bool:
        """asynq's Done: delete a finished task and count it; False if it held no lease."""
        script_keys = [
            keys.active,
            keys.lease,
            keys.task(task_id),
            keys.processed_on(utc_date(now)),
            keys.processed_total,
        ]
        if unique_key:
            script_keys.append(unique_key)
        args: list[Arg] = [task_id, int(now) + STATS_TTL]
        return bool(await self.connector.run_script(load_script("done"), script_keys, args))

    async def forget_dequeues(self) -> None:
        """Delete the records of the last dequeues (a stopping worker leaves no extra key)."""
        records = [record for kept in self._dequeue_records.values() for record in kept]
        self._dequeue_records = {}
        for record in records:
            await self.connector.execute("DEL", record)

    async def done_many(
        self, keys: QueueKeys, tasks: list[tuple[str, str]], now: float
    ) -> list[bool]:
        """asynq's Done for several tasks of one queue in one call.

        ``tasks`` holds (task id, unique key or ""); returns, per task, whether it
        was done (False: it held no lease, and nothing was changed for it).
        """
        args: list[Arg] = [int(now) + STATS_TTL, keys.task_prefix, keys.unique_prefix]
        prefix_length = len(keys.unique_prefix)
        for task_id, unique_key in tasks:
            own = unique_key.startswith(keys.unique_prefix)
            args += [task_id, unique_key[prefix_length:] if own else ""]
        script_keys = [
            keys.active,
            keys.lease,
            keys.processed_on(utc_date(now)),
            keys.processed_total,
        ]
        codes = await self.run_queue_script(keys, "done_many", script_keys, args)
        return [bool(code) for code in codes]

    async def mark_as_complete(
        self, keys: QueueKeys, task_id: str, msg: bytes, unique_key: str, now: float, expiry: int
    ) -> bool:
        """asynq's MarkAsComplete: keep a finished task as completed until ``expiry``."""
        script_keys = [
            keys.active,
            keys.lease,
            keys.completed,
            keys.task(task_id),
            keys.processed_on(utc_date(now)),
            keys.processed_total,
        ]
        if unique_key:
            script_keys.append(unique_key)
        args: list[Arg] = [task_id, int(now) + STATS_TTL, expiry, msg]
        script = load_script("mark_as_complete")
        return bool(await self.connector.run_script(script, script_keys, args))

    def _failure_keys(self, keys: QueueKeys, task_id: str, target: str, now: float) -> list[str]:
        day = utc_date(now)
        return [
            keys.task(task_id),
            keys.active,
            keys.lease,
            target,
            keys.processed_on(day),
            keys.failed_on(day),
            keys.processed_total,
            keys.failed_total,
        ]

    async def retry(
        self,
        keys: QueueKeys,
        task_id: str,
        msg: bytes,
        retry_at: int,
        *,
        is_failure: bool,
        now: float,
        recover_cutoff: int | None = None,
    ) -> bool:
        """asynq's Retry: the task runs again at ``retry_at``; False if it was not ours."""
        args: list[Arg] = [
            task_id,
            msg,
            retry_at,
            int(now) + STATS_TTL,
            1 if is_failure else 0,
            "lease" if recover_cutoff is None else recover_cutoff,
        ]
        script_keys = self._failure_keys(keys, task_id, keys.retry, now)
        return bool(await self.connector.run_script(load_script("retry"), script_keys, args))

    async def archive(
        self,
        keys: QueueKeys,
        task_id: str,
        msg: bytes,
        *,
        now: float,
        recover_cutoff: int | None = None,
    ) -> bool:
        """asynq's Archive: the task failed for good; False if it was not ours."""
        args: list[Arg] = [
            task_id,
            msg,
            int(now),
            int(now) - ARCHIVE_MAX_AGE,
            ARCHIVE_MAX_SIZE,
            int(now) + STATS_TTL,
            "lease" if recover_cutoff is None else recover_cutoff,
            keys.task_prefix,
        ]
        script_keys = self._failure_keys(keys, task_id, keys.archived, now)
        return bool(await self.run_queue_script(keys, "archive", script_keys, args))

    async def requeue(self, keys: QueueKeys, task_id: str, now_ns: int) -> bool:
        """asynq's Requeue: put a running task back at the head of pending."""
        script_keys = [keys.active, keys.lease, keys.pending, keys.task(task_id)]
        result = await self.connector.run_script(
            load_script("requeue"), script_keys, [task_id, now_ns, keys.wakeup]
        )
        return bool(result)

    async def forward_if_ready(self, keys: QueueKeys, now: float, now_ns: int) -> int:
        """asynq's ForwardIfReady: move due scheduled and retry tasks on; returns how many."""
        moved = 0
        for source in (keys.scheduled, keys.retry):
            while True:
                count = int(
                    await self.run_queue_script(
                        keys,
                        "forward",
                        [source, keys.pending, keys.groups],
                        [
                            int(now),
                            keys.task_prefix,
                            now_ns,
                            keys.group_prefix,
                            FORWARD_BATCH,
                            keys.wakeup,
                        ],
                    )
                )
                moved += count
                if count < FORWARD_BATCH:
                    break
        return moved

    async def extend_leases(self, keys: QueueKeys, task_ids: list[str], expiry: int) -> None:
        """asynq's ExtendLease: ``ZADD XX`` so a lease the recoverer removed is not revived
        (in a script, so that it goes over the lean link: see ``extend_leases.lua``)."""
        if not task_ids:
            return
        await self.connector.run_script(
            load_script("extend_leases"), [keys.lease], [expiry, *task_ids]
        )

    async def list_lease_expired(self, keys: QueueKeys, cutoff: int) -> list[tuple[str, bytes]]:
        """asynq's ListLeaseExpired: (id, message) of tasks whose lease ended by ``cutoff``."""
        reply = await self.run_queue_script(
            keys, "list_lease_expired", [keys.lease, keys.active], [cutoff, keys.task_prefix]
        )
        return _id_message_pairs(reply)

    async def list_orphaned(self, keys: QueueKeys) -> list[tuple[str, bytes]]:
        """(id, message) of active tasks that hold no lease at all (asynq never recovers
        these)."""
        reply = await self.run_queue_script(
            keys, "list_orphaned", [keys.active, keys.lease], [keys.task_prefix]
        )
        return _id_message_pairs(reply)

    async def delete_expired_completed(self, keys: QueueKeys, now: float, batch: int) -> int:
        """asynq's DeleteExpiredCompletedTasks, looping until nothing is left to delete."""
        deleted = 0
        while True:
            count = int(
                await self.run_queue_script(
                    keys,
                    "delete_expired_completed",
                    [keys.completed],
                    [int(now), keys.task_prefix, batch],
                )
            )
            deleted += count
            if count < batch:
                return deleted

    async def write_result(self, keys: QueueKeys, task_id: str, data: bytes) -> None:
        """asynq's ResultWriter: ``HSET result`` on the task hash."""
        await self.connector.execute("HSET", keys.task(task_id), "result", data)

    async def pause(self, keys: QueueKeys, now: float) -> bool:
        """asynq's Pause: ``SETNX paused <now>``; False if already paused."""
        return bool(await self.connector.execute("SET", keys.paused, int(now), "NX"))

    async def unpause(self, keys: QueueKeys) -> bool:
        """asynq's Unpause; False if the queue was not paused."""
        return bool(await self.connector.execute("DEL", keys.paused))


def _one_if_stored(reply: Any) -> int:
    """How many tasks a single-task enqueue-family script stored, by its reply."""
    return 1 if int(reply) == ENQUEUED else 0


def _id_message_pairs(reply: Sequence[bytes | None]) -> list[tuple[str, bytes]]:
    """A flat script reply ``id, message, id, message, ...`` as (id, message) pairs.

    An id without a message (nil) is one the dequeue dropped, as its task hash was gone
    or was no hash (deleted by hand, or another program's): it is logged and left out,
    so that a task that vanishes leaves a trace. A task id that is not UTF-8 (no asynq or
    asyncq client writes one; another program might) is left out and logged: no later
    call can name it, and failing the whole reply would leave every other task of a
    dequeue leased to nobody, and the recoverer unable to take back any task of its queue.
    """
    if None not in reply:
        whole = cast("Sequence[bytes]", reply)
        try:
            return [(whole[i].decode(), whole[i + 1]) for i in range(0, len(whole), 2)]
        except UnicodeDecodeError:
            pass
    pairs = []
    for i in range(0, len(reply), 2):
        task_id, msg = reply[i], reply[i + 1]
        assert task_id is not None
        try:
            name = task_id.decode()
        except UnicodeDecodeError:
            _log.error("task id %r is not UTF-8: left where it is, for good", task_id)
            continue
        if msg is None:
            _log.warning(
                "task %s was pending without a stored task (its hash is gone or is no "
                "hash): dropped from the queue",
                name,
            )
            continue
        pairs.append((name, msg))
    return pairs
