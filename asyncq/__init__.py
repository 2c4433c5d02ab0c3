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
    NotReplicatedError,
    QueueNotEmptyError,
    QueueNotFoundError,
    RedisRefusedError,
    ResultNotKeptError,
    ResultTimeoutError,
    RevokeTask,
    SkipRetry,
    TaskCanceledError,
    TaskDeadlineExceededError,
    TaskDecodeError,
    TaskFailedError,
    TaskIdConflictError,
    TaskNotFoundError,
    TaskStateError,
)
from asyncq.inspector import (
    ClusterNode,
    DailyStats,
    GroupInfo,
    Inspector,
    QueueInfo,
    SchedulerEntryInfo,
    SchedulerEvent,
    ServerRecord,
    WorkerRecord,
)
from asyncq.scheduler import PeriodicTaskConfig, PeriodicTaskManager, Scheduler
from asyncq.servemux import Handler, Middleware, ServeMux
from asyncq.server import Server
from asyncq.sync import SyncClient
from asyncq.task import Task, TaskInfo, TaskState

__version__ = "0.1.0"

__all__ = [
    "AsyncqError",
    "Client",
    "ClusterNode",
    "ConnectionFailedError",
    "Connector",
    "DailyStats",
    "DuplicateTaskError",
    "EnqueueResult",
    "GroupInfo",
    "Handler",
    "HandlerNotFoundError",
    "Inspector",
    "InvalidOptionError",
    "InvalidQueueNameError",
    "LeaseExpiredError",
    "Middleware",
    "NotReplicatedError",
    "PeriodicTaskConfig",
    "PeriodicTaskManager",
    "QueueInfo",
    "QueueNotEmptyError",
    "QueueNotFoundError",
    "RedisClusterConnector",
    "RedisConnector",
    "RedisRefusedError",
    "ResultNotKeptError",
    "ResultTimeoutError",
    "RevokeTask",
    "Scheduler",
    "SchedulerEntryInfo",
    "SchedulerEvent",
    "ServeMux",
    "Server",
    "ServerRecord",
    "SkipRetry",
    "SyncClient",
    "Task",
    "TaskCanceledError",
    "TaskDeadlineExceededError",
    "TaskDecodeError",
    "TaskFailedError",
    "TaskIdConflictError",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskState",
    "TaskStateError",
    "WorkerRecord",
    "__version__",
]
