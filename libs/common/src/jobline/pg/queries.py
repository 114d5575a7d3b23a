"""The named statements of ``queries.sql``, ready to execute."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# Parameters bound to jsonb columns: SQLAlchemy serialises them only if it knows the type
# (asyncpg's jsonb codec, as SQLAlchemy installs it, takes a JSON string, not a dict).
JSON_PARAMS = frozenset(
    {"payload", "metadata", "backoff", "result", "last_error", "errors", "error"}
)


def parse(source: str) -> dict[str, str]:
    """Split ``-- name: x`` blocks; each block's SQL runs to the next name."""
    parts = _NAME.split(source)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@cache
def _all() -> dict[str, TextClause]:
    source = files("jobline.pg").joinpath("queries.sql").read_text()
    return {name: _typed(text(sql)) for name, sql in parse(source).items()}


def _typed(statement: TextClause) -> TextClause:
    json_binds = [bindparam(n, type_=JSONB) for n in statement._bindparams if n in JSON_PARAMS]
    return statement.bindparams(*json_binds) if json_binds else statement


def q(name: str) -> TextClause:
    """The statement called ``name``; a typo fails loudly at first use."""
    return _all()[name]
