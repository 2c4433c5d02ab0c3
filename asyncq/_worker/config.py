"""Server settings, checked once, with asynq's defaults."""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from asyncq._clock import Clock, SystemClock
from asyncq._options import MAX_DURATION
from asyncq.errors import InvalidOptionError
from asyncq.task import Task

__all__ = [
    "ErrorHandler",
    "GroupAggregator",
    "HealthCheck",
    "IsFailure",
    "RetryDelay",
    "ServerConfig",
    "default_retry_delay",
    "seconds",
]

RetryDelay = Callable[[int, BaseException, Task], "timedelta | float"]
"""``retry_delay(retried, error, task)``: how long to wait before the next try."""

IsFailure = Callable[[BaseException], bool]
"""``is_failure(error)``: False means retry without counting a failure (asynq's IsFailure)."""

ErrorHandler = Callable[[Task, BaseException], "Awaitable[None] | None"]
"""Called with every task failure the worker sees (sync or async)."""

HealthCheck = Callable[[BaseException | None], "Awaitable[None] | None"]
"""Called after each Redis health check with the error, or None when Redis answered."""

GroupAggregator = Callable[[str, list[Task]], "Task | Awaitable[Task]"]
"""``aggregate(group, tasks)``: one task made of a ready group's tasks."""

# asynq's lease is 30 s and its recoverer waits 30 s more; a shorter lease beside Go
# servers would let them take back tasks that are still running here.
ASYNQ_LEASE_SECONDS = 30.0
MAX_INT32 = 2**31 - 1  # the largest concurrency or priority asynq's server record holds


def default_retry_delay(retried: int, error: BaseException, task: Task) -> float:
    """asynq's (Sidekiq's) backoff: ``n**4 + 15 + rand(0..29) * (n + 1)`` seconds, at most
    a century. A task retried hundreds of times (its retries counted by servers with a
    retry rule of their own) would otherwise be due past any date a tool can show."""
    tries = max(retried, 0)
    return float(min(tries**4 + 15 + random.randrange(30) * (tries + 1), MAX_DURATION))


def seconds(name: str, value: timedelta | float, *, minimum: float = 0.0) -> float:
    """A duration option as seconds, refusing negatives, NaN, infinity and other types."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < minimum:
        raise InvalidOptionError(
            f"{name} must be a finite number of seconds, at least {minimum:g}, got {value!r}"
        )
    return float(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _always_failure(error: BaseException) -> bool:
    return True


@dataclass
class ServerConfig:
    """Everything a Server is configured with, in seconds and plain values."""

    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    queues: Mapping[str, int] = field(default_factory=lambda: {"default": 1})
    strict_priority: bool = False
    retry_delay: RetryDelay = default_retry_delay
    is_failure: IsFailure = _always_failure
    error_handler: ErrorHandler | None = None
    shutdown_timeout: float = 8.0
    health_check: HealthCheck | None = None
    health_check_interval: float = 15.0
    task_check_interval: float = 1.0
    delayed_task_check_interval: float = 5.0
    janitor_interval: float = 8.0
    janitor_batch_size: int = 100
    lease_duration: float = ASYNQ_LEASE_SECONDS
    heartbeat_interval: float = 5.0
    recoverer_interval: float = 60.0
    cancel_grace: float = 1.0
    group_aggregator: GroupAggregator | None = None
    group_grace_period: float = 60.0
    group_max_delay: float = 0.0
    group_max_size: int = 0
    group_check_interval: float = 0.0  # 0: asynq's min(7 s, grace period)
    clock: Clock = field(default_factory=SystemClock)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("asyncq.server"))

    def __post_init__(self) -> None:
        # asynq's server record holds concurrency as an int32 (and so do its tools).
        if not _whole(self.concurrency) or not 1 <= self.concurrency <= MAX_INT32:
            raise InvalidOptionError(
                f"concurrency must be a whole number from 1 to {MAX_INT32}, "
                f"got {self.concurrency!r}"
            )
        if not isinstance(self.strict_priority, bool):
            raise InvalidOptionError(
                f"strict_priority must be True or False, got {self.strict_priority!r}"
            )
        if not _whole(self.janitor_batch_size) or not 1 <= self.janitor_batch_size <= 10_000:
            raise InvalidOptionError("janitor_batch_size must be between 1 and 10000")
        if self.heartbeat_interval * 2 > self.lease_duration:
            raise InvalidOptionError(
                "heartbeat_interval must be at most half of lease_duration, so a lease is "
                "extended at least twice before it runs out"
            )
        for name in ("retry_delay", "is_failure"):
            if not callable(getattr(self, name)):
                raise InvalidOptionError(f"{name} must be callable")
        for name in ("error_handler", "health_check", "group_aggregator"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise InvalidOptionError(f"{name} must be callable or None, got {value!r}")
        if self.group_grace_period < 1:
            raise InvalidOptionError("group_grace_period must be at least 1 second (asynq's rule)")
        if not _whole(self.group_max_size) or self.group_max_size < 0:
            raise InvalidOptionError("group_max_size must be a whole number >= 0")
        if self.group_check_interval <= 0:
            self.group_check_interval = min(7.0, self.group_grace_period)
        if self.lease_duration < ASYNQ_LEASE_SECONDS:
            self.logger.warning(
                "lease_duration %.1fs is shorter than asynq's 30s: do not run Go asynq servers "
                "on the same queues (their recoverer could take back running tasks)",
                self.lease_duration,
            )

    @property
    def recovery_grace(self) -> float:
        """How long past its expiry a lease must be before the recoverer takes the task.

        asynq waits 30 s past a 30 s lease; asyncq waits one lease length, which is the
        same by default and scales down with the short leases of tests.
        """
        return self.lease_duration
