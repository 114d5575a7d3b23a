"""Named SQL statements from ``.sql`` files, executed on asyncpg connections.

A file holds blocks that start with ``-- name: <name>``; a block's SQL runs to the next name.
Parameters are written ``:name`` (readable, order-free) and turned into asyncpg's ``$n`` once,
at load; callers pass them as keyword arguments. asyncpg prepares each statement once per
connection and reuses it (its statement cache), so a hot statement is parsed and planned once.

Each package that runs SQL owns one file: ``jobline.pg`` (jobs, outbox, keys, schedules'
core) and each service for its own statements.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import asyncpg

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# ":name" but not the "::type" cast, and not inside a quoted string (none of ours has one).
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class UnknownQuery(KeyError):
    """No statement of that name in the file."""


@dataclass(frozen=True, slots=True)
class Query:
    """One named statement in asyncpg form, with its parameters in ``$n`` order."""

    name: str
    sql: str
    params: tuple[str, ...]

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        missing = [p for p in self.params if p not in values]
        if missing:
            raise TypeError(f"query {self.name!r} needs {', '.join(missing)}")
        extra = set(values) - set(self.params)
        if extra:
            raise TypeError(f"query {self.name!r} takes no {', '.join(sorted(extra))}")
        return [values[p] for p in self.params]


def compile_block(name: str, text: str) -> Query:
    """``:name`` parameters to ``$n`` (numbered by first appearance)."""
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        param = match.group(1)
        if param not in order:
            order[param] = len(order) + 1
        return f"${order[param]}"

    return Query(name, _PARAM.sub(number, text), tuple(order))


def parse(source: str) -> dict[str, Query]:
    """Split ``-- name: x`` blocks into compiled queries."""
    parts = _NAME.split(source)
    blocks = list(zip(parts[1::2], parts[2::2], strict=True))
    names = [name for name, _ in blocks]
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        # A second block of one name silently replaced the first (it happened once).
        raise ValueError(f"statements named more than once: {', '.join(repeated)}")
    return {name: compile_block(name, body.strip()) for name, body in blocks}


class Queries:
    """The named statements of one ``.sql`` file, and helpers to run them."""

    def __init__(self, queries: Mapping[str, Query], origin: str) -> None:
        self._queries = dict(queries)
        self.origin = origin

    @classmethod
    def load(cls, package: str, filename: str = "queries.sql") -> Queries:
        source = files(package).joinpath(filename).read_text()
        return cls(parse(source), f"{package}/{filename}")

    def __getitem__(self, name: str) -> Query:
        try:
            return self._queries[name]
        except KeyError:
            raise UnknownQuery(f"no query {name!r} in {self.origin}") from None

    def names(self) -> list[str]:
        return list(self._queries)

    async def fetch(self, conn: Any, name: str, /, **values: Any) -> list[asyncpg.Record]:
        query = self[name]
        rows: list[asyncpg.Record] = await conn.fetch(query.sql, *query.bind(values))
        return rows

    async def fetchrow(self, conn: Any, name: str, /, **values: Any) -> asyncpg.Record | None:
        query = self[name]
        row: asyncpg.Record | None = await conn.fetchrow(query.sql, *query.bind(values))
        return row

    async def fetchval(self, conn: Any, name: str, /, **values: Any) -> Any:
        query = self[name]
        return await conn.fetchval(query.sql, *query.bind(values))

    async def execute(self, conn: Any, name: str, /, **values: Any) -> str:
        """Run the statement; returns its status tag (e.g. ``UPDATE 3``)."""
        query = self[name]
        status: str = await conn.execute(query.sql, *query.bind(values))
        return status


def rowcount(status: str) -> int:
    """The row count of a status tag such as ``UPDATE 3`` or ``INSERT 0 5``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


SQL = Queries.load("jobline.pg")
"""The shared statements (jobs, outbox, keys, leases, schedules' firing)."""
