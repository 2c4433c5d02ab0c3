"""The Redis a run measures against: started here (the test harness) or given by the user.

A ``RedisTarget`` knows its masters, so it can sum ``INFO commandstats`` over them and
flush them between libraries. Servers the benchmark started are always flushed; a Redis
the user passed in is flushed only with ``--flush``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from asyncq.testing.servers import LocalRedisCluster, RedisServerProcess
from benchmarks.spec import Topology


@dataclass(frozen=True)
class Snapshot:
    """Command counters and CPU seconds summed over every master, and which snapshot this was."""

    seq: int
    calls: dict[str, int]
    cpu_s: float


@dataclass
class RedisTarget:
    """One standalone server or one cluster, with admin clients to every master."""

    topology: Topology
    url: str = ""
    nodes: list[str] = field(default_factory=list)
    owned: bool = False
    stop: Callable[[], None] = lambda: None
    _masters: list[redis.Redis] = field(default_factory=list)
    _seq: int = 0

    @property
    def describe(self) -> str:
        """How the target is shown in progress lines."""
        where = self.url if self.topology == "standalone" else f"{len(self.nodes)} nodes"
        return f"{self.topology} ({where}, {'started here' if self.owned else 'given'})"

    def masters(self) -> list[redis.Redis]:
        """Admin clients to every master (found once, through CLUSTER NODES on a cluster)."""
        if not self._masters:
            if self.topology == "standalone":
                self._masters = [redis.Redis.from_url(self.url, decode_responses=True)]
            else:
                self._masters = [
                    _client(address) for address in _cluster_masters(_client(self.nodes[0]))
                ]
        return self._masters

    def snapshot(self) -> Snapshot:
        """Sum ``calls`` of every command, and the server CPU time, over all masters.

        Commands that Lua scripts and functions run count too (Redis counts them in
        commandstats), so this measures the work Redis does, not round trips.
        """
        totals: dict[str, int] = {}
        cpu = 0.0
        for master in self.masters():
            info = master.info("commandstats", "cpu")  # one INFO call per master
            cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
            for name, stats in info.items():
                if name.startswith("cmdstat_"):
                    command = name.removeprefix("cmdstat_")
                    totals[command] = totals.get(command, 0) + int(stats["calls"])
        self._seq += 1
        return Snapshot(self._seq, totals, cpu)

    def commands_between(self, before: Snapshot, after: Snapshot) -> dict[str, int]:
        """Commands run between two snapshots, less the INFO calls the snapshots made."""
        diff = {
            name: after.calls.get(name, 0) - before.calls.get(name, 0)
            for name in set(after.calls) | set(before.calls)
        }
        own = (after.seq - before.seq) * len(self.masters())
        diff["info"] = diff.get("info", 0) - own
        # Replicas acknowledge replication with REPLCONF ACK every second: not client work.
        diff.pop("replconf", None)
        return {name: count for name, count in diff.items() if count > 0}

    def flush(self) -> None:
        """FLUSHALL on every master (replicas follow)."""
        for master in self.masters():
            master.flushall()

    def redis_version(self) -> str:
        """The server version, as the first master reports it."""
        return str(self.masters()[0].info("server")["redis_version"])

    def close(self) -> None:
        """Drop the admin clients and stop the servers this run started."""
        for master in self._masters:
            master.close()
        self._masters = []
        self.stop()


def _client(address: str) -> redis.Redis:
    host, _, port = address.rpartition(":")
    return redis.Redis(host=host.strip("[]"), port=int(port), decode_responses=True)


def _cluster_masters(client: redis.Redis) -> list[str]:
    """``host:port`` of every healthy master, from CLUSTER NODES."""
    # Name and subcommand apart: redis-py then applies no reply parser, whatever its version.
    execute: Callable[..., Any] = client.execute_command  # untyped in redis-py
    text = str(execute("CLUSTER", "NODES"))
    masters = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        flags = set(parts[2].split(","))
        if "master" in flags and not flags & {"fail", "fail?", "noaddr"}:
            masters.append(parts[1].split("@")[0])
    client.close()
    return sorted(masters)


def start_standalone() -> RedisTarget:
    """Start a throw-away redis-server on a free loopback port."""
    server = RedisServerProcess().start()

    def stop() -> None:
        server.stop()
        server.close()

    return RedisTarget("standalone", url=server.url, owned=True, stop=stop)


def start_cluster() -> RedisTarget:
    """Start a throw-away cluster: 3 masters with one replica each."""
    cluster = LocalRedisCluster(3, 1).start()
    return RedisTarget("cluster", nodes=list(cluster.seeds), owned=True, stop=cluster.stop)


def given_standalone(url: str) -> RedisTarget:
    """Use a Redis the user runs."""
    return RedisTarget("standalone", url=url)


def given_cluster(nodes: list[str]) -> RedisTarget:
    """Use a Redis Cluster the user runs (any subset of its nodes as seeds)."""
    return RedisTarget("cluster", nodes=nodes)
