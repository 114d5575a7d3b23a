"""Which outbox rows the relay sets aside before sending: any message over the limit."""

from datetime import UTC, datetime
from uuid import uuid4

from jobline.pg.outbox import OutboxRow
from jobline_relay.oversize import RECORD_OVERHEAD_BYTES, oversized, without

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def row(row_id: int, *sizes: int, topic: str = "events", due: int | None = None) -> OutboxRow:
    messages = tuple((topic, b"x" * size) for size in sizes)
    return OutboxRow(row_id, uuid4(), "k" * 36, NOW, due, messages)


def test_rows_whose_every_message_fits_pass():
    limit = 10_000
    fits = limit - RECORD_OVERHEAD_BYTES - 36
    assert oversized([row(1, 10, 20), row(2, fits)], limit) == {}


def test_a_row_with_one_message_over_the_limit_is_refused_with_the_reason():
    limit = 10_000
    refused = oversized([row(1, 10), row(2, 5, limit), row(3, 7)], limit)
    assert list(refused) == [(2, 1)]
    assert "the limit is 10000" in refused[2, 1]
    assert f"is {limit + 36 + RECORD_OVERHEAD_BYTES} bytes" in refused[2, 1]


def test_a_row_keeps_its_other_messages_and_a_refused_delayed_work_message_makes_nothing_due():
    mixed = OutboxRow(7, uuid4(), "k", NOW, 2, (("events", b"e"), ("jobs.q", b"w")))
    assert without(mixed, {(7, 0)}) == OutboxRow(7, mixed.job_id, "k", NOW, 2, (("jobs.q", b"w"),))
    assert without(mixed, {(7, 1)}).messages == (("events", b"e"),)
    assert without(mixed, {(7, 1)}).due_attempt is None
    assert without(mixed, set()) is mixed
