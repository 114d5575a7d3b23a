"""Which offsets may be committed. Pure: no Kafka, no clock.

Messages of one partition are claimed concurrently, so they are decided out of order. A
partition's commit position is the lowest offset not yet decided (everything before it is
decided), or one past the highest offset seen when nothing is pending. Committing past an
undecided message could lose it in a crash; committing behind a decided one only costs a
duplicate, which the guarded claim absorbs.

A partition's log can also start over under us: an in-memory broker restarts empty, a topic
is deleted and re-created, an unclean leader election truncates the log. Positions of the old
log mean nothing in the new one (committing them would make the group skip the new log's
first messages), so a position beyond the log end starts a new incarnation of the partition
(the consumer keys the tracker by
incarnation and forgets the old one), and after a failed commit nothing is committed until a fetch
has shown the log still reaches the position (:func:`may_commit`).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class PartitionOffsets:
    """The offsets of one partition taken but not yet decided."""

    highest: int = -1
    committed: int | None = None
    _pending: list[int] = field(default_factory=list)  # a min-heap with lazy deletion
    _undecided: set[int] = field(default_factory=set)

    def take(self, offset: int) -> None:
        """A message at ``offset`` was fetched."""
        if offset in self._undecided:
            return
        self._undecided.add(offset)
        heapq.heappush(self._pending, offset)
        self.highest = max(self.highest, offset)

    def decide(self, offset: int) -> None:
        """The message at ``offset`` is decided."""
        self._undecided.discard(offset)
        while self._pending and self._pending[0] not in self._undecided:
            heapq.heappop(self._pending)

    @property
    def in_flight(self) -> int:
        """Messages taken and not yet decided."""
        return len(self._undecided)

    def position(self) -> int | None:
        """The offset to commit (the next one to read after a restart), or None if none seen."""
        if self._pending:
            return self._pending[0]
        return self.highest + 1 if self.highest >= 0 else None


def log_went_back(position: int | None, highwater: int | None) -> bool:
    """Our position is past the log's end: the log we read is not there any more."""
    return position is not None and highwater is not None and position > highwater


def may_commit(
    position: int,
    highwater: int | None,
    fetched_at_ms: int | None,
    suspect_since_ms: int | None,
) -> bool:
    """Commit ``position`` only where the last fetch showed the log reaching it.

    ``suspect_since_ms``: when a commit last failed (the broker may have restarted since);
    a fetch answered before then says nothing about the log as it is now.
    """
    if highwater is None or position > highwater:
        return False
    if suspect_since_ms is None:
        return True
    return fetched_at_ms is not None and fetched_at_ms > suspect_since_ms


class OffsetTracker(Generic[K]):
    """Commit positions of several partitions (keys are e.g. aiokafka ``TopicPartition``)."""

    def __init__(self) -> None:
        self._partitions: dict[K, PartitionOffsets] = {}

    def take(self, partition: K, offset: int) -> None:
        """A message was fetched and is now being decided."""
        self._partitions.setdefault(partition, PartitionOffsets()).take(offset)

    def decide(self, partition: K, offset: int) -> None:
        """The message's claim is durable (or it was skipped, or dead-lettered)."""
        offsets = self._partitions.get(partition)
        if offsets is not None:
            offsets.decide(offset)

    def to_commit(self) -> dict[K, int]:
        """Positions that moved since the last :meth:`committed`."""
        moves = {}
        for partition, offsets in self._partitions.items():
            position = offsets.position()
            if position is not None and position != offsets.committed:
                moves[partition] = position
        return moves

    def committed(self, positions: dict[K, int]) -> None:
        """Record that ``positions`` were committed."""
        for partition, position in positions.items():
            if partition in self._partitions:
                self._partitions[partition].committed = position

    def forget(self, partitions: Iterable[K]) -> None:
        """The partitions were revoked: their undecided messages belong to the next owner."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def position(self, partition: K) -> int | None:
        """The commit position of ``partition`` (None if nothing seen)."""
        offsets = self._partitions.get(partition)
        return offsets.position() if offsets else None

    def undecided(self) -> int:
        """How many messages are taken but not decided, over all partitions."""
        return sum(p.in_flight for p in self._partitions.values())
