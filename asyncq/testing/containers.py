"""Optional Docker-backed standalone Redis, for machines without a ``redis-server`` binary.

:class:`ContainerRedisServer` offers the same ``host`` / ``port`` / ``address`` / ``url`` /
``stop()`` surface as :class:`asyncq.testing.servers.RedisServerProcess`, but runs the official
``redis:7`` image through ``testcontainers`` (the ``asyncq[docker]`` extra). testcontainers
is imported only inside functions, so importing this module never fails without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import redis

from asyncq.testing.servers import HarnessError, wait_until

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

__all__ = ["DEFAULT_IMAGE", "ContainerRedisServer", "docker_available"]

#: The image :class:`ContainerRedisServer` runs unless told otherwise.
DEFAULT_IMAGE = "redis:7"
_REDIS_PORT = 6379

# Where Docker (rootful, Docker Desktop, rootless) usually puts its socket. Used only to skip
# the slower client-library probe on machines that obviously have no Docker at all.
_SOCKET_CANDIDATES = (
    Path("/var/run/docker.sock"),
    Path.home() / ".docker" / "run" / "docker.sock",
    Path.home() / ".docker" / "desktop" / "docker.sock",
    Path(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent")) / "docker.sock",
)


def docker_available() -> bool:
    """Return whether a Docker daemon answers and testcontainers is installed; never raises."""
    try:
        if not os.environ.get("DOCKER_HOST") and not any(p.exists() for p in _SOCKET_CANDIDATES):
            return False
        from testcontainers.core.docker_client import DockerClient

        client = DockerClient(timeout=3)
        try:
            return bool(client.client.ping())
        finally:
            client.client.close()
    except Exception:
        # Missing package, unreachable daemon, permission denied, odd DOCKER_HOST: all mean
        # "no Docker" to a caller deciding whether to skip.
        return False


class ContainerRedisServer:
    """A standalone Redis in a Docker container, started by :meth:`start` or ``with``.

    The container is removed by :meth:`stop` (idempotent) or on leaving the ``with`` block.
    """

    def __init__(self, image: str = DEFAULT_IMAGE, *, startup_timeout: float = 60.0) -> None:
        self.image = image
        self._startup_timeout = startup_timeout
        self._container: DockerContainer | None = None
        self._host: str | None = None
        self._port: int | None = None

    @property
    def host(self) -> str:
        """Host name or IP under which the container's port is reachable."""
        if self._host is None:
            raise HarnessError("container Redis has not been started")
        return self._host

    @property
    def port(self) -> int:
        """Host port mapped to the container's 6379."""
        if self._port is None:
            raise HarnessError("container Redis has not been started")
        return self._port

    @property
    def address(self) -> str:
        """``"host:port"``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> Self:
        """Start the container and wait until Redis answers PING; return ``self``."""
        if self._container is not None:
            raise HarnessError("container Redis is already running")
        # The generic container class has the same API in every testcontainers 4.x, unlike the
        # Redis module, which moved packages; readiness is checked with our own PING loop.
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(self.image).with_exposed_ports(_REDIS_PORT)
        self._container = container.start()
        try:
            self._host = container.get_container_host_ip()
            self._port = int(container.get_exposed_port(_REDIS_PORT))
            self._wait_for_ping()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_ping(self) -> None:
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=2)
        try:
            wait_until(
                lambda: bool(client.ping()),
                timeout=self._startup_timeout,
                interval=0.1,
                description=f"Redis in container {self.image} on {self.address}",
            )
        finally:
            client.close()

    def stop(self) -> None:
        """Remove the container; idempotent."""
        container, self._container = self._container, None
        self._host = self._port = None
        if container is not None:
            container.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
