"""``asyncq worker module:attribute``: run a server for the handlers of a ServeMux."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable

import click

from asyncq.cli.options import connection_options, make_connector
from asyncq.errors import AsyncqError
from asyncq.servemux import ServeMux
from asyncq.server import Server

__all__ = ["import_target", "load_target", "worker"]

# How long the process may take to exit after the server has shut down, before it is
# ended forcibly (a handler that ignores cancellation must not keep it alive).
EXIT_GRACE = 5.0


def load_target(target: str) -> ServeMux:
    """Import ``module:attribute`` (the current directory first on the path) as a ServeMux."""
    mux = import_target(target)
    if not isinstance(mux, ServeMux):
        raise click.ClickException(
            f"{target} is of type {type(mux).__name__}, not an asyncq.ServeMux"
        )
    return mux


def import_target(target: str) -> object:
    """Import ``module:attribute``, the current directory first on the path; one-line errors."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise click.UsageError(f"target {target!r} must look like module:attribute, e.g. app:mux")
    if module_name.startswith("."):
        raise click.UsageError(
            f"target {target!r} names a relative module; give its full dotted name "
            "(e.g. myapp.tasks:mux), run from the directory that holds it"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise click.ClickException(f"cannot import module {module_name!r}: {error}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise click.ClickException(
            f"module {module_name!r} has no attribute {attribute!r}"
        ) from None


# The Server options the worker's flags set, named as the flags in its error messages.
_FLAGS = {
    "delayed_task_check_interval": "--forward-interval",
    "task_check_interval": "--poll-interval",
    "lease_duration": "--lease-duration",
    "heartbeat_interval": "--heartbeat-interval",
    "recoverer_interval": "--recoverer-interval",
    "shutdown_timeout": "--shutdown-timeout",
}


def _in_flags(message: str) -> str:
    """A Server option error, worded with the command's flags instead of its options."""
    for option, flag in _FLAGS.items():
        message = re.sub(rf"\b{option}\b", flag, message)
    return message


def _parse_queues(values: tuple[str, ...]) -> dict[str, int]:
    queues: dict[str, int] = {}
    for value in values:
        name, sep, priority = value.rpartition("=")
        if not sep:
            name, priority = value, "1"
        if not name or not priority.isdigit() or int(priority) < 1:
            raise click.BadParameter(
                f"{value!r} is not NAME=PRIORITY with a priority >= 1", param_hint="--queue"
            )
        if name in queues:
            raise click.BadParameter(f"queue {name!r} is given twice", param_hint="--queue")
        queues[name] = int(priority)
    return queues or {"default": 1}


@click.command()
@click.argument("target")
@connection_options
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    envvar="ASYNCQ_CONCURRENCY",
    show_envvar=True,
    help="Tasks run at once [default: CPU count].",
)
@click.option(
    "-q",
    "--queue",
    "queue_specs",
    multiple=True,
    metavar="NAME=PRIORITY",
    help="A queue to serve, repeatable [default: default=1].",
)
@click.option("--strict-priority", is_flag=True, help="Always drain higher priorities first.")
@click.option(
    "--shutdown-timeout",
    type=float,
    default=8.0,
    show_default=True,
    help="Seconds running tasks get to finish on SIGTERM before they are requeued.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.option(
    "--lease-duration",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a task's lease lasts (keep >= 30 beside Go asynq servers).",
)
@click.option("--heartbeat-interval", type=float, default=5.0, show_default=True)
@click.option("--recoverer-interval", type=float, default=60.0, show_default=True)
@click.option(
    "--forward-interval",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between moves of due scheduled and retry tasks.",
)
@click.option(
    "--poll-interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds an idle worker waits before looking at empty queues again.",
)
@click.option(
    "--loop",
    "loop_name",
    type=click.Choice(["asyncio", "uvloop"]),
    default="asyncio",
    show_default=True,
    envvar="ASYNCQ_LOOP",
    show_envvar=True,
    help="The event loop to run on (uvloop must be installed).",
)
def worker(
    target: str,
    cluster_nodes: str | None,
    redis_url: str | None,
    username: str | None,
    password: str | None,
    tls: bool,
    tls_ca_certs: str | None,
    concurrency: int | None,
    queue_specs: tuple[str, ...],
    strict_priority: bool,
    shutdown_timeout: float,
    log_level: str,
    lease_duration: float,
    heartbeat_interval: float,
    recoverer_interval: float,
    forward_interval: float,
    poll_interval: float,
    loop_name: str,
) -> None:
    """Run a worker for the handlers of TARGET (module:attribute, e.g. app:mux)."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    loop_factory = _loop_factory(loop_name)
    mux = load_target(target)
    connector = make_connector(cluster_nodes, redis_url, username, password, tls, tls_ca_certs)
    try:
        server = Server(
            connector,
            concurrency=concurrency,
            queues=_parse_queues(queue_specs),
            strict_priority=strict_priority,
            shutdown_timeout=shutdown_timeout,
            lease_duration=lease_duration,
            heartbeat_interval=heartbeat_interval,
            recoverer_interval=recoverer_interval,
            delayed_task_check_interval=forward_interval,
            task_check_interval=poll_interval,
        )
    except AsyncqError as error:
        raise click.ClickException(_in_flags(str(error))) from None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(server, mux))
    except AsyncqError as error:
        raise click.ClickException(str(error)) from None


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the worker's event loop: None for asyncio's own."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as error:
        raise click.ClickException(
            f"--loop uvloop needs uvloop installed (pip install uvloop): {error}"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(server: Server, mux: ServeMux) -> None:
    logger = logging.getLogger("asyncq.worker")
    await server.connector.connect()
    try:
        for queue in server.router.queues:
            node = server.connector.node_of(f"asynq:{{{queue}}}:pending")
            logger.info("serving queue %s on %s", queue, node)
        await server.run(mux)
    finally:
        await server.connector.aclose()
    # Handlers that ignored cancellation may still be pending; asyncio.run would wait on
    # them forever while it cleans up, so the process ends itself after a grace period.
    timer = threading.Timer(EXIT_GRACE, os._exit, args=(1,))
    timer.daemon = True
    timer.start()
