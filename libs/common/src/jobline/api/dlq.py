"""The dead-letter queue, grouped: ``GET /v1/dlq/groups``."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from jobline.api.fields import Answer


class DlqGroup(Answer):
    """Dead jobs of one type and queue that failed with the same error class."""

    type: str
    queue: str
    error_class: str | None = Field(description="The last attempt's error class.")
    count: int
    first_dead_at: datetime
    last_dead_at: datetime
    sample_job_id: UUID = Field(description="The most recent dead job of the group.")
    sample_message: str | None = Field(description="Its last error message.")


class DlqGroupList(Answer):
    """Groups of the tenant's dead jobs, largest first (``?type=``, ``?queue=`` filter)."""

    groups: list[DlqGroup]
