"""The recoverer: takes back tasks whose worker died, and tasks left active without a lease.

It also puts back into their groups the aggregation sets whose aggregator died.

Every ``recoverer_interval`` (and once at start) it lists, per served queue, the
tasks whose lease ended more than a grace period ago, and the tasks in ``active``
that hold no lease at all (asynq never recovers those). Each goes to retry, or to
the archive when its retries are used up, with ``LeaseExpiredError``.
"""

from __future__ import annotations

from asyncq._broker.groups import GroupBroker
from asyncq._broker.keys import QueueKeys
from asyncq._broker.message import decode_stored
from asyncq._broker.rdb import Broker
from asyncq._cluster.router import QueueRouter
from asyncq._worker.component import PeriodicComponent
from asyncq._worker.config import ServerConfig
from asyncq._worker.finisher import Finisher
from asyncq.errors import ConnectionFailedError, LeaseExpiredError, TaskDecodeError

__all__ = ["Recoverer"]


class Recoverer(PeriodicComponent):
    """Moves abandoned active tasks to retry or archive."""

    name = "recoverer"

    def __init__(
        self, broker: Broker, router: QueueRouter, config: ServerConfig, finisher: Finisher
    ) -> None:
        super().__init__(config.recoverer_interval, config.logger)
        self.broker = broker
        self.router = router
        self.config = config
        self.finisher = finisher
        self.groups = GroupBroker(broker)

    async def _tick(self) -> None:
        now = self.config.clock.time()
        cutoff = int(now - self.config.recovery_grace)
        for queue in self.router.queues:
            try:
                await self._recover_queue(self.broker.keys(queue), now, cutoff)
            except ConnectionFailedError:
                raise  # Redis is out of reach: the pass ends here (one line is logged)
            except Exception:
                # A queue whose keys cannot be read (another writer's key of the wrong
                # type, a bug) must not hold back the queues after it.
                self.logger.exception("could not recover the tasks of queue %s", queue)

    async def _recover_queue(self, keys: QueueKeys, now: float, cutoff: int) -> None:
        await self.groups.reclaim_stale_sets(keys, now)
        expired = await self.broker.list_lease_expired(keys, cutoff)
        orphaned = await self.broker.list_orphaned(keys)
        for task_id, raw in expired + orphaned:
            try:
                await self._recover(keys, task_id, raw, cutoff)
            except ConnectionFailedError:
                raise
            except Exception:
                # One task that cannot be written (a bug, an odd reply) must not hold back
                # the others: it is tried again next pass.
                self.logger.exception("could not recover task %s of %s", task_id, keys.name)

    async def _recover(self, keys: QueueKeys, task_id: str, raw: bytes, cutoff: int) -> None:
        try:
            msg = decode_stored(raw, task_id, keys.task(task_id))
        except TaskDecodeError as error:
            # Unreadable, it can never be retried: archived as it is (nothing lost, an
            # operator can look), or it would be listed again at every pass, for good.
            self.logger.error("archiving abandoned task %s: %s", task_id, error)
            now = self.config.clock.time()
            await self.broker.archive(keys, task_id, raw, now=now, recover_cutoff=cutoff)
            return
        lost = LeaseExpiredError(f"task {msg.id} lost its worker (lease expired)")
        if await self.finisher.retry_or_archive(keys, msg, lost, recover_cutoff=cutoff):
            self.logger.warning("recovered task %s of queue %s", msg.id, keys.name)
