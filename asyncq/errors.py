"""Errors raised by asyncq. Every one derives from ``AsyncqError`` and says what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncq.task import TaskInfo

__all__ = [
    "AsyncqError",
    "ConnectionFailedError",
    "DuplicateTaskError",
    "HandlerNotFoundError",
    "InvalidOptionError",
    "InvalidQueueNameError",
    "LeaseExpiredError",
    "NotReplicatedError",
    "QueueNotEmptyError",
    "QueueNotFoundError",
    "RedisRefusedError",
    "ResultNotKeptError",
    "ResultTimeoutError",
    "RevokeTask",
    "SkipRetry",
    "TaskCanceledError",
    "TaskDeadlineExceededError",
    "TaskDecodeError",
    "TaskFailedError",
    "TaskIdConflictError",
    "TaskNotFoundError",
    "TaskStateError",
]


class AsyncqError(Exception):
    """Base class of every error asyncq raises on purpose."""


class InvalidOptionError(AsyncqError, ValueError):
    """An enqueue or server option has a wrong value or name; nothing was written."""


class InvalidQueueNameError(InvalidOptionError):
    """A queue name is blank or contains a brace; nothing was written."""


class DuplicateTaskError(AsyncqError):
    """A unique task with the same type and payload is already queued (asynq's ErrDuplicateTask)."""

    def __init__(self, queue: str, unique_key: str) -> None:
        super().__init__(
            f"a task with the same type and payload is already queued in {queue!r} "
            f"(unique lock {unique_key!r}); retry after the lock's TTL or drop unique="
        )
        self.queue = queue
        self.unique_key = unique_key


class TaskIdConflictError(AsyncqError):
    """The task id is already used in the queue, in any state (asynq's ErrTaskIDConflict)."""

    def __init__(self, queue: str, task_id: str) -> None:
        super().__init__(
            f"task id {task_id!r} is already used in queue {queue!r} (in any state, including "
            "archived or completed); choose another task_id or delete the old task"
        )
        self.queue = queue
        self.task_id = task_id


class ConnectionFailedError(AsyncqError, ConnectionError):
    """Redis could not be reached, or kept failing, until the connector's deadline passed."""

    def __init__(
        self,
        address: str,
        waited: float,
        cause: BaseException | None = None,
        *,
        hint: str | None = None,
    ) -> None:
        detail = ""
        if cause is not None:
            text = str(cause)
            detail = f": {type(cause).__name__}: {text}" if text else f": {type(cause).__name__}"
        hint = hint or "check that the server runs and the address is right"
        super().__init__(f"could not reach Redis at {address} within {waited:.1f}s{detail}; {hint}")
        self.address = address
        self.waited = waited


class RedisRefusedError(ConnectionFailedError):
    """Redis answered, but refused this connector (wrong credentials, or a single server
    given to ``RedisClusterConnector``), or, at the first contact, the connector could
    not trust it (a TLS certificate from an issuer it does not trust, or issued for
    another name). Trying again cannot help, so it is raised at once (a
    ``ConnectionFailedError``, so code that handles that one handles this too)."""

    def __init__(self, address: str, cause: BaseException) -> None:
        text = str(cause)
        what = f"Redis at {address} refused the connection"
        verify_code = getattr(cause, "verify_code", None)
        if verify_code is not None:
            what = f"no trusted TLS connection to Redis at {address}"
            hint = _certificate_hint(verify_code)
        elif "cluster mode is not enabled" in text.lower():
            hint = "it is not a cluster node: use RedisConnector for a single Redis server"
        else:
            hint = "check the username and password given to the connector"
        AsyncqError.__init__(self, f"{what} ({text}); {hint}")
        self.address = address
        self.waited = 0.0


# OpenSSL's verify codes for a certificate that waiting will not make valid: an issuer
# the connector does not trust (self-signed, unknown, untrusted), or a host name or
# address the certificate was not issued for. (Not yet valid or expired may be a
# certificate being rotated or a clock off by a little: those are tried again.)
UNTRUSTED_ISSUER_CODES = frozenset({18, 19, 20, 21, 27})
WRONG_NAME_CODES = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_/IP_ADDRESS_MISMATCH


def _certificate_hint(verify_code: int) -> str:
    """What to change for a certificate that failed verification with ``verify_code``."""
    if verify_code in WRONG_NAME_CODES:
        return (
            "the certificate was issued for other host names or addresses: connect by one "
            "it lists, or have one issued for this one"
        )
    return (
        "the server's TLS certificate is not trusted: give the connector the CA that signed "
        "it (tls_ca_certs, ssl_ca_certs in a rediss:// URL, --tls-ca-certs on the command line)"
    )


class NotReplicatedError(AsyncqError):
    """A task was written, but fewer replicas than the client's ``wait_replicas`` confirmed
    it in time: a failover of its master (now, or one that just happened) may lose it.

    ``info`` is the task's ``TaskInfo``. Usually the task is stored on the master and
    reaches the replicas when they catch up, unless the master fails first.
    """

    def __init__(self, info: TaskInfo, replicas: int, timeout: float) -> None:
        super().__init__(
            f"task {info.id!r} was written to queue {info.queue!r}, but fewer than {replicas} "
            f"replica(s) confirmed it within {timeout:g}s: a failover of its master may lose "
            "it. Check that the master has that many replicas online (INFO replication) "
            "and that they keep up (replica_timeout)"
        )
        self.info = info
        self.replicas = replicas
        self.timeout = timeout


class TaskDecodeError(AsyncqError):
    """Stored task data could not be decoded (corrupt or not written by asynq/asyncq)."""


class SkipRetry(AsyncqError):
    """Raise from a handler to archive the task at once, without further retries."""


class RevokeTask(AsyncqError):
    """Raise from a handler to drop the task: not retried, not archived (counted as processed)."""


class HandlerNotFoundError(AsyncqError):
    """No handler is registered for a task's type; the task fails and is retried as usual."""


class LeaseExpiredError(AsyncqError):
    """A task's lease ran out (its worker died or lost Redis); the recoverer took the task back."""


class TaskDeadlineExceededError(AsyncqError, TimeoutError):
    """A handler ran past the task's timeout or deadline and was cancelled."""


class QueueNotFoundError(AsyncqError, LookupError):
    """The queue is not in ``asynq:queues``: nothing was ever enqueued there, or it was deleted."""


class TaskNotFoundError(AsyncqError, LookupError):
    """No task with that id exists in the queue."""


class QueueNotEmptyError(AsyncqError):
    """The queue still has tasks; delete it with ``force=True`` to drop them too."""


class TaskStateError(AsyncqError):
    """The operation does not fit the task's state (e.g. deleting a running task)."""


class TaskCanceledError(AsyncqError):
    """A running task was cancelled on request (Inspector.cancel / ``asyncq task cancel``)."""


class TaskFailedError(AsyncqError):
    """A task awaited with ``wait_result`` failed for good (it was archived)."""

    def __init__(self, task_id: str, last_error: str) -> None:
        super().__init__(f"task {task_id!r} failed and was archived: {last_error}")
        self.task_id = task_id
        self.last_error = last_error


class ResultNotKeptError(AsyncqError):
    """The task finished but was deleted, so its result is gone; enqueue it with ``retention``."""


class ResultTimeoutError(AsyncqError, TimeoutError):
    """``wait_result`` gave up: the task did not finish in time (it may still finish later)."""
