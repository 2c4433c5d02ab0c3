"""Retry with backoff and a deadline around Redis calls.

redis-py's async cluster client retries connection errors without waiting and
gives up long before a replica is promoted (``cluster-node-timeout`` plus a few
seconds), and it does not retry TRYAGAIN during slot migration at all. This
wrapper turns a failover or a migration into one slow call instead of errors.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import exceptions as rx

from asyncq._aio import raise_if_cancelled
from asyncq.errors import (
    UNTRUSTED_ISSUER_CODES,
    WRONG_NAME_CODES,
    ConnectionFailedError,
    RedisRefusedError,
)

__all__ = [
    "RETRYABLE_ERRORS",
    "call_with_retry",
    "is_refusal",
    "is_retryable",
    "untrusted_certificate",
    "within",
]

T = TypeVar("T")

# The least time an attempt gets, so that the last one, after a pause, is a real try.
LAST_ATTEMPT = 0.05
NO_ANSWER_HINT = (
    "no answer came in time (a paused, stalled or overloaded server?); the last call may "
    "have been carried out all the same: an enqueue sent again with the same task_id "
    "stores nothing twice (TaskIdConflictError then means it was stored)"
)

RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    rx.ConnectionError,  # also BusyLoadingError and MaxConnectionsError
    rx.TimeoutError,
    rx.ClusterError,  # also ClusterDownError, MasterDownError, "TTL exhausted"
    rx.TryAgainError,  # a multi-key script during slot migration
    rx.SlotNotCoveredError,  # a slot without a master during failover
    OSError,
)


def is_retryable(error: BaseException) -> bool:
    """Whether ``error`` is a passing fault of the link or the cluster, worth another try."""
    if isinstance(error, RETRYABLE_ERRORS):
        return True
    if isinstance(error, AttributeError) and _raised_inside_redis_py(error):
        # When one connection to a node fails, redis-py's cluster client closes all of
        # them, also under commands still using the others: those fail on a reader or
        # writer that is now None, before anything of theirs was sent. A failover fault.
        return True
    if isinstance(error, rx.ResponseError):
        # A replica promoted mid-call answers READONLY; a loading node answers LOADING.
        text = str(error)
        # BUSY: another script runs past busy-reply-threshold; it ends or is killed soon.
        return text.startswith(
            ("READONLY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "BUSY ")
        )
    if isinstance(error, rx.RedisClusterException):
        # Raised while no seed answers during (re)initialisation; programming errors
        # such as keys in different slots are also RedisClusterException but say so.
        return "cannot be connected" in str(error) or "initialize" in str(error).lower()
    return False


# What Redis says when it refuses the connector itself, however often it is asked. (redis-py
# wraps some of these in a ConnectionError, or in RedisClusterException's "cannot be
# connected" while it looks for a seed, both otherwise passing faults.)
_REFUSALS = (
    "invalid username-password pair",
    "authentication required",
    "wrongpass",
    "noauth",
    "cluster mode is not enabled",
)


def is_refusal(error: BaseException) -> bool:
    """Whether Redis refused the connector's settings (credentials, topology): no retry."""
    if isinstance(error, rx.AuthenticationError | rx.AuthenticationWrongNumberOfArgsError):
        return True
    text = str(error).lower()
    return any(refusal in text for refusal in _REFUSALS)


def untrusted_certificate(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The TLS certificate verification failure behind ``error`` (redis-py wraps it) that
    trying again cannot fix, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError) and (
            current.verify_code in UNTRUSTED_ISSUER_CODES | WRONG_NAME_CODES
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def _raised_inside_redis_py(error: BaseException) -> bool:
    trace = error.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    module = trace.tb_frame.f_globals.get("__name__", "")
    return isinstance(module, str) and module.startswith("redis.")


async def call_with_retry(
    op: Callable[[], Awaitable[T]],
    *,
    deadline: float,
    address: str,
    base_delay: float = 0.02,
    max_delay: float = 0.5,
) -> T:
    """Run ``op`` until it succeeds, retrying passing faults until ``deadline`` seconds pass.

    Raises ``ConnectionFailedError`` naming ``address`` once the deadline is spent (saying
    so when the last call was sent and got no answer, as it may have been carried out);
    any other error (a script error, a wrong type) propagates at once. ``op`` should end
    by the deadline itself (see ``within``): a node that stopped answering holds an
    attempt for as long as ``op`` lets it.
    """
    started = time.monotonic()
    delay = base_delay
    while True:
        try:
            return await op()
        except Exception as error:
            raise_if_cancelled()  # a cancellation swallowed inside redis-py ends the retries
            if is_refusal(error):
                raise RedisRefusedError(address, error) from error
            if not is_retryable(error):
                raise
            waited = time.monotonic() - started
            if waited >= deadline:
                unanswered = isinstance(error, TimeoutError | rx.TimeoutError) or (
                    "no reply within" in str(error)
                )
                raise ConnectionFailedError(
                    address, waited, error, hint=NO_ANSWER_HINT if unanswered else None
                ) from error
            # Jitter so that many workers retrying at once do not hit the new master together.
            pause = min(delay * (0.5 + random.random()), deadline - waited)
            await asyncio.sleep(max(pause, 0.0))
            delay = min(delay * 2, max_delay)


async def within(ends: float, call: Awaitable[T]) -> T:
    """``call``, cut off (``TimeoutError``) at the monotonic time ``ends``, or after
    LAST_ATTEMPT if that has passed: a paused or stalled node answers nothing, and
    redis-py would wait the socket timeout for it, once per send it makes (three times in
    a cluster). About 4 µs, so it guards redis-py's calls, not the lean links' (whose
    reply timeout is capped at the deadline instead)."""
    async with asyncio.timeout(max(ends - time.monotonic(), LAST_ATTEMPT)):
        return await call
