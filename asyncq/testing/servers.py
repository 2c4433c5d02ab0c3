"""Start and stop real ``redis-server`` processes for tests and demos.

This is the process-management half of asyncq's real-Redis test harness. It knows how to
find the ``redis-server`` binary, pick free loopback ports, run one throw-away server
(:class:`RedisServerProcess`) and assemble a throw-away Redis Cluster out of several of them
(:class:`LocalRedisCluster`), including killing a master and waiting for its replica to take
over. Nothing here is asyncio-specific: the pytest plugin and the demo CLI
(``python -m asyncq.testing.servers``) both build on it.

Every server runs on 127.0.0.1 in its own temporary directory with persistence switched off,
so nothing outlives the test run; processes still alive when the interpreter exits are
stopped by an :mod:`atexit` hook.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "CLUSTER_SLOTS",
    "DEMO_CLUSTER_PORTS",
    "LOOPBACK_HOST",
    "REDIS_CLI_ENV",
    "REDIS_SERVER_ENV",
    "ClusterNodeInfo",
    "HarnessError",
    "HarnessTimeoutError",
    "LocalRedisCluster",
    "RedisServerProcess",
    "SlotRange",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "free_ports",
    "main",
    "parse_port_spec",
    "redis_server_version",
    "slot_ranges",
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

_DEFAULT_STARTUP_TIMEOUT = 10.0
_DEFAULT_STOP_TIMEOUT = 10.0
# Redis' default cluster bus port is the client port + 10000; we only use it as a preference.
_CLUSTER_BUS_PORT_OFFSET = 10000
_MAX_PORT = 65535
# How many times a server whose port was auto-picked is retried on a fresh port when another
# process grabbed the port between our probe and redis-server's bind().
_BIND_ATTEMPTS = 3

T = TypeVar("T")


class HarnessError(RuntimeError):
    """A Redis server or cluster could not be started, configured or driven as expected."""


class HarnessTimeoutError(HarnessError):
    """A condition the harness was waiting for did not become true before its deadline."""


class _NotReady(Exception):
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
            and all(0 < port <= _MAX_PORT and _port_is_free(port, host) for port in wanted)
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
        if not 0 < low <= high <= _MAX_PORT:
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
        except _NotReady as exc:
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


def _admin_client(host: str, port: int, timeout: float = 2.0) -> redis.Redis:
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


def _command(client: redis.Redis, *args: str | bytes | int) -> Any:
    """Run a raw command and return the unparsed reply.

    Passing the command name and subcommand as separate arguments means redis-py applies no
    response callback (those are keyed by "CLUSTER INFO" etc.), so replies keep the server's
    own shape whatever redis-py version is installed.
    """
    # execute_command is unannotated in redis-py; binding it to a typed name keeps mypy --strict
    # quiet without a type: ignore that would turn "unused" once redis-py annotates it.
    execute: Callable[..., Any] = client.execute_command
    return execute(*args)


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    """Return CLUSTER INFO as a dict of strings."""
    text = str(_command(client, "CLUSTER", "INFO"))
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


# --------------------------------------------------------------------------------------------
# Single server
# --------------------------------------------------------------------------------------------


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


_live_lock = threading.Lock()
# Strong references on purpose: a server whose owner dropped it without stopping it must still
# be found and stopped at interpreter exit.
_live_servers: set[RedisServerProcess] = set()


def _stop_many(servers: Iterable[RedisServerProcess], timeout: float) -> None:
    """Stop several servers in parallel: signal all of them first, then wait for each."""
    running = [server for server in servers if server.is_running()]
    for server in running:
        server._send_terminate()
    deadline = time.monotonic() + timeout
    for server in running:
        server._reap(max(0.0, deadline - time.monotonic()))


def _close_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live_servers)
    _stop_many(servers, timeout=5.0)
    for server in servers:
        server.close()


atexit.register(_close_all_at_exit)


class RedisServerProcess:
    """One throw-away ``redis-server`` process listening on ``127.0.0.1:<port>``.

    The server runs in the foreground as a child process in its own session (so a Ctrl-C aimed
    at pytest doesn't kill it before the fixtures' teardown runs), with RDB and AOF persistence
    disabled and its log in its own directory. Construct it, then :meth:`start` it or use it as
    a context manager::

        with RedisServerProcess() as server:
            redis.Redis.from_url(server.url).ping()

    ``port=None`` picks a free port (retrying elsewhere if someone grabs it first).
    ``directory=None`` creates a temporary directory that :meth:`close` deletes again.
    ``extra_args`` are appended to the command line, so they override the defaults.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = LOOPBACK_HOST,
        directory: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = _DEFAULT_STARTUP_TIMEOUT,
        redis_server: str | None = None,
    ) -> None:
        self._host = host
        self._auto_port = port is None
        self._port = free_port(host) if port is None else port
        self._directory = Path(directory) if directory is not None else None
        self._owns_directory = directory is None
        self._extra_args = list(extra_args)
        self._startup_timeout = startup_timeout
        self._binary = redis_server
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._admin: redis.Redis | None = None
        # Size of each log file when the current process was spawned, so that questions about
        # "this run" ignore what earlier runs appended to the same files.
        self._log_offsets: dict[str, int] = {}

    # -- identity ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on (always loopback unless overridden)."""
        return self._host

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._port

    @property
    def address(self) -> str:
        """``"host:port"``, the form Redis Cluster uses for node addresses."""
        return f"{self._host}:{self._port}"

    @property
    def url(self) -> str:
        """``redis://host:port/0``, for ``redis.Redis.from_url`` and asyncq connectors."""
        return f"redis://{self._host}:{self._port}/0"

    @property
    def pid(self) -> int:
        """PID of the current (or, once stopped, most recent) process."""
        if self._pid is None:
            raise HarnessError(f"redis-server for {self.address} has never been started")
        return self._pid

    @property
    def directory(self) -> Path:
        """The working directory holding the log (and ``nodes.conf`` for cluster nodes)."""
        if self._directory is None:
            raise HarnessError(f"redis-server for {self.address} has no directory yet")
        return self._directory

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.directory / "redis.log"

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServerProcess {self.address} pid={self._pid} {state}>"

    # -- lifecycle -----------------------------------------------------------------------

    def command_line(self) -> list[str]:
        """Return the full ``redis-server`` argv this object runs."""
        binary = self._binary or find_redis_server()
        return [
            binary,
            "--port",
            str(self._port),
            "--bind",
            self._host,
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log_path),
            "--daemonize",
            "no",
            # Test servers hold nothing worth keeping; skipping RDB/AOF also keeps shutdown
            # instant and leaves no state behind for the next run.
            "--save",
            "",
            "--appendonly",
            "no",
            # Replicas (cluster or not) would otherwise wait 5 s for company before the master
            # starts a diskless full sync; tests want their replicas in sync at once.
            "--repl-diskless-sync-delay",
            "0",
            *self._extra_args,
        ]

    def spawn(self) -> None:
        """Launch the process without waiting for it to answer (see :meth:`wait_until_ready`).

        Split from :meth:`start` so a cluster can launch all its nodes before waiting for any.
        """
        if self.is_running():
            raise HarnessError(f"redis-server for {self.address} is already running")
        # Resolve the binary before creating anything, so a missing Redis leaves no temp dir.
        self._binary = self._binary or find_redis_server()
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix=f"asyncq-redis-{self._port}-"))
        # makedirs also re-creates a directory that close() removed, so restart() still works.
        self._directory.mkdir(parents=True, exist_ok=True)
        argv = self.command_line()
        self._log_offsets = {
            name: _file_size(self._directory / name) for name in ("stdout.log", "redis.log")
        }
        # redis writes config errors to stderr before it opens its logfile; capture them in a
        # file rather than a pipe nobody drains.
        with (self._directory / "stdout.log").open("ab") as output:
            self._proc = subprocess.Popen(
                argv,
                cwd=self._directory,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pid = self._proc.pid
        with _live_lock:
            _live_servers.add(self)

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Block until *this* process answers; on failure kill it and raise with its log tail.

        "Answers" means INFO reports our PID: a plain PING could be answered by whatever else
        listens on the port (say a leftover server from an earlier run) while ours failed to
        bind.
        """
        limit = self._startup_timeout if timeout is None else timeout
        # A short per-attempt timeout: a healthy local redis replies in microseconds, while a
        # foreign listener that accepts but never replies would otherwise stall each attempt.
        probe = _admin_client(self._host, self._port, timeout=0.25)

        def answers() -> bool:
            proc = self._proc
            if proc is None:
                raise HarnessError(f"redis-server for {self.address} was never started")
            code = proc.poll()
            if code is not None:
                raise HarnessError(
                    f"redis-server for {self.address} exited with code {code} while starting."
                    f"\n{self.log_tail()}"
                )
            pid = probe.info("server").get("process_id")
            if pid != proc.pid:
                raise _NotReady(f"{self.address} is answered by PID {pid}, not ours ({proc.pid})")
            return True

        try:
            wait_until(answers, timeout=limit, description=f"redis-server on {self.address}")
        except HarnessTimeoutError as exc:
            # A server that never answered is of no use; don't leave it running behind us.
            self.kill()
            raise HarnessTimeoutError(f"{exc}\n{self.log_tail()}") from None
        finally:
            probe.close()

    def start(self) -> Self:
        """Launch the server and wait until it answers (see :meth:`wait_until_ready`)."""
        attempts = _BIND_ATTEMPTS if self._auto_port else 1
        for attempt in range(attempts):
            self.spawn()
            try:
                self.wait_until_ready()
            except HarnessError:
                if attempt + 1 < attempts and self.failed_to_bind():
                    self._port = free_port(self._host)
                    self._drop_admin_client()
                    continue
                raise
            break
        # Restarts must come back on the same port: clients and cluster peers know it.
        self._auto_port = False
        return self

    def failed_to_bind(self) -> bool:
        """Return whether the current/last run failed because a port was already in use."""
        if self._directory is None:
            return False
        for name, offset in self._log_offsets.items():
            try:
                with (self._directory / name).open("rb") as log:
                    log.seek(offset)
                    if b"Address already in use" in log.read():
                        return True
            except OSError:
                continue
        return False

    def is_running(self) -> bool:
        """Return whether the process exists and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (simulating a crash) and wait for it to be gone."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # The whole process group, so a replication fork child dies with its parent. The
            # leader is not reaped yet (poll() said so), so its PID/PGID cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._drop_admin_client()

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT) -> None:
        """Shut the server down gracefully, SIGKILLing it after ``timeout``; idempotent.

        The directory is kept, so :meth:`restart` can bring the same server back.
        """
        _stop_many([self], timeout)
        self._drop_admin_client()

    def restart(self) -> Self:
        """Stop the server if needed and start it again on the same port, dir and config."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its directory if this object created it; idempotent."""
        self.stop()
        if self._owns_directory and self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        with _live_lock:
            _live_servers.discard(self)

    def __enter__(self) -> Self:
        if not self.is_running():
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new synchronous client for this server; ``kwargs`` go to ``redis.Redis``."""
        return redis.Redis(host=self._host, port=self._port, **kwargs)

    def admin_client(self) -> redis.Redis:
        """Return the shared fail-fast, ``decode_responses=True`` client the harness polls with.

        Don't close it; the server object owns it.
        """
        if self._admin is None:
            self._admin = _admin_client(self._host, self._port)
        return self._admin

    def log_tail(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the server's log and captured output."""
        if self._directory is None:
            return "(no log: server never started)"
        parts: list[str] = []
        for name in ("stdout.log", "redis.log"):
            path = self._directory / name
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                tail = "\n".join(text.splitlines()[-lines:])
                parts.append(f"--- {path} (last {lines} lines) ---\n{tail}")
        return "\n".join(parts) or f"(no log output in {self._directory})"

    def _send_terminate(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # SIGTERM lets redis close its sockets and (for cluster nodes) save nodes.conf.
            proc.terminate()

    def _reap(self, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def _drop_admin_client(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


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
    text = str(_command(client, "CLUSTER", "NODES"))
    return [ClusterNodeInfo.parse_line(line) for line in text.splitlines() if line.strip()]


def _myself(entries: Iterable[ClusterNodeInfo]) -> ClusterNodeInfo:
    """Return the line of CLUSTER NODES describing the node that answered."""
    for entry in entries:
        if entry.is_myself:
            return entry
    raise _NotReady("CLUSTER NODES reply has no 'myself' line")


class SlotRange(NamedTuple):
    """One entry of CLUSTER SLOTS: who serves an inclusive range of slots."""

    start: int
    end: int
    master: str
    replicas: list[str]


def _cluster_slots(client: redis.Redis) -> list[SlotRange]:
    """Return CLUSTER SLOTS (the routing table cluster clients use), sorted by slot."""
    ranges: list[SlotRange] = []
    for entry in _command(client, "CLUSTER", "SLOTS"):
        start, end, *node_entries = entry
        # Each node entry is [ip, port, node-id, (metadata since 7.0)]; we need ip:port only.
        addresses = [f"{node[0]}:{int(node[1])}" for node in node_entries]
        ranges.append(SlotRange(int(start), int(end), addresses[0], addresses[1:]))
    return sorted(ranges)


def _find_slot(ranges: Iterable[SlotRange], slot: int) -> SlotRange | None:
    return next((r for r in ranges if r.start <= slot <= r.end), None)


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

    def _node_args(self, bus_port: int) -> list[str]:
        return [
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
    ) -> list[tuple[int, int]]:
        """Return ``count`` (client port, bus port) pairs, all distinct and currently free."""
        client_ports = free_ports(count, preferred=preferred, exclude=exclude, host=self.host)
        avoid = {*exclude, *client_ports}
        bus_preferred = [port + _CLUSTER_BUS_PORT_OFFSET for port in client_ports]
        bus_ports = free_ports(
            count,
            # Stick to Redis' usual port+10000 when possible: familiar in demos and logs.
            preferred=bus_preferred if max(bus_preferred) <= _MAX_PORT else None,
            exclude=avoid,
            host=self.host,
        )
        return list(zip(client_ports, bus_ports, strict=True))

    def _make_node(self, index: int, port: int, bus_port: int, binary: str) -> RedisServerProcess:
        directory = self.directory / f"node-{index}"
        # A failed attempt may have left a nodes.conf claiming other ports; start clean.
        shutil.rmtree(directory, ignore_errors=True)
        return RedisServerProcess(
            port,
            host=self.host,
            directory=directory,
            extra_args=self._node_args(bus_port),
            redis_server=binary,
        )

    def _launch_nodes(self, binary: str, deadline: float) -> None:
        pairs = self._pick_ports(self.size, self._preferred_ports)
        self.nodes = [
            self._make_node(index, port, bus, binary) for index, (port, bus) in enumerate(pairs)
        ]
        self._bus_ports = [bus for _, bus in pairs]
        pending = list(range(self.size))
        for attempt in range(_BIND_ATTEMPTS):
            # Launch everything before waiting for anything: startup cost is paid in parallel.
            for index in pending:
                self.nodes[index].spawn()
            failed: list[int] = []
            for index in pending:
                node = self.nodes[index]
                try:
                    node.wait_until_ready(max(0.1, deadline - time.monotonic()))
                except HarnessError:
                    if attempt + 1 < _BIND_ATTEMPTS and node.failed_to_bind():
                        failed.append(index)
                        continue
                    raise
            if not failed:
                return
            # Someone took a port between our probe and redis' bind(); move those nodes.
            in_use = {*(node.port for node in self.nodes), *self._bus_ports}
            fresh = self._pick_ports(len(failed), None, exclude=in_use)
            for index, (port, bus) in zip(failed, fresh, strict=True):
                self.nodes[index].close()
                self.nodes[index] = self._make_node(index, port, bus, binary)
                self._bus_ports[index] = bus
            pending = failed

    def _configure(self, deadline: float) -> None:
        clients = [node.admin_client() for node in self.nodes]
        ids = [str(_command(client, "CLUSTER", "MYID")) for client in clients]
        for epoch, client in enumerate(clients, start=1):
            # Distinct config epochs up front (as redis-cli does) spare the cluster the
            # epoch-collision resolution that otherwise delays convergence.
            _command(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for (low, high), client in zip(slot_ranges(self.masters_count), clients, strict=False):
            _command(client, "CLUSTER", "ADDSLOTSRANGE", low, high)
        for i, client in enumerate(clients):
            # A full mesh of MEETs: every node learns every other directly instead of waiting
            # for gossip to spread the news, which is noticeably faster for a fresh cluster.
            for j in range(i + 1, self.size):
                peer = self.nodes[j]
                _command(client, "CLUSTER", "MEET", peer.host, peer.port, self._bus_ports[j])

        def everyone_knows_everyone() -> bool:
            for node in self.nodes:
                known = {
                    entry.node_id
                    for entry in _cluster_nodes(node.admin_client())
                    if not entry.flags & {"handshake", "noaddr"}
                }
                if not known.issuperset(ids):
                    raise _NotReady(f"{node.address} knows {len(known)} of {self.size} nodes")
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
            _command(client, "CLUSTER", "REPLICATE", master_id)
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
        _stop_many(self.nodes, _DEFAULT_STOP_TIMEOUT)
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
        """Return True if the running nodes form a healthy cluster, else raise _NotReady."""
        running = self.running_nodes()
        if not running:
            raise _NotReady("no node is running")
        views: dict[str, list[ClusterNodeInfo]] = {}
        for node in running:
            client = node.admin_client()
            state = _cluster_info(client).get("cluster_state")
            if state != "ok":
                raise _NotReady(f"{node.address} reports cluster_state:{state}")
            entries = _cluster_nodes(client)
            known = [e for e in entries if not e.flags & {"handshake", "noaddr"}]
            if len(known) != self.size:
                raise _NotReady(f"{node.address} knows {len(known)} of {self.size} nodes")
            views[node.address] = entries
        # Each node's own line is the truth about its role; every other view must agree, or
        # clients would get different topologies depending on which seed they ask.
        selves = {address: _myself(entries) for address, entries in views.items()}
        for viewer, entries in views.items():
            by_id = {entry.node_id: entry for entry in entries}
            for address, me in selves.items():
                seen = by_id.get(me.node_id)
                if seen is None:
                    raise _NotReady(f"{viewer} does not know {address}")
                if seen.is_failing:
                    raise _NotReady(
                        f"{viewer} flags running node {address} as {sorted(seen.flags)}"
                    )
                if seen.is_master != me.is_master or seen.master_id != me.master_id:
                    raise _NotReady(f"{viewer} has a stale view of {address}'s role")
            for node_id, master_id in (expected_roles or {}).items():
                seen = by_id.get(node_id)
                if seen is None:
                    raise _NotReady(f"{viewer} does not know node {node_id}")
                if master_id is None and not seen.is_master:
                    raise _NotReady(f"{viewer} does not see {seen.address} as a master yet")
                if master_id is not None and seen.master_id != master_id:
                    raise _NotReady(f"{viewer} does not see {seen.address} as a replica yet")
        for node in running:
            if selves[node.address].is_replica:
                link = node.admin_client().info("replication").get("master_link_status")
                if link != "up":
                    raise _NotReady(f"replica {node.address} has master_link_status:{link}")
        # CLUSTER SLOTS omits replicas whose replication offset is still 0, so a replica can be
        # linked up yet invisible to cluster clients; wait until every view lists them all.
        replicas = {address for address, me in selves.items() if me.is_replica}
        for node in running:
            listed = {r for entry in _cluster_slots(node.admin_client()) for r in entry.replicas}
            missing = replicas - listed
            if missing:
                raise _NotReady(f"{node.address}'s CLUSTER SLOTS lacks replicas {sorted(missing)}")
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
        return _cluster_info(self._ask(via))

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
        return int(_command(self._ask(None), "CLUSTER", "KEYSLOT", key))

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
        """

        def promoted() -> str:
            owners: set[str] = set()
            for node in self.running_nodes():
                client = node.admin_client()
                state = _cluster_info(client).get("cluster_state")
                if state != "ok":
                    raise _NotReady(f"{node.address} reports cluster_state:{state}")
                owner = _find_slot(_cluster_slots(client), slot)
                if owner is None:
                    raise _NotReady(f"{node.address} has no owner for slot {slot}")
                owners.add(owner.master)
            if not owners:
                raise _NotReady("no node is running")
            if len(owners) > 1:
                raise _NotReady(f"nodes disagree on the owner of slot {slot}: {sorted(owners)}")
            (new_master,) = owners
            if new_master == old_master_address:
                raise _NotReady(f"slot {slot} is still owned by {old_master_address}")
            me = _myself(self.cluster_nodes(via=new_master))
            if not me.is_master:
                raise _NotReady(f"{new_master} does not consider itself a master yet")
            return new_master

        return wait_until(
            promoted,
            timeout=timeout,
            interval=0.05,
            description=f"a new master for slot {slot} (was {old_master_address})",
        )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asyncq.testing.servers",
        description=(
            "Run throw-away local Redis servers until SIGINT/SIGTERM. The first line on stdout "
            "says where they are; everything else goes to stderr."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cluster = commands.add_parser(
        "cluster", help="run a Redis Cluster; prints 'CLUSTER host:port,host:port,...'"
    )
    cluster.add_argument(
        "--ports",
        type=parse_port_spec,
        default=None,
        help="preferred client ports, e.g. 7000-7005 (free ports are used if any is taken)",
    )
    cluster.add_argument(
        "--node-timeout", type=int, default=1000, metavar="MS", help="cluster-node-timeout"
    )
    cluster.add_argument("--masters", type=int, default=3, help="number of masters")
    cluster.add_argument("--replicas", type=int, default=1, help="replicas per master")
    standalone = commands.add_parser(
        "standalone", help="run one Redis server; prints 'STANDALONE redis://host:port/0'"
    )
    standalone.add_argument(
        "--port", type=int, default=None, help="preferred port (a free one is used if taken)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m asyncq.testing.servers``; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "cluster":
        size = args.masters * (1 + args.replicas)
        if args.ports is not None and len(args.ports) != size:
            parser.error(f"--ports needs exactly {size} ports, got {len(args.ports)}")
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    # Handlers go in before anything starts: a SIGTERM during startup must still lead to the
    # cleanup below, since the servers run in their own sessions and would outlive us.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.command == "cluster":
            with LocalRedisCluster(
                args.masters, args.replicas, ports=args.ports, node_timeout_ms=args.node_timeout
            ) as cluster:
                if args.ports is not None and [n.port for n in cluster.nodes] != args.ports:
                    print("some --ports were taken; using free ports instead", file=sys.stderr)
                print("CLUSTER " + ",".join(cluster.seeds), flush=True)
                print(f"cluster data in {cluster.directory}; stop with Ctrl-C", file=sys.stderr)
                _wait_for(stop_requested)
        else:
            preferred = [args.port] if args.port is not None else None
            (port,) = free_ports(1, preferred=preferred)
            if args.port is not None and port != args.port:
                print(f"port {args.port} is taken; using {port} instead", file=sys.stderr)
            with RedisServerProcess(port) as server:
                print(f"STANDALONE {server.url}", flush=True)
                print(f"server data in {server.directory}; stop with Ctrl-C", file=sys.stderr)
                _wait_for(stop_requested)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _wait_for(event: threading.Event) -> None:
    # Short timeouts keep the main thread responsive to signal handlers on every platform.
    while not event.wait(0.5):
        pass


if __name__ == "__main__":
    sys.exit(main())
