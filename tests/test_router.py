"""QueueRouter orders a server's queues for each dequeue, as asynq's processor does."""

from __future__ import annotations

import random
from collections import Counter

import pytest

import asyncq
from asyncq._cluster.router import QueueRouter

ORDERS = 20_000
TOLERANCE = 0.02


def first_shares(router: QueueRouter, rounds: int = ORDERS) -> dict[str, float]:
    """How often each queue comes first over ``rounds`` orders."""
    firsts = Counter(router.order()[0] for _ in range(rounds))
    return {queue: firsts[queue] / rounds for queue in router.priorities}


# -- priorities ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "served"),
    [
        ({"a": 6, "b": 3}, {"a": 2, "b": 1}),
        ({"a": 4, "b": 8, "c": 12}, {"a": 1, "b": 2, "c": 3}),
        ({"a": 5, "b": 5}, {"a": 1, "b": 1}),
        ({"only": 7}, {"only": 1}),
        ({"a": 3, "b": 2}, {"a": 3, "b": 2}),
    ],
)
def test_priorities_are_divided_by_their_gcd(given: dict[str, int], served: dict[str, int]) -> None:
    router = QueueRouter(given)
    assert router.priorities == served
    assert router.configured == given  # what the server's record lists


def test_the_given_mapping_is_not_changed() -> None:
    given = {"a": 6, "b": 3}
    QueueRouter(given)
    assert given == {"a": 6, "b": 3}


@pytest.mark.parametrize("priority", [0, -1, 1.0, 2.5, True, False, "1", None])
def test_a_bad_priority_is_refused(priority: object) -> None:
    with pytest.raises(asyncq.InvalidOptionError, match="priority of queue 'b'"):
        QueueRouter({"a": 1, "b": priority})  # type: ignore[dict-item]


@pytest.mark.parametrize("name", ["", "   ", "a{b}", "{emails}", "x}", " padded "])
def test_a_bad_queue_name_is_refused(name: str) -> None:
    with pytest.raises(asyncq.InvalidOptionError):
        QueueRouter({"default": 1, name: 1})


def test_a_bad_queue_name_raises_the_queue_name_error() -> None:
    with pytest.raises(asyncq.InvalidQueueNameError, match="contains"):
        QueueRouter({"a{b}": 1})


def test_an_empty_mapping_is_refused() -> None:
    with pytest.raises(asyncq.InvalidOptionError, match="at least one queue"):
        QueueRouter({})


# -- strict mode ---------------------------------------------------------------------------------


def test_strict_mode_orders_by_priority_descending_ties_by_name() -> None:
    router = QueueRouter({"low": 1, "zeta": 3, "alpha": 3, "mid": 2}, strict=True)
    assert router.order() == ["alpha", "zeta", "mid", "low"]


def test_strict_mode_gives_the_same_order_every_call() -> None:
    router = QueueRouter({"c": 2, "b": 2, "a": 1, "d": 5}, strict=True, rng=random.Random(1))
    first = list(router.order())
    assert first == ["d", "b", "c", "a"]
    assert all(router.order() == first for _ in range(1_000))


def test_strict_order_does_not_depend_on_mapping_order() -> None:
    one = QueueRouter({"b": 1, "a": 1, "c": 9}, strict=True)
    two = QueueRouter({"c": 9, "a": 1, "b": 1}, strict=True)
    assert one.order() == two.order() == ["c", "a", "b"]


def test_queues_lists_every_queue_highest_priority_first() -> None:
    router = QueueRouter({"low": 1, "high": 6, "mid": 3})
    assert router.queues == ["high", "mid", "low"]
    assert router.strict is False


@pytest.mark.parametrize("strict", [False, True])
def test_a_single_queue_always_gives_just_that_queue(strict: bool) -> None:
    router = QueueRouter({"solo": 5}, strict=strict, rng=random.Random(3))
    assert all(router.order() == ["solo"] for _ in range(1_000))


# -- weighted mode -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queues", "seed"),
    [
        ({"a": 3, "b": 1}, 7),
        ({"a": 1, "b": 1}, 11),
        ({"critical": 6, "default": 3, "low": 1}, 2024),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, 5),
        ({"heavy": 9, "light": 1}, 42),
    ],
)
def test_weighted_first_choice_is_proportional_to_priority(
    queues: dict[str, int], seed: int
) -> None:
    router = QueueRouter(queues, rng=random.Random(seed))
    total = sum(queues.values())
    shares = first_shares(router)
    for queue, priority in queues.items():
        expected = priority / total
        assert abs(shares[queue] - expected) <= TOLERANCE, (queue, shares[queue], expected)


def test_weighted_three_to_one_puts_the_heavy_queue_first_about_three_quarters() -> None:
    shares = first_shares(QueueRouter({"a": 3, "b": 1}, rng=random.Random(1234)))
    assert shares["a"] == pytest.approx(0.75, abs=TOLERANCE)
    assert shares["b"] == pytest.approx(0.25, abs=TOLERANCE)


def test_weighted_mode_uses_the_divided_priorities_the_same_way() -> None:
    scaled = first_shares(QueueRouter({"a": 30, "b": 10}, rng=random.Random(99)))
    assert scaled["a"] == pytest.approx(0.75, abs=TOLERANCE)


def test_weighted_second_place_follows_the_remaining_weights() -> None:
    # asynq's "repeat, shuffle, dedupe": once the first queue is chosen, the next is
    # chosen among the rest in proportion to their priorities.
    router = QueueRouter({"a": 3, "b": 2, "c": 1}, rng=random.Random(8))
    after_a = Counter(
        order[1] for order in (router.order() for _ in range(ORDERS)) if order[0] == "a"
    )
    total = sum(after_a.values())
    assert after_a["b"] / total == pytest.approx(2 / 3, abs=0.03)
    assert after_a["c"] / total == pytest.approx(1 / 3, abs=0.03)


@pytest.mark.parametrize("strict", [False, True])
def test_every_order_contains_every_queue_exactly_once(strict: bool) -> None:
    queues = {"a": 5, "b": 3, "c": 1, "d": 1, "e": 2}
    router = QueueRouter(queues, strict=strict, rng=random.Random(17))
    for _ in range(5_000):
        order = router.order()
        assert len(order) == len(queues)
        assert sorted(order) == sorted(queues)


def test_weighted_orders_vary_between_calls() -> None:
    router = QueueRouter({"a": 1, "b": 1, "c": 1}, rng=random.Random(21))
    seen = {tuple(router.order()) for _ in range(500)}
    assert len(seen) == 6  # every permutation of equal weights shows up


def test_the_same_seed_gives_the_same_sequence_of_orders() -> None:
    queues = {"a": 4, "b": 2, "c": 1}
    one = QueueRouter(queues, rng=random.Random(314))
    two = QueueRouter(queues, rng=random.Random(314))
    assert [one.order() for _ in range(200)] == [two.order() for _ in range(200)]


def test_without_an_rng_the_router_still_orders_every_queue() -> None:
    router = QueueRouter({"a": 2, "b": 1})
    assert sorted(router.order()) == ["a", "b"]


# -- watch shares --------------------------------------------------------------------------------


@pytest.mark.parametrize("slots", [1, 2, 3, 7])
def test_strict_watch_shares_give_every_slot_to_the_highest_queue(slots: int) -> None:
    router = QueueRouter({"low": 1, "high": 3, "mid": 2}, strict=True)
    assert router.watch_shares(slots) == [("high", slots), ("mid", 0), ("low", 0)]


@pytest.mark.parametrize("slots", [1, 2, 3, 7, 32])
def test_weighted_watch_shares_split_every_slot_evenly(slots: int) -> None:
    router = QueueRouter({"a": 3, "b": 2, "c": 1}, rng=random.Random(5))
    for _ in range(100):
        shares = router.watch_shares(slots)
        counts = [count for _, count in shares]
        assert sorted(queue for queue, _ in shares) == ["a", "b", "c"]
        assert sum(counts) == slots and max(counts) - min(counts) <= 1
        assert counts == sorted(counts, reverse=True), "the remainder to the first queues"


@pytest.mark.parametrize("strict", [True, False])
def test_watch_shares_leave_out_the_queues_skipped_and_give_their_slots_to_the_others(
    strict: bool,
) -> None:
    """A queue whose node does not answer is skipped: the slots all go to the others (in
    strict mode to the highest left), and with every queue skipped there is no watch."""
    router = QueueRouter({"low": 1, "high": 3, "mid": 2}, strict=strict, rng=random.Random(2))
    for _ in range(50):
        shares = dict(router.watch_shares(4, skipping=["high"]))
        assert sorted(shares) == ["low", "mid"] and sum(shares.values()) == 4
        if strict:
            assert shares == {"mid": 4, "low": 0}
    assert router.watch_shares(4, skipping=["low", "mid", "high"]) == []


def test_a_single_weighted_slot_goes_to_each_queue_by_its_priority() -> None:
    router = QueueRouter({"a": 3, "b": 2, "c": 1}, rng=random.Random(11))
    given = Counter(
        next(queue for queue, count in router.watch_shares(1) if count) for _ in range(ORDERS)
    )
    assert abs(given["a"] / ORDERS - 3 / 6) < TOLERANCE
    assert abs(given["c"] / ORDERS - 1 / 6) < TOLERANCE
