"""The console's session cookie and CSRF tokens: pure functions, the clock a parameter.

A session is ``key id . key prefix . tenant . expiry . nonce``, HMAC-SHA256-signed with the
console's secret. It holds no secret of its own: the key it names is looked up (and must still
be usable) on every request, so revoking a key logs its sessions out. The CSRF token is an
HMAC of the session's nonce, so it changes with every login and needs no storage; a form
carries it in ``csrf_token``, htmx in the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

COOKIE: Final = "jobline_session"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
_SEP: Final = "|"


@dataclass(frozen=True, slots=True)
class Session:
    """Who is logged in (by key), which tenant they look at, until when."""

    key_id: UUID
    prefix: str
    tenant: str
    expires_at: datetime
    nonce: str

    def switched(self, tenant: str) -> Session:
        return Session(self.key_id, self.prefix, tenant, self.expires_at, self.nonce)


def new_session(key_id: UUID, prefix: str, tenant: str, now: datetime, ttl: timedelta) -> Session:
    return Session(key_id, prefix, tenant, now + ttl, secrets.token_urlsafe(16))


def _mac(secret: bytes, text: str) -> str:
    digest = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode(session: Session, secret: bytes) -> str:
    """The cookie's value: the fields and their signature."""
    fields = [
        str(session.key_id),
        session.prefix,
        session.tenant,
        str(int(session.expires_at.timestamp())),
        session.nonce,
    ]
    body = base64.urlsafe_b64encode(_SEP.join(fields).encode()).decode().rstrip("=")
    return f"{body}.{_mac(secret, body)}"


def decode(value: str | None, secret: bytes, now: datetime) -> Session | None:
    """The session a cookie carries, or None if it is missing, forged or expired."""
    if not value or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    if not hmac.compare_digest(mac, _mac(secret, body)):
        return None
    try:
        text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        key_id, prefix, tenant, expires, nonce = text.split(_SEP)
        session = Session(
            UUID(key_id), prefix, tenant, datetime.fromtimestamp(int(expires), now.tzinfo), nonce
        )
    except (ValueError, UnicodeDecodeError):
        return None
    return session if session.expires_at > now else None


def csrf_token(session: Session, secret: bytes) -> str:
    """The session's CSRF token (the same for the whole session)."""
    return _mac(secret, "csrf" + _SEP + session.nonce)


def csrf_ok(session: Session, secret: bytes, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given, csrf_token(session, secret))
