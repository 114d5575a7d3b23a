"""The relay's own named statements (``queries.sql`` beside this module)."""

from __future__ import annotations

from typing import Final

from jobline.pg.queries import Queries

SQL: Final = Queries.load("jobline_relay")
