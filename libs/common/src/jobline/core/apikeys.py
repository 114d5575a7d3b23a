"""API keys: generation, parsing and verification (pure).

A key reads ``jl_<prefix>_<secret>``. The prefix is not secret: it finds the row. Only a
SHA-256 of the whole key is stored; a plain hash suffices because the secret carries 256
random bits (a slow password hash protects low-entropy secrets, which these are not).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from jobline.core.errors import JoblineError

KEY_SCHEME: Final = "jl"
PREFIX_BYTES: Final = 6
SECRET_BYTES: Final = 32
_KEY_RE: Final = re.compile(r"^jl_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")
TENANT_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Scope(StrEnum):
    JOBS_WRITE = "jobs:write"
    JOBS_READ = "jobs:read"
    SCHEDULES_WRITE = "schedules:write"
    # The tenant's own keys: create (with scopes the caller holds), list, revoke.
    KEYS_MANAGE = "keys:manage"
    # The tenant's job-type policies: set them, apply the analyzer's recommendations.
    POLICIES_WRITE = "policies:write"
    # The tenant's webhook endpoints, their secrets and delivery log.
    WEBHOOKS_MANAGE = "webhooks:manage"
    # The platform operator: every tenant's keys, quotas, the audit log.
    ADMIN = "admin"


ALL_SCOPES: Final = frozenset(Scope)
# Everything a tenant may hold without being the operator.
TENANT_SCOPES: Final = ALL_SCOPES - {Scope.ADMIN}


class MalformedKey(JoblineError):
    """The API key is malformed."""


class InvalidScope(JoblineError):
    """Unknown scope."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: ``plaintext`` is shown once and never stored."""

    prefix: str
    plaintext: str
    key_hash: str


def generate() -> NewKey:
    prefix = secrets.token_hex(PREFIX_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    plaintext = f"{KEY_SCHEME}_{prefix}_{secret}"
    return NewKey(prefix=prefix, plaintext=plaintext, key_hash=hash_key(plaintext))


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def prefix_of(plaintext: str) -> str:
    """The lookup prefix of a presented key, or :class:`MalformedKey`."""
    match = _KEY_RE.match(plaintext)
    if match is None:
        raise MalformedKey()
    return match.group(1)


def verify(plaintext: str, stored_hash: str) -> bool:
    """Constant-time comparison of the presented key's hash with the stored one."""
    return hmac.compare_digest(hash_key(plaintext), stored_hash)


def parse_scopes(text: str | list[str]) -> frozenset[Scope]:
    """``"jobs:write,jobs:read"`` or a list of names; unknown names raise InvalidScope."""
    names = text.split(",") if isinstance(text, str) else text
    scopes = set()
    for name in (n.strip() for n in names):
        if not name:
            continue
        try:
            scopes.add(Scope(name))
        except ValueError:
            allowed = ", ".join(sorted(ALL_SCOPES))
            raise InvalidScope(f"unknown scope {name!r} (allowed: {allowed})") from None
    if not scopes:
        raise InvalidScope("at least one scope is required")
    return frozenset(scopes)


def validate_tenant(tenant: str) -> str:
    if not TENANT_RE.match(tenant):
        raise JoblineError(
            f"invalid tenant {tenant!r}: lower-case letters, digits, '-' and '_', at most 63"
        )
    return tenant
