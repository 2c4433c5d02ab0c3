"""Start child processes (workers, drivers) and follow their events, always with a deadline.

Each child runs in its own session, so a stuck library is killed with its whole process
group and the run goes on. Its stdout is read by a thread (events only); its stderr goes
to a log file whose tail explains a failure.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.protocol import parse
from benchmarks.spec import ChildSpec
from benchmarks.venvs import ROOT


class ChildError(Exception):
    """A child failed, timed out or stalled; the message says which and why."""


class Child:
    """One running child process and the events it has sent."""

    def __init__(self, python: Path, module: str, spec: ChildSpec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.queue}-{module.rsplit('.', 1)[-1]}.log"
        self.handled = 0
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with self.log_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                [str(python), "-m", module, spec.to_json()],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = parse(line.rstrip("\n"))
            if event is not None:
                self._events.put(event)
        self._events.put(None)  # end of output

    def wait_for(
        self, wanted: str, timeout: float, *, stall_s: float | None = None
    ) -> dict[str, Any]:
        """Return the first ``wanted`` event; raise ``ChildError`` on error, exit or timeout.

        With ``stall_s``, also give up when the ``progress`` count has not moved for that
        long (a library that stopped taking tasks).
        """
        deadline = time.monotonic() + timeout
        moved_at = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                self.kill()
                raise ChildError(f"timed out after {timeout:.0f} s{self._progress_note()}")
            if stall_s is not None and now - moved_at > stall_s:
                self.kill()
                raise ChildError(
                    f"stalled: no task finished for {stall_s:.0f} s{self._progress_note()}"
                )
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event is None:
                self.proc.wait(timeout=10)
                raise ChildError(f"exited with code {self.proc.returncode}: {self.stderr_tail()}")
            kind = event.get("event")
            if kind == "progress":
                if int(event.get("handled", 0)) != self.handled:
                    moved_at = time.monotonic()
                self.handled = int(event.get("handled", 0))
            if kind == "error":
                self.kill()
                raise ChildError(str(event.get("error")))
            if kind == wanted:
                return event

    def finish(self, timeout: float = 20.0) -> None:
        """Wait for the child to exit by itself; kill it after ``timeout``."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the child's whole process group (its own session) and reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stderr_tail(self, lines: int = 6) -> str:
        """The last lines the child wrote to stderr, on one line."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def _progress_note(self) -> str:
        if self.spec.count and self.handled:
            return f" (handled {self.handled:,} of {self.spec.count:,})"
        return ""


def run_driver(python: Path, spec: ChildSpec, log_dir: Path, timeout: float) -> dict[str, Any]:
    """Run a driver child to completion and return its ``result`` event."""
    child = Child(python, "benchmarks.driver_main", spec, log_dir)
    try:
        result = child.wait_for("result", timeout)
    finally:
        child.finish()
    return result
