"""The broker: asynq's RDB verbs in snake_case, the only layer that runs commands.

Each verb maps to a method of asynq's ``internal/rdb/rdb.go`` and leaves Redis in
a state a Go peer could have produced. Components use the broker, never raw Redis.
"""

from __future__ import annotations

import time

from asyncq._broker.keys import ALL_QUEUES, QueueKeys
from asyncq._broker.scripts import load_script
from asyncq._cluster.connector import Connector

__all__ = ["DUPLICATE", "ENQUEUED", "ID_CONFLICT", "Broker"]

# Results of the enqueue-family scripts.
ENQUEUED = 1
ID_CONFLICT = 0
DUPLICATE = -1

# How long a client trusts that it has added a queue to `asynq:queues`. asynq caches
# it forever, so a queue removed by another process stays invisible to the CLI until
# the client restarts; a short lifetime re-adds it at the cost of one SADD a minute.
QUEUE_REGISTRATION_TTL = 60.0


class Broker:
    """asynq's storage verbs over a connector (cluster or single Redis)."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._keys: dict[str, QueueKeys] = {}
        self._registered: dict[str, float] = {}

    def keys(self, queue: str) -> QueueKeys:
        """The (cached) keys of ``queue``; raises ``InvalidQueueNameError`` for a bad name."""
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys(queue)
        return keys

    async def register_queue(self, queue: str) -> None:
        """``SADD asynq:queues <queue>``, sent at most once a minute per queue and client."""
        now = time.monotonic()
        if now - self._registered.get(queue, -QUEUE_REGISTRATION_TTL) < QUEUE_REGISTRATION_TTL:
            return
        await self.connector.execute("SADD", ALL_QUEUES, queue)
        self._registered[queue] = now

    async def enqueue(
        self, keys: QueueKeys, task_id: str, msg: bytes, now_ns: int, unique_key: str, ttl: int
    ) -> int:
        """asynq's Enqueue / EnqueueUnique: a new pending task.

        Returns ENQUEUED, ID_CONFLICT or DUPLICATE, as every enqueue-family verb does.
        """
        script_keys = [keys.task(task_id), keys.pending]
        args: list[str | bytes | int] = [msg, task_id, now_ns]
        if unique_key:
            script_keys.append(unique_key)
            args.append(ttl)
        return int(await self.connector.run_script(load_script("enqueue"), script_keys, args))

    async def schedule(
        self,
        keys: QueueKeys,
        task_id: str,
        msg: bytes,
        process_at: int,
        group: str,
        unique_key: str,
        ttl: int,
    ) -> int:
        """asynq's Schedule / ScheduleUnique: a new task due at ``process_at`` (Unix s)."""
        script_keys = [keys.task(task_id), keys.scheduled]
        args: list[str | bytes | int] = [msg, process_at, task_id, group]
        if unique_key:
            script_keys.append(unique_key)
            args.append(ttl)
        return int(await self.connector.run_script(load_script("schedule"), script_keys, args))

    async def add_to_group(
        self,
        keys: QueueKeys,
        task_id: str,
        msg: bytes,
        now: int,
        group: str,
        unique_key: str,
        ttl: int,
    ) -> int:
        """asynq's AddToGroup / AddToGroupUnique: a new task waiting for aggregation."""
        script_keys = [keys.task(task_id), keys.group(group), keys.groups]
        args: list[str | bytes | int] = [msg, task_id, now, group]
        if unique_key:
            script_keys.append(unique_key)
            args.append(ttl)
        return int(await self.connector.run_script(load_script("add_to_group"), script_keys, args))
