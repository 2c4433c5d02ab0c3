"""What the Redis harness is built on: its errors, finding binaries, free ports, polling."""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "BIND_ATTEMPTS",
    "CLUSTER_BUS_PORT_OFFSET",
    "CLUSTER_SLOTS",
    "DEFAULT_STARTUP_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "DEMO_CLUSTER_PORTS",
    "LOOPBACK_HOST",
    "MAX_PORT",
    "REDIS_CLI_ENV",
    "REDIS_SERVER_ENV",
    "HarnessError",
    "HarnessTimeoutError",
    "NotReady",
    "admin_client",
    "cluster_info_of",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "free_ports",
    "parse_port_spec",
    "raw_command",
    "redis_server_version",
    "wait_until",
]

#: Environment variable naming the ``redis-server`` binary to use instead of the one on PATH.
REDIS_SERVER_ENV = "ASYNCQ_REDIS_SERVER"
#: Environment variable naming the ``redis-cli`` binary to use instead of the one on PATH.
REDIS_CLI_ENV = "ASYNCQ_REDIS_CLI"
#: Every server binds here only: test servers must never be reachable from the network.
LOOPBACK_HOST = "127.0.0.1"
#: Number of hash slots in a Redis Cluster.
CLUSTER_SLOTS = 16384
#: Ports the demo cluster tries first, so the demo's addresses are predictable.
DEMO_CLUSTER_PORTS: tuple[int, ...] = tuple(range(7000, 7006))

DEFAULT_STARTUP_TIMEOUT = 10.0
DEFAULT_STOP_TIMEOUT = 10.0
# Redis' default cluster bus port is the client port + 10000; we only use it as a preference.
CLUSTER_BUS_PORT_OFFSET = 10000
MAX_PORT = 65535
# How many times a server whose port was auto-picked is retried on a fresh port when another
# process grabbed the port between our probe and redis-server's bind().
BIND_ATTEMPTS = 3

T = TypeVar("T")


class HarnessError(RuntimeError):
    """A Redis server or cluster could not be started, configured or driven as expected."""


class HarnessTimeoutError(HarnessError):
    """A condition the harness was waiting for did not become true before its deadline."""


class NotReady(Exception):
    """Raised inside a polled condition to say "not yet" together with the reason why.

    :func:`wait_until` remembers the last reason so a timeout explains what was missing
    instead of merely saying that something took too long.
    """


# --------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------


def _find_binary(name: str, env_var: str, install_hint: str) -> str:
    """Resolve ``name`` via ``env_var`` if set, else via PATH; raise a helpful error if absent."""
    override = os.environ.get(env_var)
    if override:
        # An explicit override that doesn't resolve is a configuration mistake; silently
        # falling back to PATH would run a different Redis than the user asked for.
        resolved = shutil.which(override)
        if resolved is None:
            raise RuntimeError(f"{env_var}={override!r} does not name an executable {name}.")
        return resolved
    resolved = shutil.which(name)
    if resolved is None:
        raise RuntimeError(
            f"{name} was not found on PATH. The asyncq test harness runs real Redis servers: "
            f"install Redis >= 7.0 ({install_hint}), or set {env_var} to the path of the binary."
        )
    return resolved


def find_redis_server() -> str:
    """Return the path of the ``redis-server`` binary the harness should run.

    ``$ASYNCQ_REDIS_SERVER`` wins over PATH. Raises :class:`RuntimeError` explaining how to
    install Redis when no binary can be found.
    """
    return _find_binary(
        "redis-server",
        REDIS_SERVER_ENV,
        "e.g. `apt-get install redis-server` on Debian/Ubuntu, `brew install redis` on macOS",
    )


def find_redis_cli() -> str:
    """Return the path of ``redis-cli`` (``$ASYNCQ_REDIS_CLI`` wins over PATH).

    The harness itself never needs it; it is here for demos and debugging sessions.
    """
    return _find_binary(
        "redis-cli",
        REDIS_CLI_ENV,
        "e.g. `apt-get install redis-tools` on Debian/Ubuntu, `brew install redis` on macOS",
    )


@functools.cache
def _binary_version(binary: str) -> tuple[int, int, int]:
    # Cached because a test session asks once per cluster and the answer cannot change.
    proc = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", proc.stdout)
    if match is None:
        raise HarnessError(
            f"cannot parse the version of {binary} from {proc.stdout.strip()!r} "
            f"(exit code {proc.returncode})"
        )
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def redis_server_version(binary: str | None = None) -> tuple[int, int, int]:
    """Return ``(major, minor, patch)`` of ``binary`` (default: :func:`find_redis_server`)."""
    return _binary_version(binary or find_redis_server())


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


def _port_is_free(port: int, host: str) -> bool:
    """Return whether a listening socket could be bound to ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # redis-server sets SO_REUSEADDR too; without it here a port whose old connections
        # linger in TIME_WAIT (e.g. the previous demo run) would look taken when it isn't.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(
    count: int,
    *,
    preferred: Sequence[int] | None = None,
    exclude: Collection[int] = (),
    host: str = LOOPBACK_HOST,
) -> list[int]:
    """Return ``count`` distinct TCP ports on ``host`` that are free at the time of the call.

    If ``preferred`` is given (exactly ``count`` ports) and every one of them is free and not in
    ``exclude``, those are returned unchanged; otherwise all ports are picked by the kernel.
    All-or-nothing keeps e.g. a demo cluster either on its well-known 7000-7005 or entirely
    elsewhere rather than on a confusing mix.

    A port can still be taken by someone else before the caller binds it;
    :class:`RedisServerProcess` retries auto-picked ports for that reason.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    excluded = set(exclude)
    if preferred is not None:
        wanted = list(preferred)
        if len(wanted) != count:
            raise ValueError(f"expected {count} preferred ports, got {len(wanted)}")
        if (
            len(set(wanted)) == count
            and not excluded.intersection(wanted)
            and all(0 < port <= MAX_PORT and _port_is_free(port, host) for port in wanted)
        ):
            return wanted
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # Every probe socket stays bound until all ports are chosen, otherwise the kernel
            # could hand out the same port twice; excluded ports stay held for the same reason.
            sockets.append(sock)
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in excluded:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def free_port(host: str = LOOPBACK_HOST) -> int:
    """Return one TCP port on ``host`` that is free at the time of the call."""
    return free_ports(1, host=host)[0]


def parse_port_spec(spec: str) -> list[int]:
    """Parse ``"7000-7005"``, ``"7000,7001"`` or a mix like ``"7000-7002,7010"`` into ports."""
    ports: list[int] = []
    for raw_part in spec.split(","):
        part = raw_part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if sep else low
        except ValueError:
            raise ValueError(f"invalid port spec {spec!r}") from None
        if not 0 < low <= high <= MAX_PORT:
            raise ValueError(f"invalid port range {part!r} in {spec!r}")
        ports.extend(range(low, high + 1))
    if not ports:
        raise ValueError(f"empty port spec {spec!r}")
    if len(set(ports)) != len(ports):
        raise ValueError(f"port spec {spec!r} repeats a port")
    return ports


# --------------------------------------------------------------------------------------------
# Polling and raw commands
# --------------------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    description: str,
    interval: float = 0.02,
) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value.

    Redis connection errors and :class:`OSError` raised by ``condition`` count as "not yet"
    (servers refuse connections while starting or after being killed). Other exceptions
    propagate at once. Raises :class:`HarnessTimeoutError` naming ``description`` and the last
    failure reason after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_reason = ""
    while True:
        try:
            result = condition()
        except NotReady as exc:
            last_reason = str(exc)
        except (redis.RedisError, OSError) as exc:
            last_reason = f"{type(exc).__name__}: {exc}"
        else:
            if result:
                return result
            last_reason = f"condition returned {result!r}"
        if time.monotonic() >= deadline:
            raise HarnessTimeoutError(
                f"timed out after {timeout:.1f}s waiting for {description}; last: {last_reason}"
            )
        time.sleep(interval)


def admin_client(host: str, port: int, timeout: float = 2.0) -> redis.Redis:
    """Return a client for harness bookkeeping: fail fast, never retry, decode to str."""
    return redis.Redis(
        host=host,
        port=port,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # redis-py retries connection errors with backoff by default; the harness polls with
        # its own deadline, and retries inside each poll would only blur that deadline.
        retry=Retry(NoBackoff(), 0),
    )


def raw_command(client: redis.Redis, *args: str | bytes | int) -> Any:
    """Run a raw command and return the unparsed reply.

    Passing the command name and subcommand as separate arguments means redis-py applies no
    response callback (those are keyed by "CLUSTER INFO" etc.), so replies keep the server's
    own shape whatever redis-py version is installed.
    """
    # execute_command is unannotated in redis-py; binding it to a typed name keeps mypy --strict
    # quiet without a type: ignore that would turn "unused" once redis-py annotates it.
    execute: Callable[..., Any] = client.execute_command
    return execute(*args)


def cluster_info_of(client: redis.Redis) -> dict[str, str]:
    """Return CLUSTER INFO as a dict of strings."""
    text = str(raw_command(client, "CLUSTER", "INFO"))
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info
