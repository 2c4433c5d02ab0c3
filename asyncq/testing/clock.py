"""A clock that tests move by hand, so time-based behaviour needs no sleeping."""

from __future__ import annotations

import time

__all__ = ["ManualClock"]


class ManualClock:
    """A ``Clock`` that stands still until ``advance`` or ``set`` moves it."""

    def __init__(self, start: float | None = None) -> None:
        self._ns = int((time.time() if start is None else start) * 1e9)

    def time(self) -> float:
        return self._ns / 1e9

    def time_ns(self) -> int:
        return self._ns

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._ns += int(seconds * 1e9)

    def set(self, unix_seconds: float) -> None:
        """Jump to an absolute time (Unix seconds)."""
        self._ns = int(unix_seconds * 1e9)
