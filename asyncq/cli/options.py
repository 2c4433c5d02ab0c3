"""Connection options shared by every ``asyncq`` command, also read from the environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from asyncq._cluster.connector import Connector, RedisClusterConnector, RedisConnector

__all__ = ["connection_options", "make_connector"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def connection_options(fn: F) -> F:
    """Add ``--cluster-nodes``, ``--redis-url``, ``--username``, ``--password``, ``--tls``,
    ``--tls-ca-certs``."""
    options = [
        click.option(
            "--cluster-nodes",
            envvar="ASYNCQ_CLUSTER_NODES",
            help="Redis Cluster seed nodes, host:port[,host:port...] [env ASYNCQ_CLUSTER_NODES].",
        ),
        click.option(
            "--redis-url",
            envvar="ASYNCQ_REDIS_URL",
            help=f"One Redis, redis:// or rediss:// [env ASYNCQ_REDIS_URL; default {DEFAULT_URL}].",
        ),
        click.option(
            "--username", envvar="ASYNCQ_REDIS_USERNAME", show_envvar=True, help="Redis ACL user."
        ),
        click.option(
            "--password", envvar="ASYNCQ_REDIS_PASSWORD", show_envvar=True, help="Redis password."
        ),
        click.option(
            "--tls",
            is_flag=True,
            envvar="ASYNCQ_REDIS_TLS",
            show_envvar=True,
            help="Use TLS (cluster).",
        ),
        click.option(
            "--tls-ca-certs",
            type=click.Path(exists=True, dir_okay=False),
            envvar="ASYNCQ_REDIS_TLS_CA_CERTS",
            show_envvar=True,
            help="CA certificates to verify the servers' TLS certificates with, instead of "
            "the system's (implies --tls; for one Redis, give a rediss:// URL).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_connector(
    cluster_nodes: str | None,
    redis_url: str | None,
    username: str | None,
    password: str | None,
    tls: bool,
    tls_ca_certs: str | None = None,
    *,
    retry_deadline: float | None = None,
) -> Connector:
    """The connector the options describe (``--cluster-nodes`` or ``--redis-url``, not both).

    ``retry_deadline`` overrides the connector's default (5 s for one Redis, 20 s for a
    cluster); the inspection commands use a short one so that a wrong address fails fast.
    """
    if cluster_nodes and redis_url:
        cluster_nodes, redis_url = _flag_over_environment(cluster_nodes, redis_url)
    if cluster_nodes and redis_url:
        raise click.UsageError(_both_given())
    if tls and not cluster_nodes:
        raise click.UsageError("--tls is for --cluster-nodes; for one Redis use a rediss:// URL")
    if tls_ca_certs and not cluster_nodes and urlsplit(redis_url or DEFAULT_URL).scheme != "rediss":
        if not _from_environment("tls_ca_certs"):
            raise click.UsageError("--tls-ca-certs needs --cluster-nodes or a rediss:// URL")
        tls_ca_certs = None  # a CA set for other commands means nothing to a plain URL
    connector: Connector
    if cluster_nodes:
        connector = RedisClusterConnector(
            cluster_nodes,
            username=username,
            password=password,
            tls=tls,
            tls_ca_certs=tls_ca_certs,
        )
    else:
        connector = RedisConnector(
            redis_url or DEFAULT_URL,
            username=username,
            password=password,
            tls_ca_certs=tls_ca_certs,
        )
    if retry_deadline is not None:
        connector.retry_deadline = retry_deadline
    return connector


def _from_environment(parameter: str) -> bool:
    """Whether the command's ``parameter`` came from its environment variable."""
    context = click.get_current_context(silent=True)
    if context is None:
        return False
    return context.get_parameter_source(parameter) == click.core.ParameterSource.ENVIRONMENT


def _both_given() -> str:
    """Say that both topologies were given, naming where each came from."""
    context = click.get_current_context(silent=True)
    from_env = click.core.ParameterSource.ENVIRONMENT
    if context is not None and context.get_parameter_source("cluster_nodes") == from_env:
        return (
            "ASYNCQ_CLUSTER_NODES and ASYNCQ_REDIS_URL are both set in the environment: "
            "unset one, or give --cluster-nodes or --redis-url to choose"
        )
    return "give --cluster-nodes or --redis-url, not both"


def _flag_over_environment(cluster_nodes: str, redis_url: str) -> tuple[str | None, str | None]:
    """Of a cluster and a URL both given, the one given on the command line, when the
    other only came from the environment (ASYNCQ_CLUSTER_NODES / ASYNCQ_REDIS_URL)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return cluster_nodes, redis_url
    from_env = click.core.ParameterSource.ENVIRONMENT
    nodes_env = context.get_parameter_source("cluster_nodes") == from_env
    url_env = context.get_parameter_source("redis_url") == from_env
    if nodes_env and not url_env:
        return None, redis_url
    if url_env and not nodes_env:
        return cluster_nodes, None
    return cluster_nodes, redis_url
