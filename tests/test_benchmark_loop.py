"""The benchmark's ``--loop``: every child process runs on the event loop the run names."""

from __future__ import annotations

import asyncio
import types

import pytest

from benchmarks.protocol import run_on
from benchmarks.report import loop_words
from benchmarks.spec import ChildSpec


def _loop_module_when_run_on(loop: str) -> str:
    seen: list[str] = []

    async def note_the_loop() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_on(loop, note_the_loop())
    return seen[0]


def test_a_uvloop_run_puts_the_child_on_uvloop() -> None:
    pytest.importorskip("uvloop")
    assert _loop_module_when_run_on("uvloop").startswith("uvloop")


def test_the_default_run_keeps_the_standard_event_loop() -> None:
    assert _loop_module_when_run_on("asyncio").startswith("asyncio")


def test_an_unknown_loop_is_refused_without_leaving_the_coroutine_unawaited() -> None:
    async def never() -> None:
        raise AssertionError("must not run")

    coroutine = never()
    assert isinstance(coroutine, types.CoroutineType)  # for cr_frame
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        run_on("trio", coroutine)
    assert coroutine.cr_frame is None  # closed, so no "never awaited" warning


def test_the_loop_travels_to_the_child_in_its_spec() -> None:
    spec = ChildSpec(lib="asyncq", topology="standalone", queue="q", loop="uvloop")
    assert ChildSpec.from_json(spec.to_json()).loop == "uvloop"
    assert ChildSpec(lib="asyncq", topology="standalone", queue="q").loop == "asyncio"


def test_the_report_says_which_loop_the_numbers_come_from() -> None:
    assert loop_words({"loop": "uvloop"}) == "every process on uvloop"
    # Result files written before --loop existed ran on asyncio.
    assert loop_words({}) == "plain asyncio event loops (no uvloop)"
