"""The queue router: in which order a worker tries its queues, and where each queue lives.

Pure code. Weighted mode picks the order at random with each queue's chance of
coming first proportional to its priority, as asynq's processor does; strict mode
always tries higher priorities first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping
from functools import reduce

from asyncq._broker.keys import validate_queue_name
from asyncq.errors import InvalidOptionError

__all__ = ["MAX_PRIORITY", "QueueRouter"]

MAX_PRIORITY = 2**31 - 1  # asynq's server record holds priorities as int32


class QueueRouter:
    """Orders a server's queues for each dequeue attempt."""

    def __init__(
        self, queues: Mapping[str, int], *, strict: bool = False, rng: random.Random | None = None
    ) -> None:
        if not isinstance(queues, Mapping):
            raise InvalidOptionError(
                f"queues must map each queue name to its priority, such as "
                f"{{'critical': 6, 'default': 3}}, got {queues!r}"
            )
        if not queues:
            raise InvalidOptionError("a server needs at least one queue, e.g. {'default': 1}")
        for name, priority in queues.items():
            validate_queue_name(name)
            if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
                raise InvalidOptionError(
                    f"priority of queue {name!r} must be a whole number >= 1, got {priority!r}"
                )
            if priority > MAX_PRIORITY:
                raise InvalidOptionError(
                    f"priority of queue {name!r} must be at most {MAX_PRIORITY}, got {priority}"
                )
        # As given, for the server's record (asynq's heartbeat lists them so).
        self.configured = dict(queues)
        # Divide by the common divisor, as asynq does: {a: 6, b: 3} serves like {a: 2, b: 1}.
        divisor = reduce(math.gcd, queues.values())
        self.priorities = {name: p // divisor for name, p in queues.items()}
        self.strict = strict
        self._rng = rng or random.Random()
        # Strict order never changes; ties are broken by name so it is stable.
        self._strict_order = sorted(self.priorities, key=lambda q: (-self.priorities[q], q))

    @property
    def queues(self) -> list[str]:
        """Every queue served, highest priority first."""
        return list(self._strict_order)

    def watch_shares(self, slots: int, skipping: Collection[str] = ()) -> list[tuple[str, int]]:
        """Each queue, in this attempt's order, with how many of ``slots`` free slots its
        watch may take tasks into (an idle worker's wait inside Redis; a watch given none
        only wakes the worker, which then dequeues in the ordinary order). The queues in
        ``skipping`` are left out (a queue whose node is not answering): the others share
        the slots, and none may be left.

        Strict: every slot to the highest queue, so a lower queue's task never starts
        ahead of a higher one's. Weighted: shared evenly, the rest to the queues that come
        first this time, so with fewer slots than queues each queue's chance of a slot
        follows its priority.
        """
        order = [queue for queue in self.order() if queue not in skipping]
        if not order:
            return []
        if self.strict:
            return [(queue, slots if index == 0 else 0) for index, queue in enumerate(order)]
        share, extra = divmod(slots, len(order))
        return [(queue, share + (index < extra)) for index, queue in enumerate(order)]

    def order(self) -> list[str]:
        """The queues in the order to try them this time."""
        if self.strict or len(self._strict_order) == 1:
            return list(self._strict_order)
        # Weighted sampling without replacement (Efraimidis-Spirakis): the same
        # distribution as asynq's "repeat each name priority times, shuffle, dedupe".
        rand = self._rng.random
        keyed = [(rand() ** (1.0 / p), q) for q, p in self.priorities.items()]
        keyed.sort(reverse=True)
        return [q for _, q in keyed]
