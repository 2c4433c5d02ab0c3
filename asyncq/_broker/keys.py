"""Every Redis key asyncq reads or writes, built in one place.

The names are asynq's (``internal/base/base.go``), byte for byte, so Go servers,
the asynq CLI and asynqmon see the same state. Every key of a queue carries the
hash tag ``{<queue>}``: a queue lives in one cluster slot, so each Lua script
touches one slot only. The library adds the braces; users never write them.
"""

from __future__ import annotations

import hashlib

from asyncq.errors import InvalidQueueNameError

__all__ = [
    "ALL_QUEUES",
    "ALL_SCHEDULERS",
    "ALL_SERVERS",
    "ALL_WORKERS",
    "CANCEL_CHANNEL",
    "QueueKeys",
    "validate_queue_name",
]

ALL_QUEUES = "asynq:queues"
ALL_SERVERS = "asynq:servers"
ALL_WORKERS = "asynq:workers"
ALL_SCHEDULERS = "asynq:schedulers"
CANCEL_CHANNEL = "asynq:cancel"


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a usable queue name, else raise ``InvalidQueueNameError``.

    Braces would change the cluster hash tag and split a queue across slots
    (asynq issue #480), so they are refused together with blank names.
    """
    if not isinstance(name, str):
        raise InvalidQueueNameError(f"queue name must be a str, got {type(name).__name__}")
    if not name.strip():
        raise InvalidQueueNameError("queue name must not be blank; use e.g. queue='default'")
    if "{" in name or "}" in name:
        raise InvalidQueueNameError(
            f"queue name {name!r} contains '{{' or '}}'; asyncq adds the cluster hash tag "
            "itself, so use the plain name (e.g. 'emails')"
        )
    if name != name.strip():
        raise InvalidQueueNameError(
            f"queue name {name!r} has leading or trailing whitespace; strip it"
        )
    return name


class QueueKeys:
    """The keys of one queue, all under the hash tag ``{<queue>}``.

    Built once per queue and cached by the broker, so hot paths do no string work.
    """

    __slots__ = (
        "active",
        "aggregation_sets",
        "archived",
        "completed",
        "failed_total",
        "group_prefix",
        "groups",
        "lease",
        "name",
        "paused",
        "pending",
        "prefix",
        "processed_total",
        "retry",
        "scheduled",
        "slot_guard",
        "task_prefix",
        "unique_prefix",
        "wakeup",
    )

    def __init__(self, queue: str) -> None:
        self.name = validate_queue_name(queue)
        self.prefix = f"asynq:{{{queue}}}:"
        p = self.prefix
        self.task_prefix = p + "t:"
        self.pending = p + "pending"
        self.active = p + "active"
        self.lease = p + "lease"
        self.scheduled = p + "scheduled"
        self.retry = p + "retry"
        self.archived = p + "archived"
        self.completed = p + "completed"
        self.paused = p + "paused"
        self.groups = p + "groups"
        self.group_prefix = p + "g:"
        self.aggregation_sets = p + "aggregation_sets"
        self.processed_total = p + "processed"
        self.failed_total = p + "failed"
        self.unique_prefix = p + "unique:"
        # asyncq's own addition: a sharded pub/sub channel that wakes idle workers.
        self.wakeup = p + "wakeup"
        # asyncq's own, and never written: scripts that write keys they build themselves
        # (task hashes) also declare this one. While the queue's slot migrates, a call
        # naming a key the node lacks is refused (TRYAGAIN, or ASK) before it runs, and
        # retried; without it, the script failed halfway at the first key already moved.
        self.slot_guard = p + "slot-guard"

    def task(self, task_id: str) -> str:
        """The hash ``asynq:{q}:t:<id>`` holding one task's message and state."""
        return self.task_prefix + task_id

    def group(self, group: str) -> str:
        """The sorted set ``asynq:{q}:g:<group>`` of tasks waiting to be aggregated."""
        return self.group_prefix + group

    def fired(self, entry_id: str, fire_time: int) -> str:
        """A scheduler's lock on one fire of one entry: taken by the first scheduler only."""
        return f"{self.prefix}fired:{entry_id}:{fire_time}"

    def unlisted_patterns(self) -> tuple[str, ...]:
        """SCAN patterns of the queue's keys that no list or set names, so that deleting
        the queue must look for them: fire locks, and dequeue records
        (``asynq:{q}:dequeue:<token>``). Both expire on their own within minutes."""
        escaped = "".join(f"\\{c}" if c in "\\*?[]" else c for c in self.prefix)
        return (f"{escaped}fired:*", f"{escaped}dequeue:*")

    def processed_on(self, utc_date: str) -> str:
        """Daily processed counter; ``utc_date`` is ``YYYY-MM-DD`` in UTC."""
        return f"{self.prefix}processed:{utc_date}"

    def failed_on(self, utc_date: str) -> str:
        """Daily failed counter; ``utc_date`` is ``YYYY-MM-DD`` in UTC."""
        return f"{self.prefix}failed:{utc_date}"

    def unique(self, task_type: str, payload: bytes | None) -> str:
        """The unique lock of a (type, payload) pair, as asynq builds it.

        A missing payload gives the suffix ``<type>:`` with nothing after the
        colon; an empty one gives the md5 of the empty string (asynq's rule).
        """
        if payload is None:
            return f"{self.prefix}unique:{task_type}:"
        digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
        return f"{self.prefix}unique:{task_type}:{digest}"


def server_key(host: str, pid: int, server_id: str) -> str:
    """The string key holding a running server's ``ServerInfo``."""
    return f"asynq:servers:{{{host}:{pid}:{server_id}}}"


def workers_key(host: str, pid: int, server_id: str) -> str:
    """The hash holding a running server's ``WorkerInfo`` records (same slot as its server key)."""
    return f"asynq:workers:{{{host}:{pid}:{server_id}}}"


def scheduler_entries_key(scheduler_id: str) -> str:
    """The list holding a scheduler's ``SchedulerEntry`` records."""
    return f"asynq:schedulers:{{{scheduler_id}}}"


def scheduler_history_key(entry_id: str) -> str:
    """The sorted set of a scheduler entry's enqueue events."""
    return f"asynq:scheduler_history:{entry_id}"
