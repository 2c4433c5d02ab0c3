"""The subscriber: cancels a running task when someone asks for it on ``asynq:cancel``.

asynq's Inspector (and asyncq's) publishes a task id on the classic channel
``asynq:cancel``; Redis Cluster forwards classic messages to every node, so one
subscription on any node hears them all. A cancelled task counts as a failure and
is retried, as in asynq. Best effort: a message sent while the subscription is
being re-established is lost.
"""

from __future__ import annotations

import contextlib
import logging

from asyncq._broker.keys import CANCEL_CHANNEL
from asyncq._cluster.connector import Connector
from asyncq._worker.jobs import JobBook, StopReason
from asyncq._worker.listener import Listener

__all__ = ["CancelSubscriber"]


class CancelSubscriber(Listener):
    """Listens on ``asynq:cancel`` and stops the matching local job."""

    name = "subscriber"

    def __init__(self, connector: Connector, jobs: JobBook, logger: logging.Logger) -> None:
        super().__init__(logger)
        self.connector = connector
        self.jobs = jobs

    async def _listen(self) -> None:
        client = self.connector.node_client(self.connector.node_of(CANCEL_CHANNEL))
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(CANCEL_CHANNEL)
            self.subscribed.set()
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None or message["type"] != "message":
                    continue
                # Not text: no job has that id (a stray message must not end the listening).
                task_id = message["data"].decode(errors="replace")
                job = self.jobs.get(task_id)
                if job is not None:
                    self.logger.info("cancelling task %s on request", task_id)
                    job.stop(StopReason.CANCELED)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()
