"""Server records: the heartbeat a running server writes so tools can list it.

asynq's WriteServerState / ClearServerState: the global sorted sets
``asynq:servers`` and ``asynq:workers`` are touched by separate commands, then one
script writes both per-server keys, which share the server's hash tag.
"""

from __future__ import annotations

from collections.abc import Mapping

from asyncq._broker.keys import ALL_SERVERS, ALL_WORKERS, server_key, workers_key
from asyncq._broker.scripts import load_script
from asyncq._cluster.connector import Connector

__all__ = ["ServerIdentity", "clear_server_state", "write_server_state"]


class ServerIdentity:
    """Who a server is: host, pid and a random id; names its two record keys."""

    __slots__ = ("host", "pid", "server_id", "server_key", "workers_key")

    def __init__(self, host: str, pid: int, server_id: str) -> None:
        self.host, self.pid, self.server_id = host, pid, server_id
        self.server_key = server_key(host, pid, server_id)
        self.workers_key = workers_key(host, pid, server_id)


async def write_server_state(
    connector: Connector,
    ident: ServerIdentity,
    server_info: bytes,
    workers: Mapping[str, bytes],
    *,
    now: float,
    ttl: int,
) -> None:
    """Publish a server's ``ServerInfo`` and its running tasks' ``WorkerInfo`` for ``ttl`` s."""
    expiry = int(now) + ttl
    await connector.execute("ZADD", ALL_SERVERS, expiry, ident.server_key)
    await connector.execute("ZADD", ALL_WORKERS, expiry, ident.workers_key)
    args: list[str | bytes | int] = [ttl, server_info]
    for task_id, info in workers.items():
        args += [task_id, info]
    await connector.run_script(
        load_script("write_server_state"), [ident.server_key, ident.workers_key], args
    )


async def clear_server_state(connector: Connector, ident: ServerIdentity) -> None:
    """Remove a stopping server's records."""
    await connector.execute("ZREM", ALL_SERVERS, ident.server_key)
    await connector.execute("ZREM", ALL_WORKERS, ident.workers_key)
    await connector.run_script(
        load_script("clear_server_state"), [ident.server_key, ident.workers_key], []
    )
