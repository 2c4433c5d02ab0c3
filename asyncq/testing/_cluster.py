"""A throw-away Redis Cluster assembled from ``RedisServerProcess`` nodes."""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

import redis

from asyncq.testing._process import RedisServerProcess, stop_many
from asyncq.testing._support import (
    BIND_ATTEMPTS,
    CLUSTER_BUS_PORT_OFFSET,
    CLUSTER_SLOTS,
    DEFAULT_STOP_TIMEOUT,
    LOOPBACK_HOST,
    MAX_PORT,
    HarnessError,
    NotReady,
    cluster_info_of,
    find_redis_server,
    free_ports,
    raw_command,
    redis_server_version,
    wait_until,
)
from asyncq.testing._tls import TlsFiles, tls_server_args

__all__ = ["ClusterNodeInfo", "LocalRedisCluster", "SlotRange", "slot_ranges"]

# --------------------------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------------------------


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Split the 16384 slots into ``masters`` contiguous inclusive ranges.

    Uses the same rounding as ``redis-cli --cluster create``, so 3 masters get the familiar
    0-5460 / 5461-10922 / 10923-16383.
    """
    if not 1 <= masters <= CLUSTER_SLOTS:
        raise ValueError(f"masters must be between 1 and {CLUSTER_SLOTS}, got {masters}")
    per_master = CLUSTER_SLOTS / masters
    ranges: list[tuple[int, int]] = []
    first = 0
    cursor = 0.0
    for index in range(masters):
        # floor(x + 0.5) is C's lround() for positive x, which redis-cli uses.
        last = math.floor(cursor + per_master - 1 + 0.5)
        if last > CLUSTER_SLOTS - 1 or index == masters - 1:
            last = CLUSTER_SLOTS - 1
        ranges.append((first, last))
        first = last + 1
        cursor += per_master
    return ranges


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of CLUSTER NODES: how the asked node currently sees one cluster member."""

    node_id: str
    address: str
    flags: frozenset[str]
    master_id: str | None
    link_state: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        """Whether the member is a master (possibly a failed one without slots)."""
        return "master" in self.flags

    @property
    def is_replica(self) -> bool:
        """Whether the member is a replica."""
        return "slave" in self.flags

    @property
    def is_failing(self) -> bool:
        """Whether the member is flagged FAIL or PFAIL (``fail?``)."""
        return bool(self.flags & {"fail", "fail?"})

    @property
    def is_myself(self) -> bool:
        """Whether this line describes the node that answered."""
        return "myself" in self.flags

    def owns_slot(self, slot: int) -> bool:
        """Whether ``slot`` lies in one of this member's slot ranges."""
        return any(low <= slot <= high for low, high in self.slots)

    @classmethod
    def parse_line(cls, line: str) -> ClusterNodeInfo:
        """Parse one line of CLUSTER NODES output."""
        fields = line.split()
        if len(fields) < 8:
            raise ValueError(f"malformed CLUSTER NODES line: {line!r}")
        # "ip:port@cport[,hostname]" -> "ip:port"
        address = fields[1].split(",", 1)[0].split("@", 1)[0]
        slots: list[tuple[int, int]] = []
        for item in fields[8:]:
            if item.startswith("["):
                continue  # "[slot->-node]" marks a migration in progress, not ownership
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        return cls(
            node_id=fields[0],
            address=address,
            flags=frozenset(fields[2].split(",")),
            master_id=None if fields[3] == "-" else fields[3],
            link_state=fields[7],
            slots=tuple(slots),
        )


def _cluster_nodes(client: redis.Redis) -> list[ClusterNodeInfo]:
    text = str(raw_command(client, "CLUSTER", "NODES"))
    return [ClusterNodeInfo.parse_line(line) for line in text.splitlines() if line.strip()]


def _myself(entries: Iterable[ClusterNodeInfo]) -> ClusterNodeInfo:
    """Return the line of CLUSTER NODES describing the node that answered."""
    for entry in entries:
        if entry.is_myself:
            return entry
    raise NotReady("CLUSTER NODES reply has no 'myself' line")


class SlotRange(NamedTuple):
    """One entry of CLUSTER SLOTS: who serves an inclusive range of slots."""

    start: int
    end: int
    master: str
    replicas: list[str]


def _cluster_slots(client: redis.Redis) -> list[SlotRange]:
    """Return CLUSTER SLOTS (the routing table cluster clients use), sorted by slot."""
    ranges: list[SlotRange] = []
    for entry in raw_command(client, "CLUSTER", "SLOTS"):
        start, end, *node_entries = entry
        # Each node entry is [ip, port, node-id, (metadata since 7.0)]; we need ip:port only.
        addresses = [f"{node[0]}:{int(node[1])}" for node in node_entries]
        ranges.append(SlotRange(int(start), int(end), addresses[0], addresses[1:]))
    return sorted(ranges)


def _find_slot(ranges: Iterable[SlotRange], slot: int) -> SlotRange | None:
    return next((r for r in ranges if r.start <= slot <= r.end), None)


class _NodePorts(NamedTuple):
    """The ports of one node: clients, the cluster bus, and TLS clients (0: no TLS)."""

    client: int
    bus: int
    tls: int


class LocalRedisCluster:
    """A throw-away Redis Cluster of local ``redis-server`` processes.

    By default 3 masters with one replica each, slots split like ``redis-cli --cluster
    create`` does, and a 1 s ``cluster-node-timeout`` so failover tests finish quickly. The
    cluster is built without ``redis-cli``: all nodes are launched at once, then wired up with
    CLUSTER ADDSLOTSRANGE / MEET / REPLICATE (Redis >= 7.0). :meth:`start` returns once every
    node reports ``cluster_state:ok``, knows every other node, agrees on every node's role, and
    every replica's link to its master is up.

    ``ports`` are preferred client ports (e.g. :data:`DEMO_CLUSTER_PORTS`); when any is taken
    the cluster quietly uses free ports instead, so always read addresses from :attr:`seeds`.
    Nodes ``0..masters-1`` start as masters; the rest replicate them round-robin.

    With ``tls`` (see ``make_tls_files``), every node also has a TLS port, and the cluster
    bus and replication run over TLS: clients that connect to :attr:`tls_seeds` over TLS
    learn the other nodes' TLS ports, those on the plain ports (the harness's own) the
    plain ones.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas_per_master: int = 1,
        *,
        ports: Sequence[int] | None = None,
        node_timeout_ms: int = 1000,
        host: str = LOOPBACK_HOST,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        redis_server: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        if not 1 <= masters <= CLUSTER_SLOTS:
            raise ValueError(f"masters must be between 1 and {CLUSTER_SLOTS}, got {masters}")
        if replicas_per_master < 0:
            raise ValueError(f"replicas_per_master must be >= 0, got {replicas_per_master}")
        if node_timeout_ms <= 0:
            raise ValueError(f"node_timeout_ms must be > 0, got {node_timeout_ms}")
        self.masters_count = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.host = host
        self.startup_timeout = startup_timeout
        size = masters * (1 + replicas_per_master)
        if ports is not None and len(ports) != size:
            raise ValueError(f"{size} nodes need {size} ports, got {len(ports)}: {list(ports)}")
        self._preferred_ports = list(ports) if ports is not None else None
        self._extra_args = list(extra_args)
        self._binary = redis_server
        self.tls = tls
        #: The TLS port of each node in ``nodes`` (with ``tls`` only).
        self.tls_ports: list[int] = []
        #: The server processes, in creation order (masters first, as initially configured).
        self.nodes: list[RedisServerProcess] = []
        # Cluster bus port of each node in ``nodes``; MEET must be told it explicitly.
        self._bus_ports: list[int] = []
        self._root: Path | None = None
        self._stopped = False

    # -- identity ------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Total number of nodes (masters plus replicas)."""
        return self.masters_count * (1 + self.replicas_per_master)

    @property
    def seeds(self) -> list[str]:
        """``"host:port"`` of every node, usable as cluster client startup nodes."""
        return [node.address for node in self.nodes]

    @property
    def tls_seeds(self) -> list[str]:
        """``"host:port"`` of every node's TLS port (a cluster started with ``tls``)."""
        if self.tls is None:
            raise HarnessError("this cluster was started without tls")
        return [
            f"{node.host}:{port}" for node, port in zip(self.nodes, self.tls_ports, strict=True)
        ]

    @property
    def directory(self) -> Path:
        """The temporary directory holding one subdirectory per node."""
        if self._root is None:
            raise HarnessError("cluster has not been started")
        return self._root

    def __repr__(self) -> str:
        return f"<LocalRedisCluster {','.join(self.seeds) or '(not started)'}>"

    def running_nodes(self) -> list[RedisServerProcess]:
        """The nodes whose processes are currently alive."""
        return [node for node in self.nodes if node.is_running()]

    def node_for_address(self, address: str) -> RedisServerProcess:
        """Return the node listening on ``address`` (``"host:port"``); raise KeyError if none."""
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(f"no node of this cluster listens on {address!r}; nodes: {self.seeds}")

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Launch and configure all nodes; return ``self`` once the cluster is healthy."""
        if self._root is not None:
            raise HarnessError("a LocalRedisCluster can only be started once")
        binary = self._binary or find_redis_server()
        version = redis_server_version(binary)
        if version < (7, 0, 0):
            raise HarnessError(
                f"LocalRedisCluster needs Redis >= 7.0 (CLUSTER ADDSLOTSRANGE, cluster-port); "
                f"{binary} is {'.'.join(map(str, version))}"
            )
        deadline = time.monotonic() + self.startup_timeout
        self._root = Path(tempfile.mkdtemp(prefix="asyncq-cluster-"))
        # Registered before anything is launched so a crash half-way still cleans up.
        atexit.register(self.stop)
        try:
            self._launch_nodes(binary, deadline)
            self._configure(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _node_args(self, bus_port: int, tls_port: int | None) -> list[str]:
        tls: list[str] = []
        if self.tls is not None and tls_port is not None:
            tls = [
                *tls_server_args(self.tls, tls_port),
                "--tls-cluster", "yes",
                "--tls-replication", "yes",
            ]  # fmt: skip
        return [
            *tls,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # An explicit bus port (Redis >= 7.0) frees client ports from the port+10000 rule,
            # so kernel-picked ports above 55535 work and bus ports get probed like any other.
            "--cluster-port",
            str(bus_port),
            # A fresh master's replication offset stays 0 until it pings its replicas (default
            # every 10 s), and CLUSTER SLOTS hides replicas at offset 0; ping every second.
            "--repl-ping-replica-period",
            "1",
            *self._extra_args,
        ]

    def _pick_ports(
        self, count: int, preferred: Sequence[int] | None, exclude: Collection[int] = ()
    ) -> list[_NodePorts]:
        """Return the ports of ``count`` nodes, all distinct and currently free."""
        client_ports = free_ports(count, preferred=preferred, exclude=exclude, host=self.host)
        avoid = {*exclude, *client_ports}
        bus_preferred = [port + CLUSTER_BUS_PORT_OFFSET for port in client_ports]
        bus_ports = free_ports(
            count,
            # Stick to Redis' usual port+10000 when possible: familiar in demos and logs.
            preferred=bus_preferred if max(bus_preferred) <= MAX_PORT else None,
            exclude=avoid,
            host=self.host,
        )
        tls_ports = [0] * count
        if self.tls is not None:
            tls_ports = free_ports(count, exclude={*avoid, *bus_ports}, host=self.host)
        return [
            _NodePorts(*ports) for ports in zip(client_ports, bus_ports, tls_ports, strict=True)
        ]

    def _make_node(self, index: int, ports: _NodePorts, binary: str) -> RedisServerProcess:
        directory = self.directory / f"node-{index}"
        # A failed attempt may have left a nodes.conf claiming other ports; start clean.
        shutil.rmtree(directory, ignore_errors=True)
        return RedisServerProcess(
            ports.client,
            host=self.host,
            directory=directory,
            extra_args=self._node_args(ports.bus, ports.tls or None),
            redis_server=binary,
        )

    def _launch_nodes(self, binary: str, deadline: float) -> None:
        picked = self._pick_ports(self.size, self._preferred_ports)
        self.nodes = [self._make_node(index, ports, binary) for index, ports in enumerate(picked)]
        self._bus_ports = [ports.bus for ports in picked]
        self.tls_ports = [ports.tls for ports in picked] if self.tls is not None else []
        pending = list(range(self.size))
        for attempt in range(BIND_ATTEMPTS):
            # Launch everything before waiting for anything: startup cost is paid in parallel.
            for index in pending:
                self.nodes[index].spawn()
            failed: list[int] = []
            for index in pending:
                node = self.nodes[index]
                try:
                    node.wait_until_ready(max(0.1, deadline - time.monotonic()))
                except HarnessError:
                    if attempt + 1 < BIND_ATTEMPTS and node.failed_to_bind():
                        failed.append(index)
                        continue
                    raise
            if not failed:
                return
            # Someone took a port between our probe and redis' bind(); move those nodes.
            in_use = {*(node.port for node in self.nodes), *self._bus_ports, *self.tls_ports}
            fresh = self._pick_ports(len(failed), None, exclude=in_use)
            for index, ports in zip(failed, fresh, strict=True):
                self.nodes[index].close()
                self.nodes[index] = self._make_node(index, ports, binary)
                self._bus_ports[index] = ports.bus
                if self.tls is not None:
                    self.tls_ports[index] = ports.tls
            pending = failed

    def _configure(self, deadline: float) -> None:
        clients = [node.admin_client() for node in self.nodes]
        ids = [str(raw_command(client, "CLUSTER", "MYID")) for client in clients]
        for epoch, client in enumerate(clients, start=1):
            # Distinct config epochs up front (as redis-cli does) spare the cluster the
            # epoch-collision resolution that otherwise delays convergence.
            raw_command(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for (low, high), client in zip(slot_ranges(self.masters_count), clients, strict=False):
            raw_command(client, "CLUSTER", "ADDSLOTSRANGE", low, high)
        for i, client in enumerate(clients):
            # A full mesh of MEETs: every node learns every other directly instead of waiting
            # for gossip to spread the news, which is noticeably faster for a fresh cluster.
            for j in range(i + 1, self.size):
                peer = self.nodes[j]
                raw_command(client, "CLUSTER", "MEET", peer.host, peer.port, self._bus_ports[j])

        def everyone_knows_everyone() -> bool:
            for node in self.nodes:
                known = {
                    entry.node_id
                    for entry in _cluster_nodes(node.admin_client())
                    if not entry.flags & {"handshake", "noaddr"}
                }
                if not known.issuperset(ids):
                    raise NotReady(f"{node.address} knows {len(known)} of {self.size} nodes")
            return True

        # CLUSTER REPLICATE needs the replica to know its master's ID already.
        wait_until(
            everyone_knows_everyone,
            timeout=max(0.1, deadline - time.monotonic()),
            description="all cluster nodes to meet each other",
        )
        expected: dict[str, str | None] = {node_id: None for node_id in ids[: self.masters_count]}
        for offset, client in enumerate(clients[self.masters_count :]):
            master_id = ids[offset % self.masters_count]
            raw_command(client, "CLUSTER", "REPLICATE", master_id)
            expected[ids[self.masters_count + offset]] = master_id
        self.wait_until_healthy(
            timeout=max(0.1, deadline - time.monotonic()), expected_roles=expected
        )

    def stop(self) -> None:
        """Stop every node this cluster started and delete its directory; idempotent."""
        atexit.unregister(self.stop)
        if self._stopped:
            return
        self._stopped = True
        stop_many(self.nodes, DEFAULT_STOP_TIMEOUT)
        for node in self.nodes:
            node.close()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
        if self._root is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- health --------------------------------------------------------------------------

    def _check_health(self, expected_roles: Mapping[str, str | None] | None) -> bool:
        """Return True if the running nodes form a healthy cluster, else raise NotReady."""
        running = self.running_nodes()
        if not running:
            raise NotReady("no node is running")
        views: dict[str, list[ClusterNodeInfo]] = {}
        for node in running:
            client = node.admin_client()
            state = cluster_info_of(client).get("cluster_state")
            if state != "ok":
                raise NotReady(f"{node.address} reports cluster_state:{state}")
            entries = _cluster_nodes(client)
            known = [e for e in entries if not e.flags & {"handshake", "noaddr"}]
            if len(known) != self.size:
                raise NotReady(f"{node.address} knows {len(known)} of {self.size} nodes")
            views[node.address] = entries
        # Each node's own line is the truth about its role; every other view must agree, or
        # clients would get different topologies depending on which seed they ask.
        selves = {address: _myself(entries) for address, entries in views.items()}
        for viewer, entries in views.items():
            by_id = {entry.node_id: entry for entry in entries}
            for address, me in selves.items():
                seen = by_id.get(me.node_id)
                if seen is None:
                    raise NotReady(f"{viewer} does not know {address}")
                if seen.is_failing:
                    raise NotReady(f"{viewer} flags running node {address} as {sorted(seen.flags)}")
                if seen.is_master != me.is_master or seen.master_id != me.master_id:
                    raise NotReady(f"{viewer} has a stale view of {address}'s role")
            for node_id, master_id in (expected_roles or {}).items():
                seen = by_id.get(node_id)
                if seen is None:
                    raise NotReady(f"{viewer} does not know node {node_id}")
                if master_id is None and not seen.is_master:
                    raise NotReady(f"{viewer} does not see {seen.address} as a master yet")
                if master_id is not None and seen.master_id != master_id:
                    raise NotReady(f"{viewer} does not see {seen.address} as a replica yet")
        for node in running:
            if selves[node.address].is_replica:
                link = node.admin_client().info("replication").get("master_link_status")
                if link != "up":
                    raise NotReady(f"replica {node.address} has master_link_status:{link}")
        # CLUSTER SLOTS omits replicas whose replication offset is still 0, so a replica can be
        # linked up yet invisible to cluster clients; wait until every view lists them all.
        replicas = {address for address, me in selves.items() if me.is_replica}
        for node in running:
            listed = {r for entry in _cluster_slots(node.admin_client()) for r in entry.replicas}
            missing = replicas - listed
            if missing:
                raise NotReady(f"{node.address}'s CLUSTER SLOTS lacks replicas {sorted(missing)}")
        return True

    def wait_until_healthy(
        self,
        timeout: float = 30.0,
        *,
        expected_roles: Mapping[str, str | None] | None = None,
    ) -> None:
        """Wait until the *running* nodes form a healthy cluster.

        Healthy means: each reports ``cluster_state:ok`` and knows all :attr:`size` nodes; none
        flags a running node as failing; all agree on every running node's role; every running
        replica has ``master_link_status:up`` and is listed in every node's CLUSTER SLOTS.
        Dead nodes are allowed (they stay known as ``fail``). ``expected_roles`` (node ID ->
        master ID, or None for a master) additionally pins the topology, which the initial setup
        uses. Call this after restarting a node.
        """
        wait_until(
            lambda: self._check_health(expected_roles),
            timeout=timeout,
            interval=0.05,
            description="the Redis Cluster to become healthy",
        )

    # -- topology queries ----------------------------------------------------------------

    def _ask(self, via: str | None) -> redis.Redis:
        """Return the admin client of node ``via``, or of the first running node."""
        if via is not None:
            return self.node_for_address(via).admin_client()
        for node in self.nodes:
            if node.is_running():
                return node.admin_client()
        raise HarnessError("no node of the cluster is running")

    def cluster_nodes(self, via: str | None = None) -> list[ClusterNodeInfo]:
        """Return CLUSTER NODES as seen by node ``via`` (default: the first running node)."""
        return _cluster_nodes(self._ask(via))

    def cluster_info(self, via: str | None = None) -> dict[str, str]:
        """Return CLUSTER INFO of node ``via`` (default: the first running node)."""
        return cluster_info_of(self._ask(via))

    def masters(self, via: str | None = None) -> list[ClusterNodeInfo]:
        """Return the current, non-failed masters as the cluster sees them, by first slot."""
        found = [n for n in self.cluster_nodes(via) if n.is_master and not n.is_failing]
        return sorted(found, key=lambda n: (n.slots[0][0] if n.slots else CLUSTER_SLOTS, n.address))

    def replicas_of(self, master_id: str, via: str | None = None) -> list[ClusterNodeInfo]:
        """Return the non-failed replicas of the master with node ID ``master_id``."""
        return [n for n in self.cluster_nodes(via) if n.master_id == master_id and not n.is_failing]

    def cluster_slots(self, via: str | None = None) -> list[SlotRange]:
        """Return CLUSTER SLOTS of node ``via`` (default: the first running node)."""
        return _cluster_slots(self._ask(via))

    def slot_owner(self, slot: int, via: str | None = None) -> tuple[str, list[str]]:
        """Return ``(master address, [replica addresses])`` serving ``slot``, per CLUSTER SLOTS.

        This is the routing table clients get, as node ``via`` (default: the first running
        node) sees it; failed replicas are left out by Redis itself.
        """
        if not 0 <= slot < CLUSTER_SLOTS:
            raise ValueError(f"slot must be in [0, {CLUSTER_SLOTS}), got {slot}")
        owner = _find_slot(_cluster_slots(self._ask(via)), slot)
        if owner is None:
            raise HarnessError(f"slot {slot} is not served by any node")
        return owner.master, owner.replicas

    def slot_for_key(self, key: str | bytes) -> int:
        """Return the hash slot of ``key``, computed by the server (CLUSTER KEYSLOT)."""
        return int(raw_command(self._ask(None), "CLUSTER", "KEYSLOT", key))

    # -- failure injection ---------------------------------------------------------------

    def kill_master_of_slot(self, slot: int) -> RedisServerProcess:
        """SIGKILL the master currently serving ``slot`` and return its (dead) node object."""
        master_address, _ = self.slot_owner(slot)
        node = self.node_for_address(master_address)
        node.kill()
        return node

    def wait_for_failover(self, slot: int, old_master_address: str, timeout: float = 30.0) -> str:
        """Wait until a replica has replaced ``old_master_address`` for ``slot``.

        Returns the new master's address once every running node routes ``slot`` to the same
        new master, that master considers itself a master, and every running node reports
        ``cluster_state:ok``. With the default 1 s node timeout this takes about 2-4 s.
        Paused nodes (:meth:`RedisServerProcess.pause`) are not asked: they answer nothing.
        """

        def promoted() -> str:
            owners: set[str] = set()
            for node in self.running_nodes():
                if node.paused:
                    continue
                client = node.admin_client()
                state = cluster_info_of(client).get("cluster_state")
                if state != "ok":
                    raise NotReady(f"{node.address} reports cluster_state:{state}")
                owner = _find_slot(_cluster_slots(client), slot)
                if owner is None:
                    raise NotReady(f"{node.address} has no owner for slot {slot}")
                owners.add(owner.master)
            if not owners:
                raise NotReady("no node is running")
            if len(owners) > 1:
                raise NotReady(f"nodes disagree on the owner of slot {slot}: {sorted(owners)}")
            (new_master,) = owners
            if new_master == old_master_address:
                raise NotReady(f"slot {slot} is still owned by {old_master_address}")
            me = _myself(self.cluster_nodes(via=new_master))
            if not me.is_master:
                raise NotReady(f"{new_master} does not consider itself a master yet")
            return new_master

        return wait_until(
            promoted,
            timeout=timeout,
            interval=0.05,
            description=f"a new master for slot {slot} (was {old_master_address})",
        )
