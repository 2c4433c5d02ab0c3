"""asyncq: an asyncio task queue on Redis Cluster, wire-compatible with Go's asynq.

The public API is what ``__all__`` lists; everything under a leading underscore
may change without notice.
"""

from __future__ import annotations

from asyncq._cluster.connector import Connector, RedisClusterConnector, RedisConnector
from asyncq.client import Client, EnqueueResult
from asyncq.errors import (
    AsyncqError,
    ConnectionFailedError,
    DuplicateTaskError,
    HandlerNotFoundError,
    InvalidOptionError,
    InvalidQueueNameError,
    LeaseExpiredError,
    RevokeTask,
    SkipRetry,
    TaskDeadlineExceededError,
    TaskDecodeError,
    TaskIdConflictError,
)
from asyncq.servemux import Handler, Middleware, ServeMux
from asyncq.server import Server
from asyncq.task import Task, TaskInfo, TaskState

__version__ = "0.1.0"

__all__ = [
    "AsyncqError",
    "Client",
    "ConnectionFailedError",
    "Connector",
    "DuplicateTaskError",
    "EnqueueResult",
    "Handler",
    "HandlerNotFoundError",
    "InvalidOptionError",
    "InvalidQueueNameError",
    "LeaseExpiredError",
    "Middleware",
    "RedisClusterConnector",
    "RedisConnector",
    "RevokeTask",
    "ServeMux",
    "Server",
    "SkipRetry",
    "Task",
    "TaskDeadlineExceededError",
    "TaskDecodeError",
    "TaskIdConflictError",
    "TaskInfo",
    "TaskState",
    "__version__",
]
