"""The aggregator: turns the tasks of a ready group into one task, as asynq does.

A group is ready when it holds ``group_max_size`` tasks, when its oldest task waited
``group_max_delay``, or when no task joined it for ``group_grace_period``. The ready
tasks move into an aggregation set; the user's ``group_aggregator(group, tasks)``
builds one task from them; that task is enqueued in the same queue, then the set is
deleted. If the process dies in between, the set goes back to its group after two
minutes and is aggregated again (at least once).
"""

from __future__ import annotations

import inspect
import uuid

from asyncq._broker.groups import GroupBroker
from asyncq._broker.keys import QueueKeys
from asyncq._broker.message import decode_message
from asyncq._broker.rdb import Broker
from asyncq._cluster.router import QueueRouter
from asyncq._worker.component import PeriodicComponent
from asyncq._worker.config import GroupAggregator, ServerConfig
from asyncq.client import Client
from asyncq.errors import TaskDecodeError
from asyncq.task import Task

__all__ = ["Aggregator"]


class Aggregator(PeriodicComponent):
    """Checks the served queues' groups and aggregates the ready ones."""

    name = "aggregator"

    def __init__(
        self,
        broker: Broker,
        router: QueueRouter,
        config: ServerConfig,
        aggregate: GroupAggregator,
    ) -> None:
        super().__init__(config.group_check_interval, config.logger)
        self.groups = GroupBroker(broker)
        self.broker = broker
        self.router = router
        self.config = config
        self.aggregate = aggregate
        self.client = Client(broker.connector, clock=config.clock)

    async def _tick(self) -> None:
        for queue in self.router.queues:
            keys = self.broker.keys(queue)
            for group in await self.groups.group_names(keys):
                while await self._aggregate_once(keys, group):
                    pass  # a big group may fill several sets of max size

    async def _aggregate_once(self, keys: QueueKeys, group: str) -> bool:
        config = self.config
        set_key = f"{keys.group(group)}:{uuid.uuid4()}"
        ready = await self.groups.check(
            keys, group, set_key,
            max_size=config.group_max_size, max_delay=int(config.group_max_delay),
            grace=int(config.group_grace_period), now=config.clock.time(),
        )  # fmt: skip
        if not ready:
            return False
        tasks = []
        for raw in await self.groups.read_set(keys, set_key):
            try:
                msg = decode_message(raw, where=set_key)
            except TaskDecodeError as error:
                self.logger.error("skipping a task of group %s: %s", group, error)
                continue
            task = Task._stored(msg.type, msg.payload, msg.headers)
            task.id, task.queue = msg.id, msg.queue
            tasks.append(task)
        try:
            result = self.aggregate(group, tasks)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            # Only this group waits for its set to come back: the other groups and
            # queues of this pass go on.
            self.logger.exception(
                "group_aggregator raised for group %s; the tasks go back to the group in "
                "two minutes",
                group,
            )
            return False
        if not isinstance(result, Task):
            self.logger.error(
                "group_aggregator returned %r for group %s, not a Task; the tasks go back to "
                "the group in two minutes",
                result,
                group,
            )
            return False
        if not await self.groups.set_held(keys, set_key, config.clock.time()):
            # Too slow: past the set's deadline its tasks go back to the group, to be
            # aggregated again. Enqueued now, they would be aggregated twice.
            self.logger.warning(
                "group_aggregator took too long for group %s; its tasks go back to the group",
                group,
            )
            return False
        await self.client.enqueue(result, queue=keys.name)
        await self.groups.delete_set(keys, set_key)
        self.logger.info("aggregated %d tasks of group %s in %s", len(tasks), group, keys.name)
        return True
