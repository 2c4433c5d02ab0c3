"""Script calls that wait for replicas: the storing half of ``Client(wait_replicas=N)``.

Redis replicates asynchronously; ``WAIT`` returns once N replicas acknowledged the
writes its connection made. A connector sends a storing script and a ``WAIT`` right
behind it on one connection of their own (``ScriptLinks.call_then_wait``), and, when
that goes wrong halfway, never sends the storing script twice: a small confirming script
goes with the ``WAIT`` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import hiredis
from redis import exceptions as rx

from asyncq._broker.scripts import LuaScript, evalsha_loading
from asyncq._cluster.links import PAIR_LINKS, LinkUnusable, PairProgress, ScriptLinks
from asyncq._cluster.retry import call_with_retry
from asyncq.errors import ConnectionFailedError, InvalidOptionError

if TYPE_CHECKING:
    from asyncq._cluster.connector import Connector

__all__ = ["ReplicatedCalls"]

EncodableT = str | bytes | int | float

_log = logging.getLogger("asyncq.connector")


class ReplicatedCalls:
    """A connector's calls that wait for replicas. It is the connector's helper, so it
    uses the connector's own parts: its links, its bound on calls in flight, its retry."""

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        # (node address, script SHA) known to be loaded there, for calls followed by a WAIT.
        self._loaded: set[tuple[str, str]] = set()

    async def run(
        self,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[EncodableT],
        *,
        resend: Sequence[EncodableT],
        confirm: tuple[LuaScript, Sequence[str], Sequence[EncodableT]],
        replicas: int,
        replica_timeout: float,
    ) -> tuple[Any, int, int | None]:
        """Run a script that stores tasks, then wait until ``replicas`` replicas of the node
        hold them, for at most ``replica_timeout`` seconds (Redis's ``WAIT``).

        Returns the script's reply, how many replicas confirmed (0 when the ``WAIT`` was
        refused, or could not be sent again in time after the script ran), and, when the
        confirming script ran, how many of the tasks it found (else None).

        ``WAIT`` waits for the replication offset of its connection's last command (last
        write, from Redis 7.2), so the script call and the ``WAIT`` go together on one
        connection (``ScriptLinks.call_then_wait``). Where redis-py has to take the call (a
        redirection, a failover), or the ``WAIT`` was lost after the script's reply came,
        the script is not sent again (it could store a task a worker has taken and finished
        meanwhile): ``confirm``, a script that writes each task's message again, unchanged,
        where the task is still stored with it, goes with the ``WAIT`` instead. A task it
        does not find (run meanwhile, or lost with its old master) is not confirmed.
        """
        connector = self._connector
        wait = ("WAIT", replicas, max(round(replica_timeout * 1000), 1))
        sends = 0
        storing = PairProgress()  # whether the script went out, and its reply once it ran
        stored = storing.reply
        found: int | None = None  # how many tasks the confirming script found, if it ran

        async def attempt() -> Any:
            nonlocal sends, found
            if not stored:
                sends += 1
                current = args if sends == 1 else resend
                command = ("EVALSHA", script.sha, len(keys), *keys, *current)
                try:
                    # The reply is kept the moment it comes: from then on, only the
                    # WAIT may be sent again, whatever becomes of this one.
                    _, acknowledged = await self._run_then_wait(
                        self._links(), script, keys[0], command, wait,
                        replica_timeout, storing,
                    )  # fmt: skip
                except LinkUnusable:
                    if not stored:  # it did not run there
                        async with connector._in_flight:
                            storing.sent = True
                            stored.append(
                                await evalsha_loading(connector.client, script, keys, resend)
                            )
                else:
                    return _waited(acknowledged)
            check, check_keys, check_args = confirm
            command = ("EVALSHA", check.sha, len(check_keys), *check_keys, *check_args)
            try:
                count, acknowledged = await self._run_then_wait(
                    self._links(), check, check_keys[0], command, wait,
                    replica_timeout, PairProgress(),
                )  # fmt: skip
            except LinkUnusable as error:
                # Through redis-py, which follows the cluster and so learns where the
                # queue lives now; the next attempt confirms there.
                async with connector._in_flight:
                    await evalsha_loading(connector.client, check, check_keys, check_args)
                raise rx.ConnectionError(f"could not wait for replicas: {error}") from error
            found = int(count)
            return _waited(acknowledged)

        try:
            # Bounded as a whole: an attempt may wait for a free connection, then a WAIT.
            async with asyncio.timeout(connector.retry_deadline + replica_timeout):
                acknowledged = await call_with_retry(
                    lambda: connector._mapped(attempt), deadline=connector.retry_deadline,
                    address=connector.address,
                )  # fmt: skip
        except (TimeoutError, ConnectionFailedError) as error:
            if stored:  # stored, and not confirmed in time
                return stored[0], 0, found
            if isinstance(error, TimeoutError):
                waited = connector.retry_deadline + replica_timeout
                raise ConnectionFailedError(
                    connector.address, waited, TimeoutError(_timed_out(storing.sent))
                ) from error
            raise
        confirmed = acknowledged if isinstance(acknowledged, int) else 0
        return stored[0], confirmed, found

    def _links(self) -> ScriptLinks:
        """The connector's links (only links can send a call and its ``WAIT`` together)."""
        links = self._connector._links
        if links is None:
            if self._connector._client is None:
                raise RuntimeError("the connector is not connected")
            raise InvalidOptionError(
                "wait_replicas needs connections the connector can open itself (TCP or TLS); "
                "this connector's redis-py connection class is of another kind"
            )
        return links

    async def _run_then_wait(
        self,
        links: ScriptLinks,
        script: LuaScript,
        key: str,
        command: tuple[EncodableT, ...],
        wait: tuple[EncodableT, ...],
        extra: float,
        progress: PairProgress,
    ) -> tuple[Any, Any]:
        """A script call and a ``WAIT`` behind it on one connection to the key's node: the
        script's reply and the ``WAIT``'s (an error reply when Redis refused it); the
        call's ``progress`` is recorded as it happens (see ``ScriptLinks.call_then_wait``)."""
        address = self._connector.node_of(key)
        if (address, script.sha) not in self._loaded:
            # Loaded first, so that a NOSCRIPT does not cost a WAIT of its own.
            await links.call(address, ("SCRIPT", "LOAD", script.source))
            self._loaded.add((address, script.sha))
        reply, acknowledged = await links.call_then_wait(address, command, wait, extra, progress)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            self._loaded.discard((address, script.sha))  # flushed or restarted since
            raise LinkUnusable(str(reply))
        if isinstance(reply, hiredis.ReplyError):
            raise rx.ResponseError(str(reply))
        if isinstance(acknowledged, hiredis.ReplyError) and not _master_stepped_down(acknowledged):
            _log.warning("Redis at %s refused WAIT: %s", address, acknowledged)
        return reply, acknowledged


def _timed_out(sent: bool) -> str:
    """Why a call that waits for replicas ran out of time before its script's reply."""
    if sent:
        return (
            "the call was sent but no reply came in time (a stalled or overloaded master): "
            "its task may or may not be stored"
        )
    return (
        "the call was not sent: replicas that do not answer hold each of the "
        f"{PAIR_LINKS} connections per node for WAIT up to replica_timeout, and further "
        "calls wait for one; its task is not stored"
    )


def _master_stepped_down(reply: object) -> bool:
    """Whether a WAIT was cut short because its node became a replica (a failover)."""
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("UNBLOCKED")


def _waited(acknowledged: Any) -> Any:
    """A WAIT's reply; raises a passing fault (so the call is confirmed again on the new
    master) when its node stepped down meanwhile."""
    if _master_stepped_down(acknowledged):
        raise rx.ConnectionError(f"the master stepped down while waiting: {acknowledged}")
    return acknowledged
