"""A task checked and encoded for writing, as the client's enqueue paths hand it around."""

from __future__ import annotations

from dataclasses import dataclass

from asyncq._broker.keys import QueueKeys
from asyncq._options import ResolvedOptions
from asyncq.task import Task, TaskState

__all__ = ["Prepared", "plain_like"]


@dataclass(slots=True)
class Prepared:
    """A task checked and encoded, ready to be written."""

    task: Task
    opts: ResolvedOptions
    keys: QueueKeys
    msg: bytes
    unique_key: str
    state: TaskState
    process_at: float
    now_ns: int
    task_id: str
    generated_id: bool

    @property
    def plain(self) -> bool:
        """A plain pending task: the kind that travels in batches."""
        return self.state is TaskState.PENDING and not self.unique_key


def plain_like(shared: Prepared, task: Task, task_id: str, msg: bytes, now_ns: int) -> Prepared:
    """A plain task with the options of ``shared``, its own id, message and time."""
    return Prepared(
        task, shared.opts, shared.keys, msg, "", shared.state, now_ns / 1e9, now_ns, task_id,
        True,
    )  # fmt: skip
