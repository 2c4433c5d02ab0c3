"""Aggregation groups: asynq's group verbs (check, read, delete and reclaim sets)."""

from __future__ import annotations

from asyncq._broker.keys import QueueKeys
from asyncq._broker.rdb import Broker
from asyncq._broker.scripts import load_script

__all__ = ["AGGREGATION_SET_TIMEOUT", "GroupBroker"]

# An aggregation set not deleted by then (its aggregator died) goes back to its group.
AGGREGATION_SET_TIMEOUT = 120


class GroupBroker:
    """The storage side of task aggregation."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connector = broker.connector

    async def group_names(self, keys: QueueKeys) -> list[str]:
        return sorted(g.decode() for g in await self.connector.execute("SMEMBERS", keys.groups))

    async def check(
        self,
        keys: QueueKeys,
        group: str,
        set_key: str,
        *,
        max_size: int,
        max_delay: int,
        grace: int,
        now: float,
    ) -> bool:
        """asynq's AggregationCheck: True when the group's ready tasks moved into ``set_key``."""
        script_keys = [keys.group(group), set_key, keys.aggregation_sets, keys.groups]
        args: list[str | int] = [
            max_size,
            max_delay,
            grace,
            int(now) + AGGREGATION_SET_TIMEOUT,
            int(now),
            group,
        ]
        result = await self.connector.run_script(
            load_script("aggregation_check"), script_keys, args
        )
        return bool(result)

    async def read_set(self, keys: QueueKeys, set_key: str) -> list[bytes]:
        reply = await self.broker.run_queue_script(
            keys, "read_aggregation_set", [set_key], [keys.task_prefix]
        )
        return list(reply)

    async def set_held(self, keys: QueueKeys, set_key: str, now: float) -> bool:
        """Whether the aggregation set is still this aggregator's: listed, with its
        deadline ahead. Past it, the recoverer puts (or has put) its tasks back."""
        deadline = await self.connector.execute("ZSCORE", keys.aggregation_sets, set_key)
        return deadline is not None and float(deadline) > now

    async def delete_set(self, keys: QueueKeys, set_key: str) -> None:
        """Drop an aggregated set and its tasks; its group leaves the group list if it is
        empty and none of its sets is still out (see aggregation_check.lua)."""
        members = set_key.rsplit(":", 1)[0]  # "<prefix>g:<group>:<set-id>" -> its group
        group = members.removeprefix(keys.group_prefix)
        await self.broker.run_queue_script(
            keys,
            "delete_aggregation_set",
            [set_key, keys.aggregation_sets, members, keys.groups],
            [keys.task_prefix, keys.unique_prefix, group],
        )

    async def reclaim_stale_sets(self, keys: QueueKeys, now: float) -> int:
        return int(
            await self.broker.run_queue_script(
                keys,
                "reclaim_aggregation_sets",
                [keys.aggregation_sets, keys.groups],
                [int(now), keys.group_prefix],
            )
        )
