"""The clock seam: every component reads wall time through a ``Clock``.

Tests inject a ``asyncq.testing.ManualClock`` and move time instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """A source of wall-clock time (Unix epoch)."""

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def time_ns(self) -> int:
        """Nanoseconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def time_ns(self) -> int:
        return time.time_ns()
