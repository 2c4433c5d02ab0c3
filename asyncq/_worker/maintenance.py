"""Small periodic chores: the forwarder, the janitor and the health check."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from asyncq._broker.rdb import Broker
from asyncq._cluster.router import QueueRouter
from asyncq._worker.component import PeriodicComponent
from asyncq._worker.config import HealthCheck, ServerConfig

__all__ = ["Forwarder", "HealthChecker", "Janitor"]


class Forwarder(PeriodicComponent):
    """Moves due scheduled and retry tasks to pending (or into their group)."""

    name = "forwarder"

    def __init__(
        self,
        broker: Broker,
        router: QueueRouter,
        config: ServerConfig,
        on_moved: Callable[[], None],
    ) -> None:
        super().__init__(config.delayed_task_check_interval, config.logger)
        self.broker = broker
        self.router = router
        self.clock = config.clock
        self.on_moved = on_moved

    async def _tick(self) -> None:
        moved = 0
        for queue in self.router.queues:
            moved += await self.broker.forward_if_ready(
                self.broker.keys(queue), self.clock.time(), self.clock.time_ns()
            )
        if moved:
            self.on_moved()


class Janitor(PeriodicComponent):
    """Deletes completed tasks whose retention has ended."""

    name = "janitor"

    def __init__(self, broker: Broker, router: QueueRouter, config: ServerConfig) -> None:
        super().__init__(config.janitor_interval, config.logger)
        self.broker = broker
        self.router = router
        self.config = config

    async def _tick(self) -> None:
        for queue in self.router.queues:
            await self.broker.delete_expired_completed(
                self.broker.keys(queue), self.config.clock.time(), self.config.janitor_batch_size
            )


class HealthChecker(PeriodicComponent):
    """Pings Redis and tells the user's health-check function how it went."""

    name = "health check"

    def __init__(self, broker: Broker, config: ServerConfig, report: HealthCheck) -> None:
        super().__init__(config.health_check_interval, config.logger)
        self.broker = broker
        self.report = report

    async def _tick(self) -> None:
        error: BaseException | None = None
        try:
            await self.broker.connector.execute("PING")
        except Exception as failure:
            error = failure
        result = self.report(error)
        if inspect.isawaitable(result):
            await result
