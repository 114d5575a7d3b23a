"""RFC 9457 problem details: the body of every 4xx/5xx answer (``application/problem+json``).

The wire shape only, for readers of the API; the gateway's handlers produce it.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from pydantic import BaseModel, Field

MEDIA_TYPE: Final = "application/problem+json"
TYPE_BASE: Final = "urn:jobline:problem:"


class FieldError(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    field: str = Field(description="Dotted name of the field, e.g. `jobs.17.payload`.")
    location: str = Field(description="`body`, `query`, `path` or `header`.")
    pointer: str | None = Field(
        default=None, description="RFC 6901 JSON pointer into the request body (body only)."
    )
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = "about:blank"
    title: str = ""
    status: int
    detail: str = ""
    instance: str | None = None
    errors: list[FieldError] | None = None
    job_id: UUID | None = Field(
        default=None, description="The job a conflict is about (e.g. the unique key's holder)."
    )

    @property
    def kind(self) -> str:
        """The last part of ``type``, e.g. ``validation`` or ``illegal-transition``."""
        return self.type.removeprefix(TYPE_BASE)
