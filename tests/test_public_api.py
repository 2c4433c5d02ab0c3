"""The public surface is deliberate: adding or removing a name must show up in review."""

from __future__ import annotations

import asyncq

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(asyncq.__all__) == EXPECTED
    assert len(asyncq.__all__) == len(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in asyncq.__all__:
        assert getattr(asyncq, name) is not None


def test_errors_share_one_base() -> None:
    for name in asyncq.__all__:
        obj = getattr(asyncq, name)
        if isinstance(obj, type) and (
            name.endswith("Error") or name in ("SkipRetry", "RevokeTask")
        ):
            assert issubclass(obj, asyncq.AsyncqError)


def test_testing_helpers_are_pinned() -> None:
    import asyncq.testing

    assert set(asyncq.testing.__all__) == {
        "LocalRedisCluster",
        "ManualClock",
        "RedisServerProcess",
        "eventually",
    }
    for name in asyncq.testing.__all__:
        assert getattr(asyncq.testing, name) is not None
