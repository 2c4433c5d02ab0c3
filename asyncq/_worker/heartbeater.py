"""The heartbeater: keeps running tasks' leases alive and publishes the server's records.

Every ``heartbeat_interval`` it extends the lease of each running task (one
``ZADD XX`` per queue), stops handlers whose lease could not be kept, and writes
asynq's ``ServerInfo`` and ``WorkerInfo`` records with a TTL, so asynq's CLI and
web UI list this server. On stop it removes the records: it is stopped last.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from asyncq._broker.rdb import Broker
from asyncq._broker.servers import ServerIdentity, clear_server_state, write_server_state
from asyncq._cluster.router import QueueRouter
from asyncq._proto.asynq_pb2 import ServerInfo, WorkerInfo
from asyncq._worker.component import PeriodicComponent
from asyncq._worker.config import ServerConfig
from asyncq._worker.jobs import Job, JobBook, StopReason
from asyncq.errors import AsyncqError

__all__ = ["Heartbeater", "new_identity"]

SERVER_TTL_FACTOR = 2  # records live two beats, as asynq's 10 s TTL for a 5 s beat


def new_identity() -> ServerIdentity:
    """This process's server identity: host, pid and a fresh UUID."""
    return ServerIdentity(socket.gethostname(), os.getpid(), str(uuid.uuid4()))


def _timestamp(unix_seconds: float) -> Timestamp:
    whole = int(unix_seconds)
    return Timestamp(seconds=whole, nanos=int((unix_seconds - whole) * 1e9))


# The most a stop spends removing the server's records (they expire on their own).
CLEAR_WITHIN = 2.0


class Heartbeater(PeriodicComponent):
    """Extends leases and writes the server's heartbeat records."""

    name = "heartbeater"

    def __init__(
        self,
        broker: Broker,
        router: QueueRouter,
        config: ServerConfig,
        jobs: JobBook,
        ident: ServerIdentity,
    ) -> None:
        super().__init__(config.heartbeat_interval, config.logger)
        self.broker = broker
        self.router = router
        self.config = config
        self.jobs = jobs
        self.ident = ident
        self.started = config.clock.time()
        self.status = "active"

    async def stop(self, hurry: asyncio.Event | None = None) -> None:
        await super().stop(hurry)
        try:
            # Bounded: the records expire on their own (the tools skip stale ones), so a
            # failing node must not hold the shutdown for its calls' whole retry_deadline.
            async with asyncio.timeout(CLEAR_WITHIN):
                await clear_server_state(self.broker.connector, self.ident)
        except (AsyncqError, TimeoutError) as error:
            self.logger.warning(
                "could not clear the server's records (they expire on their own): %s",
                str(error) or "no answer in time",
            )

    async def _tick(self) -> None:
        await self._extend_leases()
        await self._write_records()

    async def _extend_leases(self) -> None:
        clock = self.config.clock
        now = clock.time()
        expiry = int(now + self.config.lease_duration)
        # All queues at once, each within one beat: a failing node must not delay the
        # leases of queues that live on healthy nodes until they run out.
        await asyncio.gather(
            *(
                self._extend_queue(queue, jobs, now, expiry)
                for queue, jobs in self.jobs.by_queue().items()
            )
        )
        now = clock.time()
        for job in self.jobs:
            if not job.lease_valid(now):
                job.stop(StopReason.LEASE_LOST)

    async def _extend_queue(self, queue: str, jobs: list[Job], now: float, expiry: int) -> None:
        # A handler still running well past its deadline ignores cancellation: its
        # lease is left to run out so that the task comes back (at least once).
        keep = [j for j in jobs if now <= j.deadline + self.config.cancel_grace]
        for job in jobs:
            if job not in keep and job.lease_valid(now):
                self.logger.error(
                    "handler of task %s ignores cancellation past its deadline; "
                    "its lease will expire and the task will be retried",
                    job.id,
                )
        try:
            async with asyncio.timeout(self.config.heartbeat_interval):
                await self.broker.extend_leases(
                    self.broker.keys(queue), [j.id for j in keep], expiry
                )
        except Exception as error:
            # Any failure, also an error reply (OOM under maxmemory, NOPERM, MISCONF): the
            # leases keep their old expiry, and the check after this stops the handlers
            # whose lease ran out, so a recovered task does not run twice at once.
            self.logger.warning("could not extend leases in %s: %r", queue, error)
            return
        for job in keep:
            job.lease_expiry = float(expiry)

    async def _write_records(self) -> None:
        now = self.config.clock.time()
        jobs = list(self.jobs)
        info = ServerInfo(
            host=self.ident.host,
            pid=self.ident.pid,
            server_id=self.ident.server_id,
            concurrency=self.config.concurrency,
            queues=self.router.configured,
            strict_priority=self.config.strict_priority,
            status=self.status,
            start_time=_timestamp(self.started),
            active_worker_count=len(jobs),
        )
        workers = {job.id: self._worker_info(job) for job in jobs}
        ttl = max(int(self.config.heartbeat_interval * SERVER_TTL_FACTOR), 1)
        await write_server_state(
            self.broker.connector,
            self.ident,
            info.SerializeToString(),
            workers,
            now=now,
            ttl=ttl,
        )

    def _worker_info(self, job: Job) -> bytes:
        return WorkerInfo(
            host=self.ident.host,
            pid=self.ident.pid,
            server_id=self.ident.server_id,
            task_id=job.id,
            task_type=job.msg.type,
            task_payload=job.msg.payload,
            queue=job.msg.queue,
            start_time=_timestamp(job.started),
            deadline=_timestamp(job.deadline),
        ).SerializeToString()
