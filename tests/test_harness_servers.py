"""Tests for the real-Redis process harness (``asyncq.testing.servers``).

These start real ``redis-server`` processes: one standalone server, one cluster shared by
the read-only cluster tests, and a separate cluster for the failover test, which kills a node.
Waiting is always "poll a condition until a deadline", never a fixed sleep.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from asyncq.testing.servers import (
    CLUSTER_SLOTS,
    HarnessTimeoutError,
    LocalRedisCluster,
    RedisServerProcess,
    find_redis_server,
    free_ports,
    parse_port_spec,
    slot_ranges,
    wait_until,
)


def _redis_server_missing() -> str | None:
    try:
        find_redis_server()
    except RuntimeError as exc:
        return str(exc)
    return None


_MISSING = _redis_server_missing()
needs_redis_server = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def _process_group_gone(pid: int) -> bool:
    """True if neither the process nor anything in its process group still exists."""
    # The harness starts each server as a session/group leader, so checking the group also
    # catches stray fork children (e.g. a replication child) that outlived the server.
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _cluster_client(nodes: Iterable[RedisServerProcess]) -> RedisCluster:
    # ClusterNode's constructor is unannotated; going through a typed alias keeps mypy --strict
    # quiet about this test file too.
    make_node: Callable[..., ClusterNode] = ClusterNode
    return RedisCluster(
        startup_nodes=[make_node(n.host, n.port) for n in nodes], decode_responses=True
    )


def _refuses_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def test_slot_ranges_match_redis_cli_split() -> None:
    assert slot_ranges(3) == [(0, 5460), (5461, 10922), (10923, 16383)]
    assert slot_ranges(1) == [(0, 16383)]
    for masters in (2, 5, 7, 16):
        ranges = slot_ranges(masters)
        assert ranges[0][0] == 0
        assert ranges[-1][1] == CLUSTER_SLOTS - 1
        assert all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(ranges))


def test_parse_port_spec() -> None:
    assert parse_port_spec("7000-7005") == [7000, 7001, 7002, 7003, 7004, 7005]
    assert parse_port_spec("7000,7002-7003") == [7000, 7002, 7003]
    for bad in ("", "x", "7005-7000", "70000", "7000,7000"):
        with pytest.raises(ValueError, match="port"):
            parse_port_spec(bad)


def test_free_ports_are_distinct_and_fall_back_when_a_preferred_port_is_taken() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        (free,) = free_ports(1)
        assert free_ports(1, preferred=[free]) == [free]
        fallback = free_ports(2, preferred=[free, taken])
        assert taken not in fallback
        assert len(set(fallback)) == 2


# --------------------------------------------------------------------------------------------
# Standalone server
# --------------------------------------------------------------------------------------------


@needs_redis_server
def test_standalone_server_lifecycle() -> None:
    server = RedisServerProcess()
    with server:
        client = server.client(decode_responses=True)
        try:
            assert client.ping() is True
            assert server.url == f"redis://127.0.0.1:{server.port}/0"
            assert server.address == f"127.0.0.1:{server.port}"
            # No persistence: a test server must not leave dump files or AOFs behind.
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
            client.set("k", "v")
        finally:
            client.close()

        first_pid = server.pid
        server.stop()
        assert not server.is_running()
        assert _process_group_gone(first_pid)
        assert _refuses_connections(server.host, server.port)
        server.stop()  # idempotent

        server.restart()
        assert server.is_running()
        assert server.pid != first_pid
        with server.client() as again:
            assert again.ping() is True

        server.kill()
        assert _process_group_gone(server.pid)
        assert _refuses_connections(server.host, server.port)
        directory = server.directory
        assert directory.exists()

    # Leaving the block closes the server, which also removes the temp dir it created.
    assert not directory.exists()


@needs_redis_server
def test_auto_picked_port_taken_before_start_moves_elsewhere() -> None:
    server = RedisServerProcess()
    picked = server.port
    with socket.socket() as squatter:
        # Someone else grabs the port between our probe and redis-server's bind().
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", picked))
        squatter.listen()
        with server:
            assert server.port != picked
            with server.client() as client:
                assert client.ping() is True


@needs_redis_server
def test_startup_failure_reports_the_log() -> None:
    server = RedisServerProcess(extra_args=["--no-such-directive", "1"])
    with pytest.raises(RuntimeError, match="no-such-directive"):
        server.start()
    server.close()


# --------------------------------------------------------------------------------------------
# Shared cluster (read-only tests)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[LocalRedisCluster]:
    """One healthy 3+3 cluster for every test here that doesn't kill or restart nodes."""
    if _MISSING is not None:
        pytest.skip(_MISSING)
    with LocalRedisCluster() as cluster:
        yield cluster


def test_cluster_every_node_reports_ok(shared_cluster: LocalRedisCluster) -> None:
    assert len(shared_cluster.nodes) == 6
    assert len(set(shared_cluster.seeds)) == 6
    for node in shared_cluster.nodes:
        info = shared_cluster.cluster_info(via=node.address)
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_assigned"] == str(CLUSTER_SLOTS)
        assert info["cluster_known_nodes"] == "6"


def test_cluster_has_three_masters_with_one_replica_each(
    shared_cluster: LocalRedisCluster,
) -> None:
    masters = shared_cluster.masters()
    assert len(masters) == 3
    assert [m.slots for m in masters] == [((0, 5460),), ((5461, 10922),), ((10923, 16383),)]
    for master in masters:
        replicas = shared_cluster.replicas_of(master.node_id)
        assert len(replicas) == 1
        owner, routed_replicas = shared_cluster.slot_owner(master.slots[0][0])
        assert owner == master.address
        assert routed_replicas == [replicas[0].address]
        assert shared_cluster.node_for_address(replicas[0].address).is_running()


def test_cluster_slots_cover_all_16384_slots(shared_cluster: LocalRedisCluster) -> None:
    for node in shared_cluster.nodes:
        ranges = shared_cluster.cluster_slots(via=node.address)
        covered = sorted(slot for r in ranges for slot in range(r.start, r.end + 1))
        assert covered == list(range(CLUSTER_SLOTS))


def test_cluster_serves_a_cluster_client(shared_cluster: LocalRedisCluster) -> None:
    client = _cluster_client(shared_cluster.nodes)
    try:
        keys = [f"harness:{i}" for i in range(50)]
        for key in keys:
            client.set(key, key.upper())
        assert [client.get(key) for key in keys] == [key.upper() for key in keys]
        # The keys really are spread over more than one master.
        owners = {shared_cluster.slot_owner(shared_cluster.slot_for_key(k))[0] for k in keys}
        assert len(owners) == 3
        for key in keys:
            client.delete(key)
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# Failover (own cluster: it kills a master)
# --------------------------------------------------------------------------------------------


@needs_redis_server
def test_failover_promotes_the_replica_and_stop_leaves_nothing_running() -> None:
    cluster = LocalRedisCluster().start()
    try:
        key = "harness:failover"
        slot = cluster.slot_for_key(key)
        old_master, replicas = cluster.slot_owner(slot)
        assert len(replicas) == 1

        with cluster.node_for_address(old_master).client(decode_responses=True) as master:
            master.set(key, "before")
            # WAIT makes the write reach the replica before the crash, so it must survive.
            assert master.wait(1, 5000) == 1

        killed = cluster.kill_master_of_slot(slot)
        assert killed.address == old_master
        assert not killed.is_running()
        assert _process_group_gone(killed.pid)

        new_master = cluster.wait_for_failover(slot, old_master, timeout=20)
        assert new_master == replicas[0]
        assert cluster.slot_owner(slot)[0] == new_master
        assert old_master not in {m.address for m in cluster.masters()}

        with cluster.node_for_address(new_master).client(decode_responses=True) as promoted:
            assert promoted.get(key) == "before"
            promoted.set(key, "after")
            assert promoted.get(key) == "after"

        # Only live seeds: a dead seed would just make the client's first attempt slower.
        client = _cluster_client(cluster.running_nodes())
        try:
            assert client.get(key) == "after"
            client.set(key, "via-cluster-client")
            assert client.get(key) == "via-cluster-client"
        finally:
            client.close()

        # The crashed master comes back with its nodes.conf and rejoins as a replica.
        killed.restart()
        cluster.wait_until_healthy(timeout=20)
        assert cluster.slot_owner(slot) == (new_master, [old_master])
    finally:
        pids = [node.pid for node in cluster.nodes]
        directory = cluster.directory
        cluster.stop()

    assert all(_process_group_gone(pid) for pid in pids)
    assert all(_refuses_connections(n.host, n.port) for n in cluster.nodes)
    assert not directory.exists()
    cluster.stop()  # idempotent


def test_a_paused_master_is_failed_over_and_rejoins_when_resumed() -> None:
    """A stopped process answers nothing: wait_for_failover used to keep asking it, and
    never returned; stop() now also ends a server left paused."""
    cluster = LocalRedisCluster().start()
    try:
        slot = cluster.slot_for_key("harness:paused")
        old_master, replicas = cluster.slot_owner(slot)
        node = cluster.node_for_address(old_master)
        with node.pausing():
            assert node.is_running() and node.paused
            new_master = cluster.wait_for_failover(slot, old_master, timeout=20)
            assert new_master == replicas[0]
        assert not node.paused
        cluster.wait_until_healthy(timeout=20)
        assert cluster.slot_owner(slot) == (new_master, [old_master])
        cluster.node_for_address(new_master).pause()  # left paused for stop() to end
    finally:
        pids = [node.pid for node in cluster.nodes]
        cluster.stop()
    assert all(_process_group_gone(pid) for pid in pids)


def test_wait_until_times_out_with_the_last_reason() -> None:
    def never() -> bool:
        raise redis.ConnectionError("still refusing")

    with pytest.raises(HarnessTimeoutError, match="still refusing"):
        wait_until(never, timeout=0.05, description="nothing")


@needs_redis_server
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_test_process_stops_its_servers(signum: int) -> None:
    # The servers run in sessions of their own, so a CI job cancelled with SIGTERM (or a
    # closed terminal's SIGHUP) used to kill the test process and leave them running.
    program = (
        "import signal\n"
        "from asyncq.testing import RedisServerProcess\n"
        "server = RedisServerProcess().start()\n"
        "print(server.pid, server.directory, flush=True)\n"
        "signal.pause()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert child.stdout is not None
    pid, directory = child.stdout.readline().split()
    child.send_signal(signum)
    child.wait(timeout=30)
    assert _process_group_gone(int(pid)), "the server outlived the process that started it"
    assert not Path(directory).exists()
