"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure.

A secret reads ``whsec_<base64 of 32 random bytes>``. A delivery carries three headers:
``webhook-id`` (the same across retries of one message), ``webhook-timestamp`` (Unix
seconds of this attempt) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">``, one per secret, space-separated; while a rotated-out secret is
still honoured both are sent, so a receiver holding either verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Final

from jobline.core.errors import JoblineError

SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32
SIGNATURE_VERSION: Final = "v1"
# How far a receiver lets the timestamp be from its clock (the specification's default).
DEFAULT_TOLERANCE_SECONDS: Final = 300

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"


class InvalidSignature(JoblineError):
    """The webhook's signature does not verify."""


def generate_secret() -> str:
    """A new signing secret, shown to its owner once."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the base64 after the prefix)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise InvalidSignature("the secret is not base64") from None
    if not key:
        raise InvalidSignature("the secret is empty")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>`` of one secret over ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret of ``secrets_``."""
    signatures = " ".join(signature(s, msg_id, timestamp, body) for s in secrets_)
    if not signatures:
        raise ValueError("at least one secret is required")
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signatures,
    }


def verify(
    secret: str,
    received: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Return if one ``v1`` signature of ``received`` is ``secret``'s over ``body`` and the
    timestamp lies within ``tolerance`` of ``now``; :class:`InvalidSignature` otherwise."""
    lowered = {k.lower(): v for k, v in received.items()}
    msg_id = lowered.get(ID_HEADER)
    stamp = lowered.get(TIMESTAMP_HEADER)
    presented = lowered.get(SIGNATURE_HEADER)
    if not (msg_id and stamp and presented):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("webhook-timestamp is outside the tolerance")
    expected = signature(secret, msg_id, timestamp, body).encode()
    for candidate in presented.split(" "):
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise InvalidSignature("no matching signature")
