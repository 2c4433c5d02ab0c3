"""What the orchestrator tells a child process (a worker or a driver) to do.

A ``ChildSpec`` travels as JSON on the child's command line. Standard library only: the
same module is imported by every library's interpreter.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Topology = Literal["standalone", "cluster"]
DriverMode = Literal["single", "callers", "batch", "paced", "ceiling", "callers_ceiling"]
Workload = Literal["noop", "sleep"]
EventLoop = Literal["asyncio", "uvloop"]

#: The task name every adapter registers; all benchmark tasks carry ``{"t": wall time}``.
TASK_NAME = "bench"


@dataclass
class ChildSpec:
    """One child's job: which library, which Redis, which queue, and what to run."""

    lib: str
    topology: Topology
    queue: str
    redis_url: str = ""
    cluster_nodes: list[str] = field(default_factory=list)
    concurrency: int = 32
    # The event loop the child runs on (every library of a run gets the same).
    loop: EventLoop = "asyncio"
    # Driver (client) side.
    mode: DriverMode = "single"
    count: int = 0
    in_flight: int = 32
    rate: float = 50.0
    batch_size: int = 0
    # Worker side.
    workload: Workload = "noop"
    sleep_s: float = 0.01
    record_latency: bool = False
    settle_s: float = 0.5
    progress_every_s: float = 1.0

    @property
    def is_cluster(self) -> bool:
        """Whether the target is a Redis Cluster."""
        return self.topology == "cluster"

    def node_addresses(self) -> list[tuple[str, int]]:
        """The cluster nodes as ``(host, port)`` pairs."""
        pairs = []
        for node in self.cluster_nodes:
            host, _, port = node.rpartition(":")
            pairs.append((host.strip("[]"), int(port)))
        return pairs

    def to_json(self) -> str:
        """Encode for a command line."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ChildSpec:
        """Decode what ``to_json`` wrote."""
        return cls(**json.loads(text))
