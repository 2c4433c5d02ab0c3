"""redis-py's cluster client, made to read the cluster's layout without waiting on a
silent node.

redis-py reads the layout again by itself (after a CLUSTERDOWN, a lost connection, every
few MOVED replies) under a lock that every other call through it waits on. It asks its
known nodes for ``CLUSTER SLOTS`` one at a time, in random order, and then asks the first
master for its command table. A frozen node (a stopped process, a stalled machine)
accepts connections and answers nothing, so a reading that asked it held every redis-py
call (the Inspector's, the CLI's, the recoverer's) for the whole socket timeout: 5.0-5.6 s
in every one of seven failovers of a frozen master, measured on calls to the healthy
masters. Two changes:

- Before a reading, every known node is sent a ``PING`` at once (on a bare socket; over
  TLS the layout is read as redis-py reads it). The nodes that answer
  first are asked for the layout; the others only if those cannot give all of it.
- The command table (where each command's keys are) is read once: a failover does not
  change it, and it was asked of the first master, frozen or not.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection

__all__ = ["PROBE_WAIT", "LayoutClient", "prompt_nodes"]

# The longest wait for any node to answer the probe. When none does, the layout is read
# as redis-py would (every node down is an error it reports best).
PROBE_WAIT = 1.0
# After the first answer, how much longer other nodes may answer and still be asked
# first: a healthy node answers within a millisecond or two.
LATE_ANSWER = 0.02


class LayoutClient(RedisCluster):
    """``RedisCluster`` that reads the layout from the nodes that answer, and reads the
    command table once (see the module's docstring)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Both classes only change methods: the objects keep redis-py's own layout.
        self.nodes_manager.__class__ = _PromptNodesManager
        self.commands_parser = _CommandTableKept()


class _PromptNodesManager(NodesManager):
    __slots__ = ()

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> None:
        epoch = self._epoch
        nodes = list(self.startup_nodes.values())
        # Over TLS a bare PING gets no answer: there the layout is read as redis-py would.
        plain = not self.connection_kwargs.get("ssl") and not issubclass(
            self.connection_kwargs.get("connection_class", Connection), SSLConnection
        )
        probe = plain and len(nodes) > 1
        prompt = await prompt_nodes(nodes) if probe else None
        if self._epoch != epoch:
            return  # another reading (redis-py's, or asyncq's own) finished meanwhile
        if not prompt:
            await super().initialize(additional_startup_nodes_info, last_failed_node_name)
            return
        # The slow ones are asked after the others (redis-py asks its additional nodes
        # after its startup nodes), and only if the others left slots uncovered. Another
        # reading may run at the same time and take them out too: each puts back its own.
        slow = [node for node in nodes if node.name not in prompt]
        taken = [n for n in slow if self.startup_nodes.pop(n.name, None) is not None]
        later = [*(additional_startup_nodes_info or []), *((n.host, int(n.port)) for n in slow)]
        try:
            await super().initialize(later, last_failed_node_name)
        finally:
            # Back in the startup nodes, to be probed at the next reading: after a reading
            # redis-py has put the layout's nodes there already, but a failed reading, or
            # one that another made needless, does not.
            for node in taken:
                self.startup_nodes.setdefault(node.name, node)


class _CommandTableKept(AsyncCommandsParser):
    __slots__ = ()

    async def initialize(self, node: ClusterNode | None = None) -> None:
        if node is not None:
            self.node = node  # asked for the keys of the few commands whose keys move
        if not self.commands:
            await super().initialize()


async def prompt_nodes(nodes: list[ClusterNode]) -> set[str]:
    """The names of the nodes that answered a ``PING`` first: the first to answer, and any
    other that answered within ``LATE_ANSWER`` after it. Empty if none answered within
    ``PROBE_WAIT`` (a node that refuses the connection has not answered)."""
    loop = asyncio.get_running_loop()
    probes = {loop.create_task(_ping(n.host, int(n.port))): n.name for n in nodes}
    answered: set[str] = set()
    pending = set(probes)
    deadline = loop.time() + PROBE_WAIT
    try:
        while pending:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            done, pending = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            answered.update(probes[p] for p in done if not p.cancelled() and not p.exception())
            if answered:
                deadline = min(deadline, loop.time() + LATE_ANSWER)
    finally:
        for probe in pending:
            probe.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)
    return answered


async def _ping(host: str, port: int) -> None:
    # A bare socket of its own, so that nothing of redis-py's pools waits on a silent node
    # and nothing is left open when the probe is cut short. Any reply counts, an error
    # too (a node that wants a password still answers).
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        if not await reader.read(1):
            raise ConnectionError(f"{host}:{port} closed the connection")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
