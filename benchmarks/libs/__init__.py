"""The libraries under test: what each supports, where it runs, and how to load its adapter.

Only metadata lives here, so the orchestrator can plan a run without importing any peer;
each adapter module imports its library and is loaded inside that library's interpreter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from benchmarks.libs.base import Adapter
from benchmarks.spec import ChildSpec


@dataclass(frozen=True)
class LibraryInfo:
    """Facts about one library that the orchestrator needs."""

    name: str
    module: str
    #: The distributions whose versions the report shows.
    distributions: tuple[str, ...]
    #: Which virtual environment runs it: "shared" (.venv-bench) or its own name.
    venv: str
    #: Why it is skipped on a cluster, or "" when it runs there.
    cluster_skip: str
    #: What the batch-enqueue scenario uses, or "" when the library has no batch API.
    batch_api: str


LIBRARIES: dict[str, LibraryInfo] = {
    info.name: info
    for info in (
        LibraryInfo(
            "asyncq",
            "benchmarks.libs.asyncq_lib",
            ("asyncq", "redis"),
            "shared",
            "",
            "Client.enqueue_many",
        ),
        LibraryInfo(
            "arq",
            "benchmarks.libs.arq_lib",
            ("arq", "redis"),
            "arq",
            "no Redis Cluster support (needs MULTI/EXEC across keys; arq issue #385)",
            "",
        ),
        LibraryInfo(
            "saq",
            "benchmarks.libs.saq_lib",
            ("saq", "redis"),
            "shared",
            "no Redis Cluster support (multi-key scripts and transactions; saq issue #256)",
            "",
        ),
        LibraryInfo(
            "taskiq",
            "benchmarks.libs.taskiq_lib",
            ("taskiq", "taskiq-redis", "redis"),
            "shared",
            "",
            "",
        ),
        LibraryInfo(
            "streaq",
            "benchmarks.libs.streaq_lib",
            ("streaq", "coredis"),
            "shared",
            "",
            "Worker.enqueue_many",
        ),
    )
}


#: No library at all (``LPUSH`` and a ``BLPOP`` loop): run only for the pickup floor, not
#: one of the libraries compared.
FLOOR = LibraryInfo("bare", "benchmarks.libs.bare_lib", ("redis",), "shared", "", "")


def library_info(name: str) -> LibraryInfo:
    """The facts about a compared library, or about the floor."""
    return FLOOR if name == FLOOR.name else LIBRARIES[name]


def load_adapter(spec: ChildSpec) -> Adapter:
    """Import the adapter module of ``spec.lib`` and build its adapter."""
    info = library_info(spec.lib)
    module = importlib.import_module(info.module)
    adapter: Adapter = module.ADAPTER(spec)
    return adapter
