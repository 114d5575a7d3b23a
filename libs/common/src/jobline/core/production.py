"""Production-mode checks on configured secrets (pure).

Outside dev and test a placeholder secret is a deployment mistake (the FastAPI full-stack
template refuses ``changethis`` the same way): the process must refuse to start, naming the
variable, rather than run with a password from a README.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote, urlsplit

# Lower-cased; a secret equal to one of these, or containing "changeme"/"change-me", is a
# placeholder. The compose file's and docs' examples are among them on purpose.
PLACEHOLDERS: Final = frozenset(
    {
        "",
        "admin",
        "changeit",
        "changethis",
        "default",
        "example",
        "jobline",
        "pass",
        "password",
        "placeholder",
        "postgres",
        "secret",
        "test",
        "xxx",
    }
)
_MARKERS: Final = ("changeme", "change-me", "change_me", "replace-me", "replaceme", "todo")
MIN_SECRET_LENGTH: Final = 12


def is_placeholder(secret: str) -> bool:
    """Whether ``secret`` looks like a default or an example rather than a real secret."""
    lowered = secret.strip().lower()
    return lowered in PLACEHOLDERS or any(m in lowered for m in _MARKERS)


def secret_problems(secrets: Mapping[str, str | None]) -> list[str]:
    """One line per unusable secret: ``{variable: value}``, None meaning not configured."""
    problems = []
    for name, value in secrets.items():
        if value is None:
            continue
        if is_placeholder(value):
            problems.append(f"{name}: a placeholder or default secret")
        elif len(value) < MIN_SECRET_LENGTH:
            problems.append(f"{name}: shorter than {MIN_SECRET_LENGTH} characters")
    return problems


def url_password(url: str) -> str | None:
    """The password of a ``scheme://user:password@host/...`` URL (None: none given)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return None if password is None else unquote(password)
