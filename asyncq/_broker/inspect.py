"""The Inspector's storage verbs: asynq's ``internal/rdb/inspect.go`` in snake_case.

Every verb touches one queue's slot (one script or one command); the Inspector
combines them. Results are raw (bytes and numbers); ``asyncq.inspector`` shapes them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncq._broker.keys import QueueKeys
from asyncq._broker.rdb import ARCHIVE_MAX_AGE, ARCHIVE_MAX_SIZE, Broker, utc_date

__all__ = ["InspectBroker", "RawTask"]

RawTask = tuple[bytes, bytes, bytes, bytes, bytes]
"""(id, msg, state, result, score) as the listing script returns them, undecoded: the
Inspector reads each row on its own, so one it cannot read does not fail the page."""

LIST_STATES = ("pending", "active")
SET_STATES = ("scheduled", "retry", "archived", "completed")
HISTORY_DAYS = 90


def _count(value: bytes | None) -> int:
    """A counter as stored, read leniently (another writer may have left any text): a
    number with a fraction counts its whole part, anything else that is not a number 0."""
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return int(float(value))
    except (ValueError, OverflowError):  # not a number, or inf/nan
        return 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class InspectBroker:
    """Reads and changes queue state on behalf of the Inspector."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connector = broker.connector

    async def queue_stats(self, keys: QueueKeys, now: float) -> list[int]:
        day = utc_date(now)
        script_keys = [
            keys.pending, keys.active, keys.scheduled, keys.retry, keys.archived,
            keys.completed, keys.processed_on(day), keys.failed_on(day), keys.processed_total,
            keys.failed_total, keys.paused, keys.groups,
        ]  # fmt: skip
        reply = await self.broker.run_queue_script(
            keys, "queue_stats", script_keys, [keys.task_prefix, keys.group_prefix]
        )
        return [int(v) for v in reply]

    async def memory_usage(self, keys: QueueKeys, task_count: int) -> int | None:
        """Approximate bytes of the queue: its containers plus sampled task hashes.

        Runs ``MEMORY USAGE`` as plain commands; where it is refused (some managed
        services) the answer is ``None`` ("unknown") instead of an error.
        """
        try:
            total = 0
            for name in (keys.pending, keys.active, keys.scheduled, keys.retry,
                         keys.archived, keys.completed, keys.lease, keys.groups):  # fmt: skip
                total += int(await self.connector.execute("MEMORY", "USAGE", name) or 0)
            sample = await self._sample_ids(keys, 20)
            if sample:
                sizes = [
                    int(await self.connector.execute("MEMORY", "USAGE", keys.task(i)) or 0)
                    for i in sample
                ]
                total += sum(sizes) * task_count // len(sizes)
            return total
        except Exception:
            return None

    async def _sample_ids(self, keys: QueueKeys, count: int) -> list[str]:
        ids: list[str] = []
        for name in (keys.pending, keys.active):
            ids += [_text(i) for i in await self.connector.execute("LRANGE", name, 0, count - 1)]
        for name in (keys.scheduled, keys.retry, keys.archived, keys.completed):
            ids += [_text(i) for i in await self.connector.execute("ZRANGE", name, 0, count - 1)]
        return ids[:count]

    async def history(self, keys: QueueKeys, days: int, now: float) -> list[tuple[str, int, int]]:
        """(day, processed, failed) for ``days`` days, today first (one MGET, one slot)."""
        start = datetime.fromtimestamp(now, UTC)
        names = [(start - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(days)]
        args: list[str] = []
        for day in names:
            args += [keys.processed_on(day), keys.failed_on(day)]
        values = await self.connector.execute("MGET", *args)
        return [
            (day, _count(values[2 * i]), _count(values[2 * i + 1])) for i, day in enumerate(names)
        ]

    async def list_tasks(
        self, keys: QueueKeys, state: str, start: int, stop: int, group: str = ""
    ) -> list[RawTask]:
        if state == "aggregating":
            container, kind = keys.group(group), "zset"
        else:
            container = getattr(keys, state)
            kind = "list" if state in LIST_STATES else "zset"
        reply = await self.broker.run_queue_script(
            keys,
            "list_tasks",
            [container, keys.lease],
            [kind, start, stop, keys.task_prefix],
        )
        return [
            (reply[i], reply[i + 1], reply[i + 2], reply[i + 3], reply[i + 4])
            for i in range(0, len(reply), 5)
        ]

    async def task_info(
        self, keys: QueueKeys, task_id: str
    ) -> tuple[bytes, str, bytes, str] | None:
        reply = await self.broker.run_queue_script(
            keys, "task_info", [keys.task(task_id), keys.lease], [task_id, keys.prefix]
        )
        if reply is None:
            return None
        return reply[0], _text(reply[1]), reply[2], _text(reply[3])

    async def run_task(self, keys: QueueKeys, task_id: str, now_ns: int) -> int:
        return int(await self.broker.run_queue_script(
            keys, "run_task", [keys.task(task_id), keys.pending, keys.groups],
            [task_id, keys.prefix, now_ns, keys.wakeup],
        ))  # fmt: skip

    async def archive_task(self, keys: QueueKeys, task_id: str, now: float) -> int:
        return int(await self.broker.run_queue_script(
            keys, "archive_task",
            [keys.task(task_id), keys.archived, keys.pending, keys.groups],
            [task_id, keys.prefix, int(now), int(now) - ARCHIVE_MAX_AGE, ARCHIVE_MAX_SIZE,
             keys.task_prefix],
        ))  # fmt: skip

    async def delete_task(self, keys: QueueKeys, task_id: str) -> int:
        return int(await self.broker.run_queue_script(
            keys, "delete_task", [keys.task(task_id), keys.pending, keys.groups],
            [task_id, keys.prefix, keys.unique_prefix],
        ))  # fmt: skip

    async def run_all(self, keys: QueueKeys, state: str, now_ns: int, group: str = "") -> int:
        source = keys.group(group) if state == "aggregating" else getattr(keys, state)
        return int(await self.broker.run_queue_script(
            keys, "run_all", [source, keys.pending, keys.groups],
            [keys.task_prefix, now_ns, keys.wakeup, group if state == "aggregating" else ""],
        ))  # fmt: skip

    async def archive_all(self, keys: QueueKeys, state: str, now: float, group: str = "") -> int:
        source = keys.group(group) if state == "aggregating" else getattr(keys, state)
        kind = "list" if state == "pending" else "zset"
        return int(await self.broker.run_queue_script(
            keys, "archive_all", [source, keys.archived, keys.groups],
            [kind, int(now), int(now) - ARCHIVE_MAX_AGE, ARCHIVE_MAX_SIZE, keys.task_prefix,
             group if state == "aggregating" else ""],
        ))  # fmt: skip

    async def delete_all(self, keys: QueueKeys, state: str, group: str = "") -> int:
        source = keys.group(group) if state == "aggregating" else getattr(keys, state)
        kind = "list" if state == "pending" else "zset"
        return int(await self.broker.run_queue_script(
            keys, "delete_all", [source, keys.groups],
            [kind, keys.task_prefix, keys.unique_prefix, group if state == "aggregating" else ""],
        ))  # fmt: skip

    async def remove_queue(self, keys: QueueKeys, force: bool, now: float) -> int:
        start = datetime.fromtimestamp(now, UTC)
        days = [(start - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(HISTORY_DAYS + 1)]
        script_keys = [
            keys.pending, keys.active, keys.scheduled, keys.retry, keys.archived, keys.completed,
            keys.lease, keys.groups, keys.aggregation_sets, keys.paused, keys.processed_total,
            keys.failed_total,
        ]  # fmt: skip
        args = ["1" if force else "0", keys.prefix, keys.unique_prefix, *days]
        return int(await self.broker.run_queue_script(keys, "remove_queue", script_keys, args))

    async def delete_unlisted(self, keys: QueueKeys) -> None:
        """Delete the queue's keys that no list names (see ``QueueKeys.unlisted_patterns``),
        found by SCAN on the node that holds the queue. A scheduler's fire lock left
        behind would keep a re-created queue from getting the same fire."""
        connector = self.connector
        node = connector.node_client(connector.node_of(keys.pending))
        try:
            async with asyncio.timeout(connector.retry_deadline):
                found = [
                    name
                    for pattern in keys.unlisted_patterns()
                    async for name in node.scan_iter(match=pattern, count=1000)
                ]
        finally:
            await node.aclose()
        for name in found:
            await connector.execute("DEL", name)

    async def groups(self, keys: QueueKeys) -> list[tuple[str, int]]:
        names = sorted(_text(g) for g in await self.connector.execute("SMEMBERS", keys.groups))
        return [(g, int(await self.connector.execute("ZCARD", keys.group(g)))) for g in names]
