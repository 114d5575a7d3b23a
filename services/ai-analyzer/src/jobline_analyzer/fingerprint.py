"""Error classes: exception type plus a message with its variable parts normalised away.

Two failures belong to the same class when they differ only in ids, numbers, quoted values,
addresses or timestamps, so "order 8812 not found" and "order 913 not found" count together.
"""

from __future__ import annotations

import hashlib
import re

MAX_MESSAGE = 200

# Order matters: whole tokens (quoted strings, uuids, addresses) go before the digits inside them.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`"), "<str>"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (
        re.compile(
            r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.IGNORECASE
        ),
        "<uuid>",
    ),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}"
            r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        ),
        "<ts>",
    ),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    # Bare hex ids (commit shas, object ids): long, and holding at least one digit and letter.
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"[-+]?\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\b", re.IGNORECASE), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalise_message(message: str) -> str:
    """Replace the variable parts of an error message with placeholders."""
    text = message.strip()
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    text = text.strip()
    return text[:MAX_MESSAGE]


def error_class(exception_type: str, message: str) -> str:
    """Readable error class, e.g. `KeyError: order <n> not found`."""
    normalised = normalise_message(message)
    name = exception_type.strip() or "Error"
    return f"{name}: {normalised}" if normalised else name


def fingerprint(exception_type: str, message: str) -> str:
    """Short stable id of the error class (16 hex chars), for keys and labels."""
    digest = hashlib.sha256(error_class(exception_type, message).encode()).hexdigest()
    return digest[:16]
