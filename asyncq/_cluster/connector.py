"""Connectors: the objects that own a redis-py client and its lifecycle.

``RedisClusterConnector`` talks to a Redis Cluster and ``RedisConnector`` to one
Redis server. Both offer the same small interface to the rest of asyncq, so every
feature works on both: ``call`` (one operation with retry), ``run_script`` (EVALSHA
with a NOSCRIPT fallback), ``execute`` (one command) and ``topology`` facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import hiredis
from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from asyncq._aio import mark_seen
from asyncq._broker.scripts import LuaScript, evalsha_loading
from asyncq._cluster.layout import LayoutClient
from asyncq._cluster.links import (
    ClusterDownHere,
    LinkUnusable,
    NoReply,
    ScriptLink,
    ScriptLinks,
    TryAgainLater,
)
from asyncq._cluster.replicated import ReplicatedCalls
from asyncq._cluster.retry import call_with_retry, untrusted_certificate, within
from asyncq.errors import ConnectionFailedError, InvalidOptionError, RedisRefusedError

__all__ = ["Connector", "RedisClusterConnector", "RedisConnector", "parse_address"]

T = TypeVar("T")
EncodableT = str | bytes | int | float
# How long a script call keeps trying its node while that node answers CLUSTERDOWN. A
# failover leaves the cluster down from the moment a master is marked failed until a
# replica takes over: under a second or two with Redis's election delays.
CLUSTER_DOWN_ON_LINK = 3.0

# The client is typed loosely: redis-py's command methods return unions that
# would force a cast at every call site without adding safety.
RedisClient = Any


def parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    """Split ``"host:port"`` (IPv6 as ``"[::1]:7000"``) into host and port, or check a
    ``(host, port)`` pair, with a clear error for anything else."""
    if isinstance(address, tuple):
        if len(address) == 2 and isinstance(address[0], str) and _is_port(address[1]):
            return address[0], int(address[1])
        raise InvalidOptionError(
            f"cluster node {address!r} is not a (host, port) pair such as ('127.0.0.1', 7000)"
        )
    if not isinstance(address, str):
        raise InvalidOptionError(
            f"cluster node {address!r} is not 'host:port' or (host, port), "
            f"but a {type(address).__name__}"
        )
    text = address.strip()
    if "://" in text:  # a URL, as RedisConnector takes: its host and port are the seed
        parts = urlsplit(text)
        seed = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else "host:port"
        tls = " with tls=True" if parts.scheme == "rediss" else ""
        secret = ", and its password as password=" if parts.password else ""
        shown = text.replace(f":{parts.password}@", ":***@") if parts.password else text
        raise InvalidOptionError(
            f"cluster node {shown!r} is a URL; give 'host:port' ({seed!r}){tls}{secret}"
        )
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidOptionError(
            f"cluster node {address!r} is not 'host:port' (e.g. '127.0.0.1:7000')"
        )
    return host.strip("[]"), int(port)


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


class _Untrusted(Exception):
    """A first contact met a TLS certificate it cannot trust: not to be tried again."""

    def __init__(self, verify_error: ssl.SSLCertVerificationError) -> None:
        super().__init__()
        self.verify_error = verify_error


class Connector(ABC):
    """What the rest of asyncq needs from Redis, for a cluster or a single server.

    Use it as an async context manager (``async with connector:``) or call
    ``connect()`` and ``aclose()``. Every operation is retried with backoff on
    connection errors, failover and slot migration until ``retry_deadline``
    seconds pass, then raises ``ConnectionFailedError`` naming the address.
    """

    is_cluster: bool = False

    def __init__(self, *, retry_deadline: float, max_in_flight: int) -> None:
        _positive_seconds("retry_deadline", retry_deadline)
        if not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool):
            raise InvalidOptionError(
                f"max connections must be a whole number, got {max_in_flight!r}"
            )
        if max_in_flight < 1:
            raise InvalidOptionError("max connections must be at least 1")
        self.retry_deadline = retry_deadline
        self.max_in_flight = max_in_flight
        self._client: RedisClient | None = None
        self._options: dict[str, Any] = {}  # redis-py client arguments, set by subclasses
        # redis-py's pools raise at once when exhausted instead of waiting, so
        # commands in flight are bounded here, below the pool size.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._users = 0
        self._links: ScriptLinks | None = None
        # Users that connect at the same moment (a client and a server entered together)
        # wait for one first contact, instead of each making a client of its own.
        self._connecting = asyncio.Lock()
        # Script calls that wait for replicas (``Client(wait_replicas=N)``).
        self.replicated = ReplicatedCalls(self)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    @abstractmethod
    def address(self) -> str:
        """The address(es) this connector talks to, for messages and logs."""

    @property
    @abstractmethod
    def tls(self) -> bool:
        """Whether this connector talks to Redis over TLS."""

    @abstractmethod
    def _make_client(self) -> RedisClient:
        """Build the redis-py client (not yet connected)."""

    @abstractmethod
    async def _handshake(self, client: RedisClient) -> None:
        """First contact: fails with a redis-py error when Redis cannot be reached."""

    async def connect(self) -> None:
        """Open the client and make first contact, retrying until ``retry_deadline``.

        Several users (a client and a server in one app) may share a connector:
        it connects on the first ``connect`` and closes on the last ``aclose``.
        """
        self._users += 1
        if self._client is not None:
            return
        try:
            async with self._connecting:
                if self._client is None:  # else another user connected while this one waited
                    await self._first_contact()
        except BaseException:
            self._users -= 1
            raise

    async def _first_contact(self) -> None:
        client = self._make_client()
        failures: list[Exception] = []  # each attempt's error: the last one explains a timeout

        async def attempt() -> None:
            try:
                await self._handshake(client)
            except Exception as error:
                failures.append(error)
                # A server the connector cannot trust will not become trusted by waiting.
                # (Later, a certificate failure is tried again: a rotation may be under way.)
                untrusted = untrusted_certificate(error)
                if untrusted is not None:
                    raise _Untrusted(untrusted) from error
                raise

        try:
            # Bounded as a whole: a server that accepts connections and never answers
            # would otherwise hold each attempt for the socket timeout (and redis-py's
            # own retry), well past the deadline.
            async with asyncio.timeout(self.retry_deadline):
                await call_with_retry(attempt, deadline=self.retry_deadline, address=self.address)
            self._client = client
            self._links = self._make_links()
        except TimeoutError as error:
            await self._give_up(client)
            # The bound usually cuts short an attempt after a pause: the error before it
            # (connection refused, ...) says more than the cut.
            cause = failures[-1] if failures else TimeoutError("no reply to the first command")
            hint = None
            if self.tls:  # a plain port never answers a TLS handshake: it times out
                hint = (
                    "check that the server runs, the address is right and the port is its TLS one"
                )
            raise ConnectionFailedError(
                self.address, self.retry_deadline, cause, hint=hint
            ) from error
        except _Untrusted as untrusted:
            await self._give_up(client)
            raise RedisRefusedError(self.address, untrusted.verify_error) from untrusted.__cause__
        except BaseException:
            await self._give_up(client)
            raise

    async def _give_up(self, client: RedisClient) -> None:
        """Close a client whose first contact failed; the connector stays unconnected."""
        self._client = None
        self._links = None
        await client.aclose()

    async def aclose(self) -> None:
        """Close the client once its last user is done with it."""
        self._users = max(self._users - 1, 0)
        if self._users == 0 and self._client is not None:
            client, self._client = self._client, None
            if self._links is not None:
                self._links.close()
                self._links = None
            await client.aclose()

    async def __aenter__(self) -> Connector:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def client(self) -> RedisClient:
        """The redis-py client; raises if the connector is not connected."""
        if self._client is None:
            raise RuntimeError(
                "the connector is not connected: open the Client, Server, Inspector or "
                "Scheduler that uses it ('async with Client(connector) as client:'), or the "
                "connector itself ('async with connector:' or 'await connector.connect()')"
            )
        return self._client

    @abstractmethod
    def node_of(self, key: str) -> str:
        """The ``host:port`` of the node (the master, on a cluster) that holds ``key``."""

    def node_client(self, address: str) -> RedisClient:
        """A new plain client for one node (for subscriptions); the caller closes it.

        It carries the connector's credentials, TLS and timeouts; reading waits as long
        as it must (no socket timeout), since a subscriber may hear nothing for long.
        """
        host, port = parse_address(address)
        options = {k: v for k, v in self._options.items() if v is not None}
        options.update(host=host, port=port, socket_timeout=None, retry=Retry(NoBackoff(), 0))
        options.pop("require_full_coverage", None)
        options.pop("max_connections", None)
        return Redis(**options)

    # -- operations ------------------------------------------------------------------------

    async def call(
        self,
        op: Callable[[RedisClient], Awaitable[T]],
        *,
        bounded: bool = True,
        ends: float | None = None,
    ) -> T:
        """Run ``op(client)`` with retry, backoff and a bounded number of calls in flight.

        Each attempt ends by the call's deadline (``bounded=False``: ``op`` sees to that
        itself, see ``run_script``): ``retry_deadline`` from now, or the monotonic time
        ``ends`` when given (a call that already waited its turn elsewhere).
        """
        client = self.client
        if ends is None:
            ends = time.monotonic() + self.retry_deadline
        deadline = ends

        async def attempt() -> T:
            async with self._in_flight:
                try:
                    if bounded:
                        return await within(deadline, op(client))
                    return await op(client)
                except rx.SlotNotCoveredError:  # as _mapped does, without a coroutine more
                    await self._refresh_slot_map()  # on the path of every call
                    raise

        left = deadline - time.monotonic()
        return await call_with_retry(attempt, deadline=left, address=self.address)

    async def _mapped(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run one attempt; when it finds its slot missing from the slot map, the map is
        read again before the error goes on to the retry (so the next attempt finds it)."""
        try:
            return await attempt()
        except rx.SlotNotCoveredError:
            await self._refresh_slot_map()
            raise

    async def _refresh_slot_map(self, avoiding: str | None = None) -> None:
        """Read the cluster's slot map again, asking the node at ``avoiding`` last;
        nothing to do for a single server."""
        return

    async def node_went_silent(self, address: str) -> None:
        """A call to the node at ``address`` got no reply in time (see ``links.NoReply``):
        on a cluster, read the layout again from the other nodes, so that calls go to the
        replica that has taken its place, if one has."""
        await self._refresh_slot_map(avoiding=address)

    async def execute(self, *args: EncodableT) -> Any:
        """Run one Redis command (routed by its key on a cluster) with retry."""
        return await self.call(lambda c: c.execute_command(*args))

    async def run_script(
        self,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[EncodableT],
        *,
        resend: Sequence[EncodableT] | None = None,
        ends: float | None = None,
    ) -> Any:
        """Run a Lua script by SHA, loading it where the server does not know it yet.

        A promoted replica or a restarted server has an empty script cache, so
        NOSCRIPT is expected after a failover; the script is then loaded and run again.
        The call goes over a lean pipelined link to the node (see ``links``) and falls
        back to redis-py, which follows failovers and slot moves, when the link cannot
        carry it. Every send after the first uses ``resend`` as the arguments, when
        given: the first may have run even though its reply was lost. So does every
        send through redis-py, which sends a call again by itself after a timeout.
        ``ends``: the monotonic time the call gives up by (default: ``retry_deadline``
        from now).
        """
        sends = 0
        if ends is None:
            ends = time.monotonic() + self.retry_deadline
        deadline = ends
        down_since: float | None = None  # when the link's node first said CLUSTERDOWN

        def arguments() -> Sequence[EncodableT]:
            nonlocal sends
            sends += 1
            return args if sends == 1 or resend is None else resend

        async def op(client: RedisClient) -> Any:
            links = self._links
            if links is not None:
                command = ("EVALSHA", script.sha, len(keys), *keys, *arguments())
                address = self.node_of(keys[0])
                try:
                    return await self._run_on_link(links, script, address, command)
                except TryAgainLater as error:  # a slot move splits the keys: wait it out
                    raise rx.TryAgainError(str(error)) from None
                except NoReply as error:
                    # Frozen, or failed over without telling anyone: read the layout from
                    # the other nodes, and try again wherever it now puts the keys. (redis-py
                    # would first wait out its own timeout on the same silent node.)
                    await self.node_went_silent(address)
                    raise rx.TimeoutError(f"{address}: {error}") from None
                except ClusterDownHere as error:  # a failover is on: try this node again
                    nonlocal down_since
                    now = time.monotonic()
                    down_since = now if down_since is None else down_since
                    if now - down_since < CLUSTER_DOWN_ON_LINK:
                        raise rx.ClusterDownError(str(error)) from None
                    # Still down: this node may be on the losing side of a split, which
                    # redis-py, reading the layout from the other nodes, can get past.
                except LinkUnusable:
                    pass  # redis-py takes this attempt
            # Not the first send's form: redis-py may repeat this one after a timeout.
            current = resend if resend is not None else arguments()
            return await within(deadline, evalsha_loading(client, script, keys, current))

        return await self.call(op, bounded=False, ends=deadline)

    async def _run_on_link(
        self,
        links: ScriptLinks,
        script: LuaScript,
        address: str,
        command: tuple[EncodableT, ...],
    ) -> Any:
        reply = await links.call(address, command, script=script.source)
        if isinstance(reply, hiredis.ReplyError):
            # The script ran and failed (or Redis refused it): the same error redis-py
            # would raise, so callers and the retry policy see one kind of error.
            raise rx.ResponseError(str(reply))
        return reply

    async def open_private_link(self, address: str, extra_wait: float) -> ScriptLink | None:
        """A link of its own to one node, for a command that blocks up to ``extra_wait``
        seconds (the caller closes it); None where links are not used (a kind of
        connection they do not know)."""
        if self._links is None:
            return None
        return await self._links.open_private(address, extra_wait)

    async def call_on_link(self, address: str, *args: EncodableT) -> Any:
        """One command on the shared link to a node, without retries; raises
        ``LinkUnusable`` when the link cannot carry it."""
        if self._links is None:
            raise LinkUnusable("this connector uses no links")
        return await self._links.call(address, args)

    @abstractmethod
    def _make_links(self) -> ScriptLinks | None:
        """Links for script calls, connecting as redis-py's connections do, or None where
        they could not (a kind of connection they do not know)."""


def _positive_seconds(name: str, value: object) -> float:
    """``value`` if it is a usable number of seconds (finite, above 0), else a clear error:
    a timeout that is NaN, zero or negative made every call fail, and was reported as
    Redis being unreachable."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOptionError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 < value < math.inf:
        raise InvalidOptionError(
            f"{name} must be a finite number of seconds above 0, got {value!r}"
        )
    return float(value)


def _ca_file(path: str | None, named: str = "tls_ca_certs") -> str | None:
    """A CA file's path, checked: a file that is not there, or holds no certificate, would
    otherwise show only as a connection failing until the deadline."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise InvalidOptionError(f"{named}: there is no file at {path!r}")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as error:
        raise InvalidOptionError(
            f"{named}: {path!r} holds no CA certificate that can be read "
            f"(PEM text is expected): {error}"
        ) from None
    return path


def _links_like(
    connection_class: type[Any], settings: dict[str, Any], deadline: float
) -> ScriptLinks | None:
    """Links that connect as redis-py's ``connection_class(**settings)`` does: plain TCP,
    or TLS with the very SSL context redis-py builds from the settings (certificates,
    verification, host name checks, versions). None for any other kind of connection
    (a unix socket, a class of the user's own), whose calls then all go through redis-py.
    A reply is waited for no longer than the connector's retry ``deadline`` either."""
    timeout = settings.get("socket_timeout")
    settings = {**settings, "socket_timeout": min(timeout or deadline, deadline)}
    if connection_class is Connection:
        return ScriptLinks.from_settings(settings)
    if connection_class is SSLConnection:
        tls = SSLConnection(**settings).ssl_context.get()  # not connected: just read
        return ScriptLinks.from_settings(settings, tls)
    return None


class RedisConnector(Connector):
    """A connector for one Redis server (development, tests, or a non-cluster deployment).

    Give either ``url`` (``redis://[user:pass@]host:port/db`` or ``rediss://`` for TLS)
    or ``host``/``port``/``db``. Everything else matches ``RedisClusterConnector``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        tls_ca_certs: str | None = None,
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
        retry_deadline: float = 5.0,
        max_connections: int = 256,
    ) -> None:
        super().__init__(retry_deadline=retry_deadline, max_in_flight=max_connections)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("redis", "rediss"):
                raise InvalidOptionError(f"Redis URL {url!r} must start with redis:// or rediss://")
            host = parts.hostname or host
            port = parts.port or port
            for path in parse_qs(parts.query).get("ssl_ca_certs", []):
                _ca_file(path, "ssl_ca_certs in the URL")  # checked as the argument is
        self._url = url
        self._host, self._port = host, port
        self._options = {
            "username": username,
            "password": password,
            "socket_connect_timeout": _positive_seconds("connect_timeout", connect_timeout),
            "socket_timeout": _positive_seconds("socket_timeout", socket_timeout),
            "max_connections": max_connections,
            "protocol": 2,
            "retry": Retry(NoBackoff(), 1),
        }
        ca_file = _ca_file(tls_ca_certs)
        if url is None:
            self._options.update(host=host, port=port, db=db)
            if tls or ca_file is not None:
                self._options.update(ssl=True, ssl_ca_certs=ca_file)
        elif ca_file is not None:
            if urlsplit(url).scheme != "rediss":
                raise InvalidOptionError(
                    f"tls_ca_certs is for TLS, but {url!r} is a plain redis:// URL: use rediss://"
                )
            self._options.update(ssl_ca_certs=ca_file)

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def tls(self) -> bool:
        if self._url is not None:
            return urlsplit(self._url).scheme == "rediss"
        return bool(self._options.get("ssl"))

    def _make_client(self) -> RedisClient:
        options = {k: v for k, v in self._options.items() if v is not None}
        if self._url is not None:
            return Redis.from_url(self._url, **options)
        return Redis(**options)

    async def _handshake(self, client: RedisClient) -> None:
        await client.ping()
        await self._refuse_a_cluster_node(client)

    async def _refuse_a_cluster_node(self, client: RedisClient) -> None:
        """A node of a Redis Cluster whose slots several masters share holds only some
        queues, and a cluster's replica none: the others answer MOVED, at every call for
        as long as the program runs. Refused at once with what to use instead. (The master
        of a cluster with one master holds every slot and is accepted; a server that does
        not let this connector read ``INFO`` is not checked.)"""
        try:
            if not (await client.info("cluster")).get("cluster_enabled"):
                return
            masters = int((await client.execute_command("CLUSTER INFO"))["cluster_size"])
            replica = (await client.info("replication")).get("role") == "slave"
        except (rx.ResponseError, KeyError, ValueError):
            return
        if masters > 1 or replica:
            what = f"of {masters} masters" if masters > 1 else "(a replica)"
            raise InvalidOptionError(
                f"Redis at {self.address} is a node of a Redis Cluster {what}, which holds "
                f"only some of the queues: use RedisClusterConnector([{self.address!r}]) "
                f"(on the command line, --cluster-nodes {self.address} instead of "
                "--redis-url)"
            )

    def node_of(self, key: str) -> str:
        return self.address

    def _make_links(self) -> ScriptLinks | None:
        # Read what redis-py made of the URL or the arguments: one source of truth.
        pool = self.client.connection_pool
        return _links_like(pool.connection_class, pool.connection_kwargs, self.retry_deadline)

    def node_client(self, address: str) -> RedisClient:
        if self._url is None:
            return super().node_client(address)
        options = {k: v for k, v in self._options.items() if v is not None}
        options.update(socket_timeout=None, retry=Retry(NoBackoff(), 0))
        options.pop("max_connections", None)
        return Redis.from_url(self._url, **options)


class RedisClusterConnector(Connector):
    """A connector for a Redis Cluster, given a few seed nodes as ``"host:port"`` strings
    (or ``(host, port)`` pairs).

    Every queue lives in one slot, so each queue operation goes to the master
    that owns the queue's slot; the connector follows failovers and slot moves.
    ``retry_deadline`` should exceed the cluster's ``cluster-node-timeout`` plus a
    few seconds, so a failover is one slow call rather than an error.
    """

    is_cluster = True

    def __init__(
        self,
        nodes: Sequence[str | tuple[str, int]] | str,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        tls_ca_certs: str | None = None,
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
        retry_deadline: float = 20.0,
        max_connections_per_node: int = 256,
        require_full_coverage: bool = True,
    ) -> None:
        super().__init__(retry_deadline=retry_deadline, max_in_flight=max_connections_per_node)
        self._refreshing: asyncio.Future[None] | None = None  # a slot map being read again
        if isinstance(nodes, str):
            nodes = [n for n in nodes.split(",") if n.strip()]
        if not nodes:
            raise InvalidOptionError(
                "RedisClusterConnector needs at least one seed node, e.g. ['127.0.0.1:7000']"
            )
        self._seeds = [parse_address(n) for n in nodes]
        # Named in every retried call's error message: joined once, not per call.
        self._address = ",".join(f"{h}:{p}" for h, p in self._seeds)
        self._options = {
            "username": username,
            "password": password,
            "socket_connect_timeout": _positive_seconds("connect_timeout", connect_timeout),
            "socket_timeout": _positive_seconds("socket_timeout", socket_timeout),
            "max_connections": max_connections_per_node,
            "protocol": 2,
            # The count is all the async cluster client uses; the backoff is ours.
            "retry": Retry(NoBackoff(), 2),
            # A cluster with uncovered slots is an error by default; a cluster run with
            # cluster-require-full-coverage no can keep serving the covered queues.
            "require_full_coverage": require_full_coverage,
        }
        ca_file = _ca_file(tls_ca_certs)
        if tls or ca_file is not None:
            self._options.update(ssl=True, ssl_ca_certs=ca_file)

    @property
    def address(self) -> str:
        return self._address

    @property
    def tls(self) -> bool:
        return bool(self._options.get("ssl"))

    def _make_client(self) -> RedisClient:
        options = {k: v for k, v in self._options.items() if v is not None}
        startup = [ClusterNode(host, port) for host, port in self._seeds]
        return LayoutClient(startup_nodes=startup, **options)

    async def _handshake(self, client: RedisClient) -> None:
        # Initialise eagerly: concurrent first calls on a lazy client race (redis-py #3935).
        await client.initialize()

    def _make_links(self) -> ScriptLinks | None:
        # Every node's connections share one class and one set of settings.
        node = self.client.get_default_node()
        return _links_like(node.connection_class, node.connection_kwargs, self.retry_deadline)

    def node_of(self, key: str) -> str:
        node = self.client.get_node_from_key(key)
        return f"{node.host}:{node.port}"

    async def execute(self, *args: EncodableT) -> Any:
        """Run one Redis command, routed by its key, with retry; a key already on the
        node its slot is moving to is reached by asyncq itself (see ``_execute_once``)."""
        return await self.call(lambda client: self._execute_once(client, args))

    async def _execute_once(self, client: RedisClient, args: tuple[EncodableT, ...]) -> Any:
        try:
            return await client.execute_command(*args)
        except rx.ClusterError as error:
            # redis-py follows an ASK with ASKING on one pooled connection and the command
            # on another, which the node the slot moves to then sends back (MOVED), until
            # its redirections run out. The link follows it on one connection. The key of
            # every single-key command is its first argument; for any other command the
            # link is sent to the wrong node, is redirected, and the error stands.
            key = args[1] if len(args) > 1 else None
            if str(error) != "TTL exhausted." or self._links is None or not isinstance(key, str):
                raise
            try:
                reply = await self._links.call(self.node_of(key), args)
            except LinkUnusable:
                raise error from None
        if isinstance(reply, hiredis.ReplyError):
            raise rx.ResponseError(str(reply))
        # The reply as redis-py would give it (its reply parsing is per command).
        parse = client.response_callbacks.get(str(args[0]).upper())
        return reply if parse is None else parse(reply)

    async def _refresh_slot_map(self, avoiding: str | None = None) -> None:
        # redis-py reads the map again after a lost connection or a redirection, but not
        # after finding a slot missing from it (possible with require_full_coverage=False),
        # nor after a link found a node silent: without this, a slot served again later
        # stayed unknown until a reconnect. Calls that ask at the same moment share one
        # reading. The silent node is asked last: it would hold the reading for as long
        # as the socket timeout.
        refreshing = self._refreshing
        if refreshing is None or refreshing.done():
            refreshing = self._refreshing = asyncio.ensure_future(
                self.client.nodes_manager.initialize(last_failed_node_name=avoiding)
            )
            refreshing.add_done_callback(mark_seen)
        with contextlib.suppress(Exception):  # the call's own error says more
            await asyncio.shield(refreshing)
