"""Who may do what with API keys and policies (pure).

The operator (``admin``) manages every tenant; a tenant key with ``keys:manage`` manages its
own tenant's keys only, and can never hand out more than it holds: a key cannot mint a
stronger key, so ``keys:manage`` is not a way to escalate (the same rule as GitHub's
fine-grained tokens and Stripe's restricted keys, which cannot exceed their creator).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from jobline.core.apikeys import Scope
from jobline.core.errors import JoblineError

# Either scope lets a key change its tenant's job-type policies.
POLICY_WRITERS: Final = frozenset({Scope.POLICIES_WRITE, Scope.ADMIN})


class ScopeDenied(JoblineError):
    """The API key may not do this."""


class ScopesNotHeld(ScopeDenied):
    """A key may only grant scopes it holds itself."""

    def __init__(self, missing: Collection[Scope]) -> None:
        self.missing = frozenset(missing)
        names = ", ".join(sorted(s.value for s in self.missing))
        super().__init__(f"a key can grant only scopes it holds itself; it lacks: {names}")


class OtherTenant(ScopeDenied):
    """A tenant key may only manage its own tenant's keys."""


def grantable(held: Collection[Scope], requested: Collection[Scope]) -> frozenset[Scope]:
    """``requested`` if the holder of ``held`` may grant it, else :class:`ScopesNotHeld`."""
    missing = frozenset(requested) - frozenset(held)
    if missing:
        raise ScopesNotHeld(missing)
    return frozenset(requested)


def check_own_tenant(caller_tenant: str, target_tenant: str) -> None:
    """:class:`OtherTenant` unless a tenant key acts on its own tenant."""
    if caller_tenant != target_tenant:
        raise OtherTenant()


def allows(held: Collection[Scope], any_of: Collection[Scope]) -> bool:
    """Whether a key holding ``held`` has at least one of ``any_of``."""
    return not frozenset(held).isdisjoint(any_of)
