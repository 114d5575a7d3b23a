"""Error-class normalisation."""

from __future__ import annotations

import pytest

from jobline_analyzer.fingerprint import error_class, fingerprint, normalise_message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("order 8812 not found", "order <n> not found"),
        ("user 'alice' missing", "user <str> missing"),
        ('key "a-b" missing', "key <str> missing"),
        ("job 3f2a1c9e-1b2c-4d5e-8f90-123456789abc failed", "job <uuid> failed"),
        ("object 0xdeadbeef at deadbeef1234", "object <hex> at <hex>"),
        ("connect to 10.0.0.12:5432 refused", "connect to <ip> refused"),
        ("GET https://api.example.com/v1/x?id=9 gave 503", "GET <url> gave <n>"),
        ("at 2026-01-05T10:00:00Z took 1.5e3 ms", "at <ts> took <n> ms"),
        ("  many   spaces\n here ", "many spaces here"),
    ],
)
def test_normalise_message(message: str, expected: str) -> None:
    assert normalise_message(message) == expected


def test_same_class_for_messages_that_differ_only_in_ids() -> None:
    a = fingerprint("KeyError", "order 1 not found")
    assert a == fingerprint("KeyError", "order 99 not found")
    assert a != fingerprint("ValueError", "order 1 not found")
    assert len(a) == 16
    assert error_class("KeyError", "order 7 not found") == "KeyError: order <n> not found"
    assert error_class("MemoryError", "") == "MemoryError"
