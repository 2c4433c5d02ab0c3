"""The coalescer behind single enqueues: a lone call goes at once while traffic is light;
other calls form groups per turn of the loop, split in halves when big; two are in flight
at most."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from asyncq._coalesce import Coalescer


class Recorder:
    """A flush that records each group and lets the test decide when it returns."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.since: list[float] = []  # when each group's oldest call was made
        self.left: list[float] = []  # when each group left
        self.release = asyncio.Event()
        self.release.set()
        self.fail_with: Exception | None = None

    async def flush(self, items: list[int], since: float) -> list[int]:
        self.groups.append(items)
        self.since.append(since)
        self.left.append(time.monotonic())
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 10 for item in items]


async def test_a_lone_call_goes_alone_and_gets_its_result() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush)
    assert await coalescer.submit(1) == 10
    assert await coalescer.submit(2) == 20
    assert recorder.groups == [[1], [2]]


async def test_the_first_call_goes_at_once_and_the_rest_of_its_turn_share_one_group() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush)
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert sorted(recorder.groups) == [[0], [1, 2, 3, 4]]


async def test_two_groups_in_flight_and_the_rest_go_together_when_one_returns() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.flush)
    first = asyncio.ensure_future(coalescer.submit(1))
    await _until(lambda: len(recorder.groups) == 1)
    second = asyncio.ensure_future(coalescer.submit(2))
    await _until(lambda: len(recorder.groups) == 2)
    # Both groups are out: these wait (a few turns of the loop send nothing more), and
    # then travel as one group.
    later = [asyncio.ensure_future(coalescer.submit(n)) for n in (3, 4, 5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert recorder.groups == [[1], [2]]
    recorder.release.set()
    assert await asyncio.gather(first, second, *later) == [10, 20, 30, 40, 50]
    assert recorder.groups == [[1], [2], [3, 4, 5]]


async def test_a_failing_group_fails_its_own_callers_only() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush)
    recorder.fail_with = ConnectionError("node down")
    with pytest.raises(ConnectionError):
        await asyncio.gather(coalescer.submit(1), coalescer.submit(2))
    recorder.fail_with = None
    assert await coalescer.submit(3) == 30


async def test_a_cancelled_caller_does_not_take_the_others_down() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.flush)
    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in (1, 2, 3)]
    await _until(lambda: len(recorder.groups) == 2)  # 1 alone, then 2 and 3 together
    calls[1].cancel()
    recorder.release.set()
    assert list(await asyncio.gather(calls[0], calls[2])) == [10, 30]
    assert calls[1].cancelled()
    assert recorder.groups == [[1], [2, 3]]  # its item still went: it may have been written


async def _after_a_burst(recorder: Recorder, **settings: int) -> Coalescer[int, int]:
    """A coalescer whose last send carried several calls (traffic is not light): it has
    sent [0] alone and then [1, 2, 3] together."""
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush, **settings)
    await asyncio.gather(*(coalescer.submit(n) for n in range(4)))
    return coalescer


async def test_a_group_is_told_when_its_oldest_call_was_made_not_when_it_left() -> None:
    # A call that waited while two groups were stuck must not get a whole time limit
    # more once its own group leaves: the limit counts from the call.
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.flush)
    out = [asyncio.ensure_future(coalescer.submit(n)) for n in (1, 2)]
    await _until(lambda: len(recorder.groups) == 2)
    made = time.monotonic()
    waiting = [asyncio.ensure_future(coalescer.submit(n)) for n in (3, 4)]
    await asyncio.sleep(0.05)  # they wait at least this long: what is measured here
    recorder.release.set()
    assert await asyncio.gather(*out, *waiting) == [10, 20, 30, 40]
    assert recorder.groups[2] == [3, 4]
    assert made <= recorder.since[2]
    assert recorder.left[2] - recorder.since[2] > 0.025  # told the call's time, not its own


async def _until(condition: Callable[[], bool]) -> None:
    """Let the loop turn until ``condition()`` holds (the flush runs in its own task)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_a_burst_larger_than_a_group_goes_out_in_several_groups_at_once() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.flush, max_group=3, max_in_flight=3)
    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(6)]
    await _until(lambda: len(recorder.groups) == 3)
    assert sorted(recorder.groups) == [[0], [1, 2, 3], [4, 5]]
    recorder.release.set()
    assert await asyncio.gather(*calls) == [0, 10, 20, 30, 40, 50]


async def test_after_a_group_comes_back_the_next_call_waits_for_its_turn_to_gather() -> None:
    # Under load, the first caller after a group's reply must not go alone: the callers
    # that follow it in the same turn would all pile into one big group.
    recorder = Recorder()
    coalescer = await _after_a_burst(recorder)
    assert await asyncio.gather(*(coalescer.submit(n) for n in (7, 8, 9))) == [70, 80, 90]
    assert recorder.groups[-1] == [7, 8, 9]


async def test_calls_one_at_a_time_go_alone_again_once_a_single_call_went_out() -> None:
    recorder = Recorder()
    coalescer = await _after_a_burst(recorder)
    await coalescer.submit(5)  # waits for its turn once, and goes as a group of one
    await asyncio.gather(coalescer.submit(6), coalescer.submit(7))
    assert recorder.groups[-3] == [5]
    assert sorted(recorder.groups[-2:]) == [[6], [7]]  # 6 went alone, at once


@pytest.mark.parametrize("callers", [32, 20])
async def test_a_group_with_the_other_slot_free_goes_as_two_halves(callers: int) -> None:
    # Two halves keep both sides busy: Redis stores one while the caller's side handles
    # the other. One whole group would leave each side idle in turn. 20 callers make
    # halves of 10, below ``smallest_half``, as fewer callers are about.
    recorder = Recorder()
    coalescer = await _after_a_burst(recorder, smallest_half=16)
    recorder.release.clear()
    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(callers)]
    await _until(lambda: len(recorder.groups) == 4)
    half = callers // 2
    assert recorder.groups[2:] == [list(range(half)), list(range(half, callers))]  # both out
    recorder.release.set()
    assert await asyncio.gather(*calls) == [n * 10 for n in range(callers)]


async def test_with_one_group_in_flight_allowed_a_big_group_is_not_split() -> None:
    recorder = Recorder()
    coalescer = await _after_a_burst(recorder, max_in_flight=1, smallest_half=16)
    await asyncio.gather(*(coalescer.submit(n) for n in range(32)))
    assert recorder.groups[-1] == list(range(32))


@pytest.mark.parametrize("callers", [32, 20])
async def test_a_cold_start_settles_into_halves_not_1_and_the_rest(callers: int) -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.flush, smallest_half=16)
    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(callers)]
    await _until(lambda: len(recorder.groups) == 2)
    # The first went alone; beside it, half of all calls go now, the rest when it is back.
    half = callers // 2
    assert recorder.groups == [[0], list(range(1, half + 1))]
    recorder.release.set()
    assert await asyncio.gather(*calls) == [n * 10 for n in range(callers)]
    assert recorder.groups[2:] == [list(range(half + 1, callers))]


async def test_a_burst_smaller_than_the_smallest_half_goes_whole() -> None:
    # A few calls at once go together at once: none waits for a send to come back.
    recorder = Recorder()
    coalescer = await _after_a_burst(recorder, smallest_half=16)
    await asyncio.gather(*(coalescer.submit(n) for n in range(15)))
    assert recorder.groups[-1] == list(range(15))


async def test_half_a_crowd_waiting_goes_whole_while_its_other_half_is_on_the_way() -> None:
    # After 32 callers, 16 waiting with nothing out are half of them (the others are
    # handling their replies): split in two groups of 8, the crowd drifted into groups of 8.
    recorder = Recorder()
    coalescer = await _after_a_burst(recorder, smallest_half=16)
    await asyncio.gather(*(coalescer.submit(n) for n in range(32)))
    assert recorder.groups[-2:] == [list(range(16)), list(range(16, 32))]
    await asyncio.gather(*(coalescer.submit(n) for n in range(16)))
    assert recorder.groups[-1] == list(range(16))


async def test_never_more_sends_in_flight_than_allowed() -> None:
    out = most = 0

    async def flush(items: list[int], since: float) -> list[int]:
        nonlocal out, most
        out += 1
        most = max(most, out)
        for _ in range(len(items) % 3 + 1):  # replies come back in a shuffled order
            await asyncio.sleep(0)
        out -= 1
        return items

    coalescer = Coalescer(flush, max_group=5, smallest_half=4)
    limit = asyncio.Semaphore(24)

    async def caller(n: int) -> int:
        async with limit:
            return await coalescer.submit(n)

    assert await asyncio.gather(*(caller(n) for n in range(500))) == list(range(500))
    assert most == 2


async def test_a_flush_with_too_few_results_fails_its_callers_instead_of_hanging() -> None:
    async def short(items: list[int], since: float) -> list[int]:
        return items[1:]

    coalescer = Coalescer(short)
    outcomes = await asyncio.gather(
        *(coalescer.submit(n) for n in range(3)), return_exceptions=True
    )
    assert isinstance(outcomes[0], ValueError)  # the lone call: no result to unpack
    assert isinstance(outcomes[1], RuntimeError) and isinstance(outcomes[2], RuntimeError)
    assert "flush gave 1 results for 2 items" in str(outcomes[1])


def test_sizes_below_one_are_refused() -> None:
    async def flush(items: list[int], since: float) -> list[int]:
        return items

    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(flush, max_in_flight=0)


async def test_uneven_groups_even_out_to_half_of_all_calls_each() -> None:
    recorder = Recorder()
    coalescer = await _after_a_burst(recorder, smallest_half=16)
    recorder.release.clear()
    eleven = [asyncio.ensure_future(coalescer.submit(n)) for n in range(11)]
    await _until(lambda: len(recorder.groups) == 3)
    twenty_one = [asyncio.ensure_future(coalescer.submit(n)) for n in range(100, 121)]
    await _until(lambda: len(recorder.groups) == 4)
    assert [len(group) for group in recorder.groups[2:]] == [11, 16]  # 32 calls: 16 a send
    recorder.release.set()
    await asyncio.gather(*eleven, *twenty_one)
    assert recorder.groups[4:] == [list(range(116, 121))]
