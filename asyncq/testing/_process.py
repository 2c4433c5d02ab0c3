"""One throw-away ``redis-server`` process (``RedisServerProcess``)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from asyncq.testing._support import (
    BIND_ATTEMPTS,
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    LOOPBACK_HOST,
    HarnessError,
    HarnessTimeoutError,
    NotReady,
    admin_client,
    find_redis_server,
    free_port,
    wait_until,
)

__all__ = ["RedisServerProcess", "stop_many"]

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


def stop_many(servers: Iterable[RedisServerProcess], timeout: float) -> None:
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
    stop_many(servers, timeout=5.0)
    for server in servers:
        server.close()


atexit.register(_close_all_at_exit)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def _stop_servers_on_termination() -> None:
    """Make SIGTERM and SIGHUP (a CI job cancelled, a terminal closed) stop this process as
    Ctrl-C does, so the servers it started are stopped at exit instead of left running
    (they run in sessions of their own, so the signal does not reach them). Only where
    nobody handles those signals already, and only from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _interrupt)


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
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
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
        self.paused = False  # stopped with SIGSTOP by pause(): alive, answering nothing
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
        _stop_servers_on_termination()

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Block until *this* process answers; on failure kill it and raise with its log tail.

        "Answers" means INFO reports our PID: a plain PING could be answered by whatever else
        listens on the port (say a leftover server from an earlier run) while ours failed to
        bind.
        """
        limit = self._startup_timeout if timeout is None else timeout
        # A short per-attempt timeout: a healthy local redis replies in microseconds, while a
        # foreign listener that accepts but never replies would otherwise stall each attempt.
        probe = admin_client(self._host, self._port, timeout=0.25)

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
                raise NotReady(f"{self.address} is answered by PID {pid}, not ours ({proc.pid})")
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
        attempts = BIND_ATTEMPTS if self._auto_port else 1
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

    def pause(self) -> None:
        """Stop the process (SIGSTOP): it keeps its connections and accepts new ones, but
        answers nothing, as a stalled or frozen machine does, until :meth:`resume`."""
        if self.is_running() and not self.paused:
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        if self._proc is not None and self.paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGCONT)
        self.paused = False

    @contextlib.contextmanager
    def pausing(self) -> Iterator[None]:
        """The server paused (see :meth:`pause`) for the duration of the block."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def kill(self) -> None:
        """SIGKILL the server (simulating a crash) and wait for it to be gone."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # The whole process group, so a replication fork child dies with its parent. The
            # leader is not reaped yet (poll() said so), so its PID/PGID cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.paused = False
        self._drop_admin_client()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Shut the server down gracefully, SIGKILLing it after ``timeout``; idempotent.

        The directory is kept, so :meth:`restart` can bring the same server back.
        """
        stop_many([self], timeout)
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
            self._admin = admin_client(self._host, self._port)
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
        self.resume()  # a stopped process would not act on SIGTERM
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
