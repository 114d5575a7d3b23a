"""Noticing a partition whose log went back: the broker lost it without a send failing.

An in-memory broker that restarts within the producer's request timeout, or a topic deleted
and auto-created again, accepts the next messages at offset 0: nothing fails, and everything
published there before is gone. A partition's offsets only grow, whoever appends, so an
acknowledgement at or below one this relay saw before is the sign. Pure: fed the
acknowledged (topic, partition, offset) of each batch, it names the topics that went back.
"""

from __future__ import annotations

from collections.abc import Iterable


class LogWatch:
    """The last acknowledged offset of every partition this relay published to."""

    def __init__(self) -> None:
        self._offsets: dict[tuple[str, int], int] = {}

    def acknowledged(self, written: Iterable[tuple[str, int, int]]) -> dict[str, list[int]]:
        """Record ``(topic, partition, offset)`` acknowledgements; the partitions, by topic,
        whose log went back since this relay last published to them."""
        went_back: dict[str, list[int]] = {}
        for topic, partition, offset in written:
            key = (topic, partition)
            last = self._offsets.get(key)
            if last is not None and offset <= last and partition not in went_back.get(topic, ()):
                went_back.setdefault(topic, []).append(partition)
            self._offsets[key] = offset
        return went_back
