"""The bounded priority queue of users waiting for their history crawl.

Priority is the first risk estimate: the bundled model's probability for the
single writing that revealed the user. Equal priorities leave in discovery
order. When the queue is full, the lowest-priority user is dropped (and
returned, so the crawler can count it and forget the author, who can then be
discovered again); a newcomer below everyone in a full queue is the one
dropped. Two heaps with lazy deletion keep push, pop and eviction O(log n).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field


@dataclass(frozen=True, order=False)
class QueuedUser:
    author: str
    priority: float
    revealed_by: str  # fullname of the revealing writing
    seq: int = field(default=0)


class UserQueue:
    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._max: list[tuple[float, int]] = []  # (-priority, seq): pop highest first
        self._min: list[tuple[float, int]] = []  # (priority, -seq): evict lowest, newest
        self._live: dict[int, QueuedUser] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def push(self, author: str, priority: float, revealed_by: str) -> QueuedUser | None:
        """Queue a user; return the user dropped to respect the bound, if any."""
        seq = next(self._seq)
        user = QueuedUser(author, float(priority), revealed_by, seq)
        if len(self._live) >= self.capacity:
            lowest = self._peek_min()
            # A newcomer no better than the lowest queued user is the one dropped.
            if lowest is None or (user.priority, -user.seq) <= (lowest.priority, -lowest.seq):
                return user
            self._remove_min()
            dropped: QueuedUser | None = lowest
        else:
            dropped = None
        self._live[seq] = user
        heapq.heappush(self._max, (-user.priority, seq))
        heapq.heappush(self._min, (user.priority, -seq))
        self._compact()
        return dropped

    def _compact(self) -> None:
        # Lazy deletion leaves stale heap entries; rebuild before they outgrow
        # the live ones, so memory stays proportional to the queue's length.
        limit = 2 * len(self._live) + 64
        if len(self._max) > limit:
            self._max = [(-u.priority, s) for s, u in self._live.items()]
            heapq.heapify(self._max)
        if len(self._min) > limit:
            self._min = [(u.priority, -s) for s, u in self._live.items()]
            heapq.heapify(self._min)

    def pop(self) -> QueuedUser:
        """The highest-priority user (earliest among equals); IndexError if empty."""
        while self._max:
            _, seq = heapq.heappop(self._max)
            user = self._live.pop(seq, None)
            if user is not None:
                self._compact()
                return user
        raise IndexError("pop from an empty UserQueue")

    def _peek_min(self) -> QueuedUser | None:
        while self._min and -self._min[0][1] not in self._live:
            heapq.heappop(self._min)
        return self._live[-self._min[0][1]] if self._min else None

    def _remove_min(self) -> None:
        _, neg_seq = heapq.heappop(self._min)
        del self._live[-neg_seq]
