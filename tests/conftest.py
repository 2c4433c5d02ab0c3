"""Fixtures shared by several test modules (the Redis fixtures come from asyncq.testing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncq.testing import LocalRedisCluster


@pytest.fixture
def own_cluster() -> Iterator[LocalRedisCluster]:
    """A cluster of its own for a test that kills nodes (fails over within a second)."""
    cluster = LocalRedisCluster(node_timeout_ms=1000).start()
    yield cluster
    cluster.stop()
