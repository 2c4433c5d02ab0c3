"""Deadlines: cancels each handler when its task's deadline passes, with few timers.

A timer per task (what ``asyncio.timeout`` arms and disarms) costs about 5 µs, a
sixth of the worker's whole budget per task, and nearly every task ends long before
its deadline (30 minutes by default). So a job gets a timer of its own only once its
deadline is near: at launch when it is due within one sweep period, otherwise at
the sweep (one timer for the whole worker, every period while some running job has
none) that finds it due before the next sweep. Each deadline is still enforced by a
timer at exactly its time; only the far ones cost nothing until they come close.
"""

from __future__ import annotations

import asyncio

from asyncq._worker.jobs import Job, JobBook, StopReason

__all__ = ["SWEEP_PERIOD", "Deadlines"]

SWEEP_PERIOD = 1.0  # seconds between looks at the deadlines of long-running handlers


class Deadlines:
    """Arms and disarms the deadline timers of the jobs in ``jobs``."""

    def __init__(self, jobs: JobBook, period: float = SWEEP_PERIOD) -> None:
        self.jobs = jobs
        self.period = period
        self._sweep: asyncio.TimerHandle | None = None

    def watch(self, job: Job, remaining: float) -> None:
        """Cancel ``job``'s handler ``remaining`` seconds from now unless it ends first."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        job.due = now + remaining
        if remaining <= self.period:
            job.timer = loop.call_at(job.due, _expire, job)
        elif self._sweep is None:
            self._sweep = loop.call_at(now + self.period, self._sweep_now)

    @staticmethod
    def release(job: Job) -> None:
        """The handler has ended: its deadline no longer matters."""
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None

    @property
    def sweeping(self) -> bool:
        """Whether a sweep is scheduled (some running job's deadline is still far)."""
        return self._sweep is not None

    def _sweep_now(self) -> None:
        # A job not armed here is due after the next sweep, which then looks again:
        # every deadline gets its timer before it passes.
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        horizon = now + self.period
        far = False
        for job in self.jobs:
            if job.timer is not None or not job.in_handler or job.stop_reason is not None:
                continue
            if job.due <= horizon:
                job.timer = loop.call_at(job.due, _expire, job)
            else:
                far = True
        if far:
            self._sweep = loop.call_at(horizon, self._sweep_now)


def _expire(job: Job) -> None:
    job.timer = None
    job.stop(StopReason.DEADLINE)
