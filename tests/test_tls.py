"""A connector over TLS: no script links there, every call goes through redis-py.

redis-py sends a call again by itself when its reply times out. The first send may have
run all the same, so a task must still be stored once, and a caller's own task id must
not come back as taken by its own first send.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from asyncq import Client, InvalidOptionError, RedisConnector, Task
from asyncq.testing import RedisServerProcess, eventually
from asyncq.testing.servers import HarnessError, free_port

SLEEP_S = 1.5
REPLY_TIMEOUT_S = 0.3


def _make_certificates(folder: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=asyncq test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf",
            "-out", "server.crt")  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, redis.Redis]]:
    """A Redis with a TLS port (and its plain one for the test's own commands)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    _make_certificates(folder)
    server, tls_port = _start_with_tls(folder)
    try:
        yield tls_port, folder / "ca.crt", server.admin_client()
    finally:
        server.close()


def _start_with_tls(folder: Path) -> tuple[RedisServerProcess, int]:
    """A server listening on a free TLS port too. The harness moves a taken plain port;
    a taken TLS port is picked again here. A build without TLS skips the tests."""
    for _ in range(3):
        tls_port = free_port()
        server = RedisServerProcess(
            extra_args=[
                "--tls-port", str(tls_port),
                "--tls-cert-file", str(folder / "server.crt"),
                "--tls-key-file", str(folder / "server.key"),
                "--tls-ca-cert-file", str(folder / "ca.crt"),
                "--tls-auth-clients", "no",
                "--enable-debug-command", "yes",
            ]
        )  # fmt: skip
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


async def test_calls_redis_py_sends_again_after_a_timeout_store_each_task_once(
    tls_server: tuple[int, Path, redis.Redis],
) -> None:
    tls_port, ca_file, admin = tls_server
    plain_port = admin.connection_pool.connection_kwargs["port"]
    queue = "tls-resend"
    connector = RedisConnector(
        host="127.0.0.1",
        port=tls_port,
        tls=True,
        tls_ca_certs=str(ca_file),
        socket_timeout=REPLY_TIMEOUT_S,
        retry_deadline=20,
    )
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


async def test_waiting_for_replicas_over_tls_is_refused_naming_why(
    tls_server: tuple[int, Path, redis.Redis],
) -> None:
    tls_port, ca_file, _ = tls_server
    connector = RedisConnector(host="127.0.0.1", port=tls_port, tls=True, tls_ca_certs=str(ca_file))
    async with connector, Client(connector, wait_replicas=1, replica_timeout=0.2) as client:
        with pytest.raises(InvalidOptionError, match="TLS"):
            await client.enqueue(Task("t"), queue="tls-wait")
