"""Watches: an idle worker waits inside Redis, so a new task is dequeued as it lands.

When every served queue is empty, the dispatcher arms one watch per queue. On a
connection of its own to the queue's node, a watch sends two commands at once:

    BLMOVE <pending> <pending> RIGHT RIGHT <poll interval>  (waits for a task; moves none)
    EVALSHA <dequeue> ...                                   (runs right after it)

Redis answers the wait as soon as any client, asyncq or Go's asynq, pushes a task into
pending, and runs the dequeue in the same turn of its event loop. The task reaches the
worker in one trip, instead of a wake-up message followed by a dequeue round trip, and
each trip between processes costs a lot on a machine whose cores sleep when idle. When
the wait times out, the dequeue runs anyway: that is the poll. Every blocked worker is
answered (the task stays in pending), and the dequeue script decides who gets it.

The free concurrency slots are shared among the watches (``QueueRouter.watch_shares``:
all to the highest queue in strict mode, by weight otherwise). A watch given none asks
its dequeue for no task: its wait only wakes the worker, which then dequeues from the
queues so woken, in the ordinary order, one trip more.

A watch that is no longer needed (another queue got a task, or the server stops) is
released with CLIENT UNBLOCK: its wait ends at once, its dequeue still runs, and what it
took is handed over too, so no task is left leased to nobody. The release is sent and not
waited for: a frozen node answers neither it nor the dequeue, and the dispatcher leaves
such a watch to land on its own (see the dispatcher's ``LATE_AFTER``). A connection lost just
after its dequeue ran (the reply never came) is answered by sending the same dequeue
again through the connector: the script recognises the call by its record key and hands
back what it took. Only if that fails too do those tasks wait for the recoverer, when
their leases run out: at-least-once, as after a worker crash.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import hiredis

from asyncq._aio import mark_seen
from asyncq._broker.keys import QueueKeys
from asyncq._broker.rdb import Arg, Broker
from asyncq._broker.scripts import load_script
from asyncq._cluster.links import LinkUnusable, NoReply, ScriptLink

__all__ = ["MAX_WATCHED_QUEUES", "ArmedWatch", "Collected", "Watches"]

# A worker serving more queues than this waits on wake-up messages and the poll instead:
# each watch holds a connection (and a blocked client in Redis) while it waits.
MAX_WATCHED_QUEUES = 8


@dataclass(slots=True)
class _Watch:
    """A private connection to one queue's node, and its id there (for CLIENT UNBLOCK)."""

    keys: QueueKeys
    address: str
    link: ScriptLink
    client_id: int


@dataclass(slots=True)
class ArmedWatch:
    """One queue's wait and the dequeue queued behind it; ``dequeued`` gets its reply."""

    watch: _Watch
    script_keys: list[str]  # the dequeue's keys and arguments, to send it again
    args: list[Arg]
    count: int  # tasks the dequeue asks for
    moved: asyncio.Future[Any]
    dequeued: asyncio.Future[Any]

    @property
    def record(self) -> str:
        """The key under which the dequeue records the ids it took."""
        return self.script_keys[-1]


class Collected(NamedTuple):
    """What one armed watch brought back."""

    taken: list[tuple[str, bytes]]  # (task id, message) of each task its dequeue took
    wait_plainly: bool  # woken for a paused queue, or refused: wait the ordinary way once
    answered: bool  # the dequeue's reply was read (so ``taken`` is all it took)
    woken: bool  # the wait ended because a task landed (not released, not timed out)


class Watches:
    """The watches of one worker: armed while it is idle, collected when a task comes."""

    def __init__(self, broker: Broker, logger: logging.Logger) -> None:
        self.broker = broker
        self.logger = logger
        self.available = True  # False for good once the connector turns out to use no links
        self._watches: dict[str, _Watch] = {}
        self._releases: set[asyncio.Task[None]] = set()  # CLIENT UNBLOCKs on their way

    async def arm(
        self,
        shares: list[tuple[str, int]],
        block: float,
        lease_expiry: int,
        open_within: float | None = None,
    ) -> list[ArmedWatch] | None:
        """Send each queue's wait and a dequeue of as many tasks as its share (0: the
        wait only wakes the worker).

        Returns None (and sends nothing) when a watch cannot be opened, or not within
        ``open_within`` seconds (a node that accepts connections but answers nothing);
        the caller then waits the ordinary way. Every armed watch must be collected.
        """
        block = max(block, 0.001)  # BLMOVE would read 0 as "wait forever"
        watches = []
        for queue, _ in shares:
            try:
                async with asyncio.timeout(open_within):
                    watch = await self._watch(queue, block)
            except TimeoutError:
                self.logger.debug("no answer from the node of %s to open a watch", queue)
                watch = None
            if watch is None:
                return None
            watches.append(watch)
        script = load_script("dequeue")
        armed = []
        for watch, (_, count) in zip(watches, shares, strict=True):
            keys = watch.keys
            script_keys, args = self.broker.dequeue_call(keys, count, lease_expiry)
            wait = ("BLMOVE", keys.pending, keys.pending, "RIGHT", "RIGHT", block)
            try:
                moved = watch.link.call(wait)
                dequeued = watch.link.call(
                    ("EVALSHA", script.sha, len(script_keys), *script_keys, *args)
                )
            except LinkUnusable:  # lost since it was opened: the others still stand
                self._drop(watch)
                continue
            # A watch left uncollected (the server's task group died) fails when its link
            # closes: seen here, so asyncio does not report a never-retrieved exception.
            moved.add_done_callback(mark_seen)
            dequeued.add_done_callback(mark_seen)
            armed.append(ArmedWatch(watch, script_keys, args, count, moved, dequeued))
        return armed or None

    def release(self, armed: list[ArmedWatch]) -> None:
        """End the waits that are still on, so their dequeues run now. Returns at once:
        the caller waits for the dequeues' replies (``collect``), and a node that does
        not answer the release must not hold up the others."""
        for one in armed:
            if not one.dequeued.done():
                release = asyncio.ensure_future(self._unblock(one.watch))
                self._releases.add(release)
                release.add_done_callback(self._releases.discard)

    async def _unblock(self, watch: _Watch) -> None:
        try:
            await self.broker.connector.call_on_link(
                watch.address, "CLIENT", "UNBLOCK", watch.client_id
            )
        except (LinkUnusable, OSError) as error:
            # Cannot reach the node: give the watch up (see the module's last note), once
            # the layout is read again if the node went silent, so that the dequeue sent
            # again goes to the node that has taken its place.
            self.logger.debug("could not release the watch on %s: %s", watch.keys.name, error)
            if isinstance(error, NoReply):
                await self.broker.connector.node_went_silent(watch.address)
            self._drop(watch)

    async def collect(self, armed: ArmedWatch) -> Collected:
        """The tasks one armed watch took, and whether to wait the ordinary way once
        before the next watch: the watch was woken for tasks it may not take (the queue
        is paused, so the next wait would end at once too), or refused. A task another
        worker took first is no reason: pending is empty again, so the next wait blocks.
        Nor is a lost connection: the next watch opens a new one."""
        watch = armed.watch
        try:
            reply = await armed.dequeued
        except LinkUnusable as error:
            self.logger.debug("watch on %s lost: %s", watch.keys.name, error)
            self._drop(watch)
            if isinstance(error, NoReply):  # so the dequeue goes where the queue is now
                await self.broker.connector.node_went_silent(watch.address)
            return await self._send_again(armed)
        moved = armed.moved.result() if armed.moved.done() else None
        refused = isinstance(reply, hiredis.ReplyError)
        # A refused wait (an old Redis without BLMOVE, say) does not stop the dequeue
        # behind it, which may have taken tasks: they are handed over all the same.
        taken = [] if refused else self.broker.dequeue_taken(watch.keys, armed.record, reply)
        if refused or isinstance(moved, hiredis.ReplyError):
            await self._refused(watch, reply if refused else moved)
            return Collected(taken, True, not refused, False)
        paused = isinstance(reply, int)  # the dequeue's answer for a paused queue
        woken = moved is not None
        return Collected(taken, woken and paused, True, woken)

    async def _send_again(self, armed: ArmedWatch) -> Collected:
        """The watch's connection went, maybe after its dequeue ran and leased tasks, but
        before the reply arrived. The same call sent again, with the same record key,
        hands back what the first one took (or, if it never ran, takes what it may now),
        so those tasks run now rather than when their leases run out."""
        try:
            taken = await self.broker.send_dequeue(armed.watch.keys, armed.script_keys, armed.args)
        except Exception as error:  # the recoverer brings any taken task back in the end
            self.logger.warning("could not send the dequeue of a lost watch again: %s", error)
            return Collected([], False, False, False)
        return Collected(taken, False, True, False)

    def close(self) -> None:
        """Drop every watch connection (the dispatcher has stopped)."""
        for release in self._releases:
            release.cancel()
        for watch in list(self._watches.values()):
            self._drop(watch)

    async def _refused(self, watch: _Watch, error: Any) -> None:
        if str(error).startswith("NOSCRIPT"):
            # A restarted or promoted node: load the script for the next watch.
            try:
                await watch.link.call(("SCRIPT", "LOAD", load_script("dequeue").source))
            except LinkUnusable:
                self._drop(watch)
            return
        if str(error).startswith(("NOPERM", "ERR unknown command")):
            # This user may not block, or this Redis has no BLMOVE: never try again.
            self.logger.info("idle workers wait for wake-ups instead: %s", error)
            self.available = False
        # MOVED (the slot moved), a failover, or anything else: a new watch next time.
        self.logger.debug("watch on %s refused: %s", watch.keys.name, error)
        self._drop(watch)

    async def _watch(self, queue: str, block: float) -> _Watch | None:
        keys = self.broker.keys(queue)
        connector = self.broker.connector
        address = connector.node_of(keys.pending)
        watch = self._watches.get(queue)
        if watch is not None and not watch.link.closed and watch.address == address:
            return watch
        if watch is not None:
            self._drop(watch)
        try:
            link = await connector.open_private_link(address, block)
        except (LinkUnusable, OSError, TimeoutError) as error:
            self.logger.debug("cannot open a watch on %s: %s", queue, error)
            return None
        if link is None:
            self.available = False
            return None
        try:
            client_id = await link.call(("CLIENT", "ID"))
        except LinkUnusable:
            return None
        if not isinstance(client_id, int):  # refused (an ACL, say): no watches here
            link.close()
            self.available = False
            return None
        watch = self._watches[queue] = _Watch(keys, address, link, int(client_id))
        return watch

    def _drop(self, watch: _Watch) -> None:
        watch.link.close()
        if self._watches.get(watch.keys.name) is watch:
            del self._watches[watch.keys.name]
