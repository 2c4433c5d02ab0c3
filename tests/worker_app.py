"""The app that real `asyncq worker` processes in the tests serve (`app:mux`).

Its handlers leave marks in the directory named by ``ASYNCQ_TEST_MARKS``, so a test can
see from outside the process which tasks started and finished.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["APP", "write_app"]

APP = textwrap.dedent(
    """
    import asyncio, os, pathlib
    import asyncq

    MARKS = pathlib.Path(os.environ["ASYNCQ_TEST_MARKS"])
    mux = asyncq.ServeMux()

    @mux.handler("endless")
    async def endless(task):
        (MARKS / f"started-{task.id}").write_text(str(os.getpid()))
        await asyncio.sleep(3600)

    @mux.handler("quick")
    async def quick(task):
        (MARKS / f"started-{task.id}").write_text(str(os.getpid()))
        await asyncio.sleep(0.5)
        (MARKS / f"finished-{task.id}").write_text("done")

    @mux.handler("loop")
    async def loop(task):
        (MARKS / f"loop-{task.id}").write_text(type(asyncio.get_running_loop()).__module__)

    @mux.handler("boom")
    async def boom(task):
        (MARKS / f"started-{task.id}").write_text(str(os.getpid()))
        raise ValueError("kaboom-" + task.id)
    """
)


def write_app(directory: Path) -> Path:
    """Write ``app.py`` and an empty ``marks`` directory into ``directory``; return it."""
    (directory / "app.py").write_text(APP)
    (directory / "marks").mkdir()
    return directory
