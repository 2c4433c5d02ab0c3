"""Lean pipelined connections for Lua script calls, the hot path of clients and workers.

redis-py spends about 85 µs of CPU on one async command (a pooled connection taken
and returned under a lock, a timer per read, observability hooks), which is most of
what a batched enqueue, a dequeue or a grouped acknowledgement costs asyncq. A
``ScriptLink`` is one connection to one node on which many calls are in flight at
once: a call packs its command with hiredis, writes it and waits for its reply,
which arrives in order. It costs about half as much. Links speak TLS where the
connector does, with the SSL context redis-py's own connections use.

Shared links carry EVALSHA, SCRIPT LOAD, CLIENT UNBLOCK and, while a slot moves, the
single-key commands redis-py could not deliver (never a command that blocks); a private
link (``open_private``) also carries the worker's blocking wait for new tasks. An ASK
redirection (a key already on the node a slot is moving to) is followed here, with
ASKING right before the command on the same connection, as the cluster protocol
requires. Anything else unusual (a lost or refused connection, a timeout, a MOVED, a
cluster in failover) is reported to the connector as ``LinkUnusable``, and the connector
then runs that call through redis-py, which knows how to follow a cluster through
failovers and slot moves.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

import hiredis

from asyncq._aio import mark_seen

__all__ = [
    "ClusterDownHere",
    "LinkUnusable",
    "NoReply",
    "PairProgress",
    "ScriptLink",
    "ScriptLinks",
    "TryAgainLater",
]

EncodableT = str | bytes | int | float

# Connections per node that may each carry a command and the WAIT behind it at once.
PAIR_LINKS = 16

# Error replies after which redis-py must take the call: it follows redirections,
# refreshes the slot map and types the error; the script has not run on this node.
_HAND_OVER_ERRORS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "MASTERDOWN", "LOADING")


class LinkUnusable(Exception):
    """The link cannot carry this call now; run it the ordinary way."""


class TryAgainLater(LinkUnusable):
    """A slot is moving and the call's keys are split between its two nodes (TRYAGAIN
    after an ASK): no node can run it until the move is over, so it is retried later,
    not handed to redis-py."""


class NoReply(LinkUnusable):
    """No reply came within the link's reply timeout: the node accepts connections but
    answers nothing (paused, stalled, or cut off), and the link was dropped."""


class ClusterDownHere(LinkUnusable):
    """The node answered CLUSTERDOWN: the cluster has marked a master as failed and no
    replica has taken its place yet (Redis refuses every command meanwhile, by default).
    This node is still the right one for the call, so the caller may try it here again
    shortly rather than have redis-py read the cluster's layout anew: that reading may
    ask the very node that stopped answering first, and wait its whole timeout, while
    every other redis-py call waits for it."""


class PairProgress:
    """What became of a command sent with a ``WAIT`` behind it, recorded as it happens, so
    that a caller cut short (a deadline, a lost connection) still knows: ``sent`` once
    the command was written, ``reply`` once its (non-error) reply arrived."""

    __slots__ = ("reply", "sent")

    def __init__(self) -> None:
        self.sent = False
        self.reply: list[Any] = []  # empty until the reply comes

    def take(self, done: asyncio.Future[Any]) -> None:
        """Done-callback of the command's reply: kept the moment it is set."""
        if done.cancelled() or done.exception() is not None or self.reply:
            return
        result = done.result()
        if not isinstance(result, hiredis.ReplyError):
            self.reply.append(result)


class ScriptLink(asyncio.Protocol):
    """One connection to one Redis node, with any number of calls in flight.

    Replies come back in the order the commands were written, so each call's future
    waits in a queue. If no reply comes within ``reply_timeout`` seconds of the oldest
    call, the connection is dropped and every waiting call fails with ``LinkUnusable``.
    """

    def __init__(self, reply_timeout: float) -> None:
        self._reader = hiredis.Reader()
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._reply_timeout = reply_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's TCP transport has every method of
        # asyncio.Transport (write and abort are all a link uses) without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                future, _ = waiting.popleft()
                if not future.done():
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as error:  # garbage, or a reply to no one
            self._fail(LinkUnusable(f"unreadable reply from Redis: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(LinkUnusable(f"connection lost: {exc or 'closed by the server'}"))

    @property
    def usable(self) -> bool:
        """Whether the link is connected and can carry calls."""
        return not self.closed and self._transport is not None

    # -- calls -------------------------------------------------------------------------------

    def call(self, args: Sequence[EncodableT]) -> asyncio.Future[Any]:
        """Send one command; the future gets its reply (a ``hiredis.ReplyError`` for an
        error reply) or fails with ``LinkUnusable``."""
        transport = self._transport
        if self.closed or transport is None:
            raise LinkUnusable("the link is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # hiredis's stubs declare a one-element tuple; any number of arguments is fine.
        transport.write(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]
        self._waiting.append((future, loop.time() + self._reply_timeout))
        if self._watchdog is None:
            self._watchdog = loop.call_at(loop.time() + self._reply_timeout, self._check)
        return future

    def close(self) -> None:
        """Drop the connection; calls still waiting fail with ``LinkUnusable``."""
        self._fail(LinkUnusable("the link was closed"))

    def _check(self) -> None:
        # One timer per link, not per call: it looks at the oldest call only.
        self._watchdog = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        due = self._waiting[0][1]
        if loop.time() >= due:
            self._fail(NoReply(f"no reply within {self._reply_timeout:g}s"))
        else:
            self._watchdog = loop.call_at(due, self._check)

    def _fail(self, error: LinkUnusable) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.abort()
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)


class ScriptLinks:
    """One ``ScriptLink`` per node address, opened on first use and reopened after a loss."""

    def __init__(
        self,
        *,
        username: str | None,
        password: str | None,
        db: int,
        connect_timeout: float,
        reply_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._username = username
        self._tls = tls
        self._password = password
        self._db = db
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._links: dict[str, ScriptLink] = {}
        self._opening: dict[str, asyncio.Task[ScriptLink]] = {}
        # Idle connections for a command followed by a WAIT (see call_then_wait), per node
        # and extra reply time (a connection's reply timeout is fixed when it opens).
        self._pair_links: dict[tuple[str, float], list[ScriptLink]] = {}
        self._pair_slots: dict[str, asyncio.Semaphore] = {}
        self._closed = False

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], tls: ssl.SSLContext | None = None
    ) -> ScriptLinks:
        """Links that connect as a redis-py connection with these keyword arguments
        would (credentials, database, timeouts), over TLS with ``tls`` when given."""
        return cls(
            username=settings.get("username"),
            password=settings.get("password"),
            db=int(settings.get("db") or 0),
            connect_timeout=float(settings.get("socket_connect_timeout") or 2.0),
            reply_timeout=float(settings.get("socket_timeout") or 5.0),
            tls=tls,
        )

    async def call(
        self, address: str, args: Sequence[EncodableT], *, script: str | None = None
    ) -> Any:
        """Run one command on the node at ``address`` (following an ASK to the node named);
        raises ``LinkUnusable`` when the link cannot carry it (the caller then uses
        redis-py). ``script``: the source of the script an EVALSHA runs, loaded on the
        node that answers NOSCRIPT (a restarted node, or the one a slot moves to)."""
        link = self._links.get(address)
        if link is None or not link.usable:
            link = await self._open(address)
        reply = await link.call(args)
        if isinstance(reply, hiredis.ReplyError):
            return await self._after_error(link, reply, args, script)
        return reply

    async def _after_error(
        self,
        link: ScriptLink,
        reply: hiredis.ReplyError,
        args: Sequence[EncodableT],
        script: str | None,
        asking: bool = False,
    ) -> Any:
        """What an error reply leads to: the script loaded and the call made again, an
        ASK followed, or ``LinkUnusable``; any other error reply is the call's answer."""
        text = str(reply)
        if text.startswith("NOSCRIPT") and script is not None:
            await link.call(("SCRIPT", "LOAD", script))
            reply = await _send(link, args, asking)
            if not isinstance(reply, hiredis.ReplyError):
                return reply
            text = str(reply)
        if text.startswith("ASK ") and not asking:
            target = await self._ask_target(text)
            reply = await _send(target, args, asking=True)
            if not isinstance(reply, hiredis.ReplyError):
                return reply
            return await self._after_error(target, reply, args, script, asking=True)
        if text.startswith("TRYAGAIN") and asking:
            raise TryAgainLater(text)
        if text.startswith("CLUSTERDOWN"):
            raise ClusterDownHere(text)
        if text.startswith(_HAND_OVER_ERRORS):
            raise LinkUnusable(text)
        return reply

    async def _ask_target(self, redirect: str) -> ScriptLink:
        """The shared link to the node an ``ASK <slot> <host:port>`` names."""
        parts = redirect.split()
        if len(parts) != 3:
            raise LinkUnusable(f"unreadable redirection: {redirect}")
        link = self._links.get(parts[2])
        if link is None or not link.usable:
            link = await self._open(parts[2])
        return link

    async def call_then_wait(
        self,
        address: str,
        command: Sequence[EncodableT],
        wait: Sequence[EncodableT],
        extra: float,
        progress: PairProgress,
    ) -> tuple[Any, Any]:
        """Run ``command`` and, right behind it on the same connection, a ``WAIT`` (which
        counts what that connection last did); their two replies. ``progress`` records
        the command as sent and its reply as it comes, whatever becomes of this call.

        Not on the shared link: Redis runs nothing else from a connection while a ``WAIT``
        on it blocks. Each pair takes a connection of its own (kept for the next, at most
        ``PAIR_LINKS`` per node; more pairs wait for one), whose replies may take
        ``extra`` seconds longer than usual, the most the ``WAIT`` blocks.
        """
        slots = self._pair_slots.get(address)
        if slots is None:
            slots = self._pair_slots[address] = asyncio.Semaphore(PAIR_LINKS)
        async with slots:
            if self._closed:
                raise LinkUnusable("the links are closed")
            idle = self._pair_links.setdefault((address, extra), [])
            while idle and not idle[-1].usable:
                idle.pop()
            if idle:
                link = idle.pop()
            else:
                try:
                    link = await self._connect(address, self._reply_timeout + extra)
                except (OSError, TimeoutError) as error:
                    raise LinkUnusable(f"cannot connect to {address}: {error}") from error
            reply, acknowledged = await _call_then_wait(link, command, wait, progress)
            if self._closed:
                link.close()
            else:
                idle.append(link)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith(_HAND_OVER_ERRORS):
            raise LinkUnusable(str(reply))
        return reply, acknowledged

    def usable_addresses(self) -> list[str]:
        """The node addresses whose link can carry calls now."""
        return [address for address, link in self._links.items() if link.usable]

    def close(self) -> None:
        """Drop every link (the connector is closing)."""
        for task in self._opening.values():
            task.cancel()
        for link in self._links.values():
            link.close()
        for idle in self._pair_links.values():
            for link in idle:
                link.close()
        self._links.clear()
        self._opening.clear()
        self._pair_links.clear()
        self._closed = True

    async def _open(self, address: str) -> ScriptLink:
        if self._closed:  # a call that began before close: no new connection for it
            raise LinkUnusable("the links are closed")
        # Concurrent first calls share one connection attempt.
        task = self._opening.get(address)
        if task is None:
            task = self._opening[address] = asyncio.ensure_future(self._connect(address))
            task.add_done_callback(lambda done: self._opened(address, done))
        try:
            link = await asyncio.shield(task)
        except (OSError, TimeoutError, LinkUnusable) as error:
            raise LinkUnusable(f"cannot connect to {address}: {error}") from error
        self._links[address] = link
        return link

    def _opened(self, address: str, task: asyncio.Task[ScriptLink]) -> None:
        self._opening.pop(address, None)
        mark_seen(task)  # a failure nobody waited for is not reported

    async def open_private(self, address: str, extra_wait: float) -> ScriptLink:
        """A new link to ``address`` for one owner, whose replies may take ``extra_wait``
        seconds longer than usual (for a command that blocks in Redis); the owner closes it."""
        return await self._connect(address, self._reply_timeout + extra_wait)

    async def _connect(self, address: str, reply_timeout: float | None = None) -> ScriptLink:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        timeout = self._reply_timeout if reply_timeout is None else reply_timeout
        # The TLS handshake, where there is one, is part of connecting (and of its
        # timeout); the host name checked against the certificate is the node's host.
        async with asyncio.timeout(self._connect_timeout):
            transport, link = await loop.create_connection(
                lambda: ScriptLink(timeout), host.strip("[]"), int(port), ssl=self._tls
            )
        try:
            if not link.usable:  # the loop gave the link no transport: leave it to redis-py
                transport.abort()  # the socket the loop opened is closed all the same
                raise LinkUnusable("the connection gave no transport")
            await self._handshake(link)
        except BaseException:
            link.close()
            raise
        return link

    async def _handshake(self, link: ScriptLink) -> None:
        replies = []
        if self._password is not None:
            credentials = (self._username, self._password) if self._username else (self._password,)
            replies.append(link.call(("AUTH", *credentials)))
        if self._db:
            replies.append(link.call(("SELECT", self._db)))
        for reply in replies:
            answer = await reply
            if isinstance(answer, hiredis.ReplyError):
                raise LinkUnusable(f"handshake refused: {answer}")


async def _send(link: ScriptLink, args: Sequence[EncodableT], asking: bool) -> Any:
    """One command on ``link``; after an ASK, with ASKING written right before it, so that
    no other command comes between them (the allowance ASKING gives lasts one command
    on one connection)."""
    if not asking:
        return await link.call(args)
    allowance = link.call(("ASKING",))
    answer = link.call(args)  # written before this coroutine next lets another one run
    _, reply = await asyncio.gather(allowance, answer)
    return reply


async def _call_then_wait(
    link: ScriptLink,
    command: Sequence[EncodableT],
    wait: Sequence[EncodableT],
    progress: PairProgress,
) -> tuple[Any, Any]:
    """Send both at once on ``link``; their replies (see ``call_then_wait``). A link that
    fails or is left with a reply unread is closed."""
    first = link.call(command)
    progress.sent = True
    first.add_done_callback(progress.take)
    second = link.call(wait)
    try:
        reply = await first
        acknowledged = await second
    except BaseException:
        link.close()  # a reply left unread: the connection cannot be used again
        raise
    finally:
        for sent in (first, second):  # a lost link fails both: seen here
            if sent.done():
                mark_seen(sent)
    return reply, acknowledged
