"""Connectors over TLS: script calls, a worker's watches and waits for replicas go over
lean links that speak TLS (with redis-py's SSL context); anything unusual goes through
redis-py, as on a plain connection.

redis-py sends a call again by itself when its reply times out. The first send may have
run all the same, so a task must still be stored once, and a caller's own task id must
not come back as taken by its own first send.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from asyncq import (
    Client,
    NotReplicatedError,
    RedisClusterConnector,
    RedisConnector,
    RedisRefusedError,
    ServeMux,
    Task,
)
from asyncq._cluster.slots import queue_slot
from asyncq.testing import RedisServerProcess, eventually
from asyncq.testing.servers import (
    HarnessError,
    LocalRedisCluster,
    TlsFiles,
    free_port,
    make_tls_files,
    tls_server_args,
    wait_until,
)
from tests.worker_helpers import running_server, signalling_mux, write_like_go

SLEEP_S = 1.5
REPLY_TIMEOUT_S = 0.3
# Long enough that only a watch (not the poll) can start a task within a test.
NO_POLL = 60.0


class TlsServers(NamedTuple):
    """A master and its replica, each with a TLS port, replicating over TLS."""

    tls_port: int
    ca_file: Path
    admin: redis.Redis  # the master, through its plain port
    replica: RedisServerProcess

    def connector(self, **options: object) -> RedisConnector:
        """A connector to the master's TLS port that trusts the test CA."""
        return RedisConnector(
            host="127.0.0.1",
            port=self.tls_port,
            tls=True,
            tls_ca_certs=str(self.ca_file),
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_servers(tls_files: TlsFiles) -> Iterator[TlsServers]:
    """A Redis with a TLS port (and its plain one for the test's own commands), and a
    replica of it that replicates over TLS."""
    master, tls_port = _start_with_tls(tls_files)
    replica: RedisServerProcess | None = None
    try:
        replica, _ = _start_with_tls(
            tls_files, "--tls-replication", "yes", "--replicaof", "127.0.0.1", str(tls_port)
        )
        admin = master.admin_client()
        wait_until(lambda: _online_replicas(admin) == 1, timeout=10, description="the replica")
        yield TlsServers(tls_port, tls_files.ca_cert, admin, replica)
    finally:
        if replica is not None:
            replica.close()
        master.close()


def _online_replicas(admin: redis.Redis) -> int:
    info = admin.info("replication")
    return sum(
        1
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
    )


def _start_with_tls(files: TlsFiles, *extra: str) -> tuple[RedisServerProcess, int]:
    """A server listening on a free TLS port too. The harness moves a taken plain port;
    a taken TLS port is picked again here. A build without TLS skips the tests."""
    for _ in range(3):
        tls_port = free_port()
        server = RedisServerProcess(
            extra_args=[*tls_server_args(files, tls_port), "--enable-debug-command", "yes", *extra]
        )
        try:
            return server.start(), tls_port
        except HarnessError as error:
            server.close()
            if "Bad directive" in str(error):
                pytest.skip(f"this redis-server does not take TLS settings: {error}")
            if "(TLS)" not in str(error):
                raise
    raise HarnessError("no free TLS port after 3 tries")


def _put_redis_to_sleep(admin: redis.Redis, port: int) -> None:
    """Block the server for SLEEP_S (DEBUG SLEEP, from a thread), and return once it sleeps."""
    threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", SLEEP_S)).start()
    # No retries: redis-py would otherwise wait out the sleep on a timed-out ping.
    probe = redis.Redis(port=port, socket_timeout=0.05, retry=Retry(NoBackoff(), 0))

    def asleep() -> bool:
        try:
            probe.ping()
        except redis.TimeoutError:
            return True
        return False

    deadline = time.monotonic() + 5
    try:
        while not asleep():  # it answers pings until the sleep begins
            assert time.monotonic() < deadline, "DEBUG SLEEP did not begin"
    finally:
        probe.close()


async def test_calls_sent_again_after_a_timeout_store_each_task_once(
    tls_servers: TlsServers,
) -> None:
    admin = tls_servers.admin
    plain_port = admin.connection_pool.connection_kwargs["port"]
    queue = "tls-resend"
    connector = tls_servers.connector(socket_timeout=REPLY_TIMEOUT_S, retry_deadline=20)
    async with connector, Client(connector) as client:
        # Connected, the script loaded, the queue registered.
        stored = [(await client.enqueue(Task("warm"), queue=queue)).id]
        _put_redis_to_sleep(admin, plain_port)
        stored.append((await client.enqueue(Task("single"), queue=queue)).id)
        _put_redis_to_sleep(admin, plain_port)
        results = await client.enqueue_many([Task("many", {"n": n}) for n in range(3)], queue=queue)
        assert [r.ok for r in results] == [True, True, True]
        stored += [r.info.id for r in results if r.info is not None]
        _put_redis_to_sleep(admin, plain_port)
        # Its own first send stored it: that is no id conflict.
        stored.append((await client.enqueue(Task("own"), queue=queue, task_id="mine")).id)
    await eventually(lambda: admin.ping())
    pending = admin.lrange(f"asynq:{{{queue}}}:pending", 0, -1)  # str: admin decodes
    assert sorted(pending) == sorted(stored), "each task once"
    assert len(stored) == 6


def _watching_over_tls(admin: redis.Redis, tls_port: int) -> bool:
    """Whether a connection to the TLS port waits in BLMOVE (a worker's watch)."""
    return any(
        c.get("cmd") == "blmove" and c.get("laddr", "").endswith(f":{tls_port}")
        for c in admin.client_list()
    )


async def test_an_idle_worker_over_tls_takes_a_go_clients_task_through_its_watch(
    tls_servers: TlsServers,
) -> None:
    """Go clients publish no wake-up and the poll is a minute away: only the watch, a
    BLMOVE on a TLS link, can start the task."""
    queue = "tls-watch"
    mux, ran = signalling_mux()
    async with (
        tls_servers.connector() as connector,
        running_server(connector, mux, {queue: 1}, task_check_interval=NO_POLL),
    ):
        await eventually(
            lambda: _watching_over_tls(tls_servers.admin, tls_servers.tls_port),
            what="a watch over TLS",
        )
        await write_like_go(connector, queue, "go-1")
        await eventually(ran.is_set, within=10, what="the task to start without the poll")


async def test_waiting_for_a_replica_works_over_tls(tls_servers: TlsServers) -> None:
    queue = "tls-wait"
    async with (
        tls_servers.connector() as connector,
        Client(connector, wait_replicas=1, replica_timeout=0.3) as client,
    ):
        confirmed = await client.enqueue(Task("confirmed"), queue=queue)
        with tls_servers.replica.pausing(), pytest.raises(NotReplicatedError) as raised:
            await client.enqueue(Task("unconfirmed"), queue=queue)
        assert raised.value.replicas == 1
        pending = tls_servers.admin.lrange(f"asynq:{{{queue}}}:pending", 0, -1)
        assert sorted(pending) == sorted([confirmed.id, raised.value.info.id]), "both stored"
        replica = tls_servers.replica.admin_client()
        assert replica.hget(f"asynq:{{{queue}}}:t:{confirmed.id}", "state") == "pending"


async def test_a_ca_file_alone_means_tls(tls_servers: TlsServers) -> None:
    connector = RedisConnector(port=tls_servers.tls_port, tls_ca_certs=str(tls_servers.ca_file))
    async with connector, Client(connector) as client:
        info = await client.enqueue(Task("t"), queue="tls-ca-alone")
    assert tls_servers.admin.hget(f"asynq:{{tls-ca-alone}}:t:{info.id}", "state") == "pending"


async def test_a_certificate_that_fails_verification_is_refused_at_once_saying_why(
    tls_servers: TlsServers,
) -> None:
    """Without the test CA the server's certificate is not trusted, and trying again for
    the whole deadline cannot change that."""
    connector = RedisConnector(
        host="127.0.0.1", port=tls_servers.tls_port, tls=True, retry_deadline=30
    )
    started = time.monotonic()
    with pytest.raises(RedisRefusedError, match="certificate verify failed") as raised:
        await connector.connect()
    assert "give the connector the CA that signed it (tls_ca_certs" in str(raised.value)
    assert time.monotonic() - started < 25, "not retried until the deadline"


async def test_a_certificate_for_another_name_is_refused_at_once_saying_so(
    tls_servers: TlsServers,
) -> None:
    """The certificate names 127.0.0.1 only; the CA is the right one."""
    connector = RedisConnector(
        host="localhost",
        port=tls_servers.tls_port,
        tls=True,
        tls_ca_certs=str(tls_servers.ca_file),
        retry_deadline=30,
    )
    started = time.monotonic()
    with pytest.raises(RedisRefusedError, match="issued for other host names") as raised:
        await connector.connect()
    assert "mismatch" in str(raised.value)
    assert time.monotonic() - started < 25, "not retried until the deadline"


async def test_once_connected_a_certificate_failure_is_tried_again(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    """A certificate being swapped (or a clock a little off) must not fail calls for good:
    after the first contact, verification failures are retried like lost connections."""
    other = make_tls_files(tmp_path / "other-ca")  # a CA the connector does not trust
    # Verbose: the server logs each TLS handshake it refuses.
    server, tls_port = _start_with_tls(tls_files, "--loglevel", "verbose")
    queue = "tls-swap"
    try:
        admin = server.admin_client()
        connector = RedisConnector(
            host="127.0.0.1", port=tls_port, tls=True, tls_ca_certs=str(tls_files.ca_cert),
            retry_deadline=30,
        )  # fmt: skip
        async with connector, Client(connector) as client:
            first = await client.enqueue(Task("before"), queue=queue)
            _serve_certificate(admin, other)
            admin.client_kill_filter(_type="normal", skipme=True)  # the client's links too
            pending = asyncio.ensure_future(client.enqueue(Task("during"), queue=queue))
            await eventually(
                lambda: "Error accepting a client" in server.log_tail(200),
                what="a refused handshake",
            )
            assert not pending.done()
            _serve_certificate(admin, tls_files)
            second = await pending
        stored = admin.lrange(f"asynq:{{{queue}}}:pending", 0, -1)
        assert sorted(stored) == sorted([first.id, second.id])
    finally:
        server.close()


def _serve_certificate(admin: redis.Redis, files: TlsFiles) -> None:
    """Make the server present ``files``' certificate to new TLS connections."""
    admin.execute_command(  # both at once: each alone would not match the other
        "CONFIG", "SET", "tls-cert-file", str(files.server_cert),
        "tls-key-file", str(files.server_key),
    )  # fmt: skip


# -- a cluster over TLS (client ports, cluster bus and replication) ----------------------------


@pytest.fixture(scope="module")
def tls_cluster(tls_files: TlsFiles) -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(tls=tls_files) as cluster:
        yield cluster


def _cluster_connector(cluster: LocalRedisCluster, files: TlsFiles) -> RedisClusterConnector:
    return RedisClusterConnector(cluster.tls_seeds[:1], tls=True, tls_ca_certs=str(files.ca_cert))


async def test_the_cluster_tutorial_runs_over_tls(
    tls_cluster: LocalRedisCluster, tls_files: TlsFiles
) -> None:
    """Three queues on three masters, tasks from asyncq and from a Go client, one worker
    that waits on all three through watches (the poll is a minute away)."""
    queues = ["notifications", "webhooks", "images"]
    seen: list[tuple[str, str]] = []
    mux = ServeMux()

    @mux.handler("t")
    async def work(task: Task) -> None:
        seen.append((task.queue or "", task.id or ""))

    async with _cluster_connector(tls_cluster, tls_files) as connector:
        masters = [connector.node_of(f"asynq:{{{q}}}:pending") for q in queues]
        assert len(set(masters)) == 3 and set(masters) <= set(tls_cluster.tls_seeds)
        # Concurrency 20, as in the tutorial: a watch per queue needs a free slot each.
        async with running_server(
            connector, mux, dict.fromkeys(queues, 1), concurrency=20, task_check_interval=NO_POLL
        ):
            for master in masters:  # else the asyncq enqueues' wake-ups could do it all
                node = tls_cluster.nodes[tls_cluster.tls_seeds.index(master)]
                port = int(master.rpartition(":")[2])
                await eventually(
                    partial(_watching_over_tls, node.admin_client(), port),
                    what=f"a watch over TLS on {master}",
                )
            async with Client(connector) as client:
                for queue in queues:
                    await client.enqueue(Task("t"), queue=queue, task_id=f"py-{queue}")
                    await write_like_go(connector, queue, f"go-{queue}")
            await eventually(lambda: len(seen) == 6, within=10, what="all six tasks")
    assert sorted(seen) == sorted(
        (queue, f"{origin}-{queue}") for queue in queues for origin in ("py", "go")
    )


async def test_waiting_for_a_replica_works_on_a_cluster_over_tls(
    tls_cluster: LocalRedisCluster, tls_files: TlsFiles
) -> None:
    queue = "tls-cluster-wait"
    async with (
        _cluster_connector(tls_cluster, tls_files) as connector,
        Client(connector, wait_replicas=1, replica_timeout=0.3) as client,
    ):
        info = await client.enqueue(Task("confirmed"), queue=queue)
        _, replicas = tls_cluster.slot_owner(queue_slot(queue))
        replica = tls_cluster.node_for_address(replicas[0]).admin_client()
        replica.execute_command("READONLY")
        assert replica.hget(f"asynq:{{{queue}}}:t:{info.id}", "state") == "pending"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m asyncq ARGS`` as a process, without connection settings from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCQ_REDIS", "ASYNCQ_CL"))}
    return subprocess.run(
        [sys.executable, "-m", "asyncq", *args], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip


async def test_the_cli_lists_queues_over_tls_with_a_private_ca(
    tls_cluster: LocalRedisCluster, tls_files: TlsFiles
) -> None:
    queue = "tls-cli"
    async with (
        _cluster_connector(tls_cluster, tls_files) as connector,
        Client(connector) as client,
    ):
        await client.enqueue(Task("t"), queue=queue)
    seeds = ["--cluster-nodes", tls_cluster.tls_seeds[0]]
    listed = _cli(
        "queue", "ls", "--cluster", "--json", *seeds, "--tls-ca-certs", str(tls_files.ca_cert)
    )
    assert listed.returncode == 0, listed.stderr
    (entry,) = [e for e in json.loads(listed.stdout) if e["queue"] == queue]
    master, _ = tls_cluster.slot_owner(queue_slot(queue))
    tls_master = tls_cluster.tls_seeds[tls_cluster.seeds.index(master)]
    assert entry["nodes"][0] == {**entry["nodes"][0], "address": tls_master, "role": "master"}
    # The system's CAs do not know the test CA: refused at once, saying what to give.
    untrusted = _cli("queue", "ls", *seeds, "--tls")
    assert untrusted.returncode != 0
    assert "TLS certificate is not trusted" in untrusted.stderr
