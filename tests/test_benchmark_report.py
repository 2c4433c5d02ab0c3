"""The benchmark's reading aids: the one-by-one method's own limit, and the pickup floor."""

from __future__ import annotations

from typing import Any

from benchmarks.measure import enqueue_by_callers, enqueue_concurrently, one_turn
from benchmarks.report import ceiling_note, floor_note


def _run(lib: str, topology: str, single: float, callers: float = 0.0) -> dict[str, Any]:
    run = {"library": lib, "topology": topology, "enqueue_single": {"tasks_per_s": single}}
    if callers:
        run["enqueue_callers"] = {"tasks_per_s": callers}
    return run


class _Counted:
    """An enqueue stand-in that counts its calls and the most in flight at once."""

    def __init__(self) -> None:
        self.in_flight = self.most = self.calls = 0

    async def __call__(self, enqueued_at: float) -> None:
        self.in_flight, self.calls = self.in_flight + 1, self.calls + 1
        self.most = max(self.most, self.in_flight)
        await one_turn(enqueued_at)
        self.in_flight -= 1


async def test_the_method_alone_makes_every_call_with_32_in_flight_at_most() -> None:
    counted = _Counted()
    assert await enqueue_concurrently(counted, 500, 32) > 0
    assert (counted.calls, counted.most) == (500, 32)


async def test_the_callers_method_makes_every_call_with_as_many_in_flight() -> None:
    counted = _Counted()  # 500 is no multiple of 32: 20 callers make one call more
    assert await enqueue_by_callers(counted, 500, 32) > 0
    assert (counted.calls, counted.most) == (500, 32)


def test_the_note_puts_asyncq_and_five_times_the_best_peer_against_the_ceiling() -> None:
    doc = {
        "parameters": {"in_flight": 32},
        "method_ceiling": {"single_per_s": 70_000.0},
        "runs": [
            _run("asyncq", "standalone", 35_000.0),
            _run("saq", "standalone", 7_000.0),
            _run("taskiq", "standalone", 5_000.0),
            _run("asyncq", "cluster", 28_000.0),
            _run("taskiq", "cluster", 11_200.0),
            {"library": "saq", "topology": "cluster", "status": "skipped", "reason": "-"},
        ],
    }
    note = ceiling_note(doc)
    assert "runs at 70,000 calls/s" in note
    assert "Standalone: asyncq reaches 50% of it; five times the best peer would be 35,000" in note
    assert "Cluster: asyncq reaches 40% of it; five times the best peer would be 56,000" in note


def test_the_note_reads_the_callers_column_against_its_own_ceiling() -> None:
    doc = {
        "parameters": {"in_flight": 32},
        "method_ceiling": {"single_per_s": 70_000.0, "callers_per_s": 200_000.0},
        "runs": [
            _run("asyncq", "cluster", 28_000.0, callers=60_000.0),
            _run("taskiq", "cluster", 11_200.0, callers=10_000.0),
        ],
    }
    note = ceiling_note(doc)
    assert "five times the best peer would be 56,000 calls/s (80% of it)" in note
    assert "The 32 callers method alone" in note and "runs at 200,000 calls/s" in note
    assert "Cluster: asyncq reaches 30% of it; five times the best peer would be 50,000" in note


def test_no_note_for_a_result_file_without_the_ceiling() -> None:
    assert ceiling_note({"parameters": {"in_flight": 32}, "runs": []}) == ""


def test_the_floor_note_puts_asyncqs_pickup_beside_the_bare_loops() -> None:
    doc = {
        "parameters": {"latency_rate": 50.0},
        "pickup_floor": {
            "standalone": {"p50": 0.8, "p99": 1.5},
            "cluster": {"p50": 0.9, "p99": 2.0},
        },
        "runs": [
            {"library": "asyncq", "topology": "standalone", "latency": {"p50": 1.1, "p99": 1.7}},
            {"library": "taskiq", "topology": "standalone", "latency": {"p50": 1.7, "p99": 2.6}},
        ],
    }
    note = floor_note(doc)
    assert "50 tasks/s into it" in note
    assert "standalone p50 0.8 ms, p99 1.5 ms (asyncq +0.3 / +0.2 ms);" in note
    assert "cluster p50 0.9 ms, p99 2.0 ms." in note  # asyncq did not run there


def test_no_floor_note_for_a_result_file_without_the_floor() -> None:
    assert floor_note({"parameters": {"latency_rate": 50.0}, "runs": []}) == ""


def test_a_floor_that_failed_on_one_topology_is_named_and_the_other_still_shown() -> None:
    doc = {
        "parameters": {"latency_rate": 50.0},
        "pickup_floor": {
            "standalone": {"p50": 0.8, "p99": 1.5},
            "cluster": {"error": "handled 12 of 500"},
        },
        "runs": [],
    }
    note = floor_note(doc)
    assert "standalone p50 0.8 ms, p99 1.5 ms;" in note
    assert "cluster not measured (handled 12 of 500)." in note
