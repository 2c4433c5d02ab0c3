"""The benchmark's reading aid for the one-by-one column: the method's own limit."""

from __future__ import annotations

from typing import Any

from benchmarks.measure import enqueue_concurrently, one_turn
from benchmarks.report import ceiling_note


def _run(lib: str, topology: str, single: float) -> dict[str, Any]:
    return {"library": lib, "topology": topology, "enqueue_single": {"tasks_per_s": single}}


async def test_the_method_alone_makes_every_call_with_32_in_flight_at_most() -> None:
    in_flight, most, calls = 0, 0, 0

    async def counted(enqueued_at: float) -> None:
        nonlocal in_flight, most, calls
        in_flight, calls = in_flight + 1, calls + 1
        most = max(most, in_flight)
        await one_turn(enqueued_at)
        in_flight -= 1

    assert await enqueue_concurrently(counted, 500, 32) > 0
    assert (calls, most) == (500, 32)


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


def test_no_note_for_a_result_file_without_the_ceiling() -> None:
    assert ceiling_note({"parameters": {"in_flight": 32}, "runs": []}) == ""
