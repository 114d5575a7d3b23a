"""Messages that cannot be run go to the dead-letter topic raw, with where they came from.

A work message that does not decode, or names a job PostgreSQL does not have, has no job row
to record its fate in, so it is published straight to ``<prefix>.jobs.dlq`` (not through the
outbox) with its source topic, partition and offset; its offset is decided only once the
broker has acknowledged that.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from jobline.core import topics
from jobline_worker import metrics

log = logging.getLogger("jobline.worker")


class Poison:
    """Dead-letters raw messages through ``producer``."""

    def __init__(self, producer: AIOKafkaProducer, topic_prefix: str, worker_id: str) -> None:
        self.producer = producer
        self.topic = topics.dlq_topic(topic_prefix)
        self.worker_id = worker_id

    async def dead_letter_safely(self, record: ConsumerRecord, kind: str, reason: str) -> bool:
        """Dead-letter ``record``; False (its offset stays undecided) if the broker failed."""
        try:
            await self.dead_letter(record, kind, reason)
        except Exception:
            log.exception("could not dead-letter a message; leaving it undecided")
            return False
        return True

    async def dead_letter(self, record: ConsumerRecord, kind: str, reason: str) -> None:
        raw: bytes = record.value or b""
        try:
            value, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            value, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        body = {
            "kind": "poison",
            "reason": kind,
            "detail": reason,
            "source": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": record.key.decode("utf-8", "replace") if record.key else None,
            },
            "value": value,
            "value_encoding": encoding,
            "worker_id": self.worker_id,
            "dead_at": datetime.now(UTC).isoformat(),
        }
        await self.producer.send_and_wait(
            self.topic, key=record.key, value=json.dumps(body, separators=(",", ":")).encode()
        )
        metrics.DLQ.labels(kind).inc()
        log.warning(
            "poison message dead-lettered",
            extra={"reason": kind, "detail": reason, "offset": record.offset},
        )
