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

This module is the harness's public face and its command line; the parts live beside it:
``_support`` (errors, binaries, free ports, polling), ``_process`` (one server),
``_cluster`` (a cluster of them) and ``_tls`` (throw-away certificates).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from asyncq.testing._cluster import ClusterNodeInfo, LocalRedisCluster, SlotRange, slot_ranges
from asyncq.testing._process import RedisServerProcess
from asyncq.testing._support import (
    CLUSTER_SLOTS,
    DEMO_CLUSTER_PORTS,
    LOOPBACK_HOST,
    REDIS_CLI_ENV,
    REDIS_SERVER_ENV,
    HarnessError,
    HarnessTimeoutError,
    find_redis_cli,
    find_redis_server,
    free_port,
    free_ports,
    parse_port_spec,
    redis_server_version,
    wait_until,
)
from asyncq.testing._tls import TlsFiles, make_tls_files, tls_server_args

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
    "TlsFiles",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "free_ports",
    "main",
    "make_tls_files",
    "parse_port_spec",
    "redis_server_version",
    "slot_ranges",
    "tls_server_args",
    "wait_until",
]


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
