"""The ``asyncq`` command line."""

from __future__ import annotations

from asyncq.cli.main import main

__all__ = ["main"]
