"""Test helpers: real Redis servers on loopback, a manual clock, and a pytest plugin.

The plugin (``asyncq.testing.plugin``, registered as a pytest entry point) gives
fixtures for a standalone Redis, a 6-node cluster, connectors to both and unique
queue names; see ``docs/testing.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncq.testing.clock import ManualClock
from asyncq.testing.waiting import eventually

if TYPE_CHECKING:
    from asyncq.testing.servers import LocalRedisCluster, RedisServerProcess

__all__ = ["LocalRedisCluster", "ManualClock", "RedisServerProcess", "eventually"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m asyncq.testing.servers` does not import itself twice.
    if name in ("LocalRedisCluster", "RedisServerProcess"):
        from asyncq.testing import servers

        return getattr(servers, name)
    raise AttributeError(f"module 'asyncq.testing' has no attribute {name!r}")
