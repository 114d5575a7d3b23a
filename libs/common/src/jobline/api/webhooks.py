"""Webhooks: ``/v1/webhooks`` (scope ``webhooks:manage``).

An endpoint receives the tenant's lifecycle events it subscribed to as HTTP POSTs signed per
the Standard Webhooks specification (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``); the body is the event, a CloudEvent in structured JSON mode. Its
signing secret (``whsec_...``) is returned once, by the POST that creates the endpoint and
by each rotation.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, Strict

from jobline.api.fields import CURSOR_DESCRIPTION, Answer, Request, Text

# What an endpoint can subscribe to: an event type, every job event, or everything.
EventTypePattern = Literal[
    "*",
    "jobline.job.*",
    "jobline.job.scheduled",
    "jobline.job.queued",
    "jobline.job.started",
    "jobline.job.retrying",
    "jobline.job.succeeded",
    "jobline.job.dead",
    "jobline.job.cancelled",
]

MAX_URL_LENGTH: Final = 2048
# An absolute http(s) URL whose host is a name or an IPv4 address (no user info, no IPv6
# literal), with an optional port 1-65535 and any printable-ASCII path and query.
URL_PATTERN: Final = (
    r"^https?://[A-Za-z0-9.-]+"
    r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(/[!-~]*)?$"
)
URL_DESCRIPTION: Final = (
    "Where deliveries are POSTed: an absolute http(s) URL. Unless the deployment allows "
    "them, loopback, private, link-local and other non-public addresses are refused: an IP "
    "address here (or `localhost`) with a 422 when saved, and a name that resolves to one "
    "when a delivery is attempted (the attempt fails; every attempt resolves afresh)."
)

EventTypes = Annotated[
    list[EventTypePattern],
    Field(
        min_length=1,
        max_length=20,
        description="Event types to receive: `jobline.job.<state>` (`started` for running), "
        "`jobline.job.*` or `*`.",
    ),
]
Url = Annotated[
    str,
    Field(max_length=MAX_URL_LENGTH, pattern=URL_PATTERN, description=URL_DESCRIPTION),
]
Description = Annotated[Text, Field(max_length=500, description="A note for people.")]


class WebhookIn(Request):
    """A new webhook endpoint."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/jobline",
                    "event_types": ["jobline.job.succeeded", "jobline.job.dead"],
                    "description": "billing finished jobs",
                }
            ]
        }
    )

    url: Url
    event_types: EventTypes
    description: Description = ""


class WebhookPatch(Request):
    """Changes to an endpoint; absent or null fields stay as they are. Enabling a disabled
    endpoint resets its failure count and sends the deliveries held while it was disabled."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"enabled": True},
                {"url": "https://hooks.example.com/v2", "event_types": ["jobline.job.*"]},
            ]
        }
    )

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: Annotated[bool, Strict()] | None = None


class WebhookOut(Answer):
    """A webhook endpoint (never its secret)."""

    id: UUID
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why it was disabled (by a PATCH, or after repeated failed deliveries)."
    )
    consecutive_failures: int = Field(description="Deliveries in a row that failed for good.")
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation: until when the previous secret also signs."
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    """An endpoint with its signing secret, shown only in this response."""

    secret: str = Field(
        description="The signing secret (`whsec_` + base64). Shown only here: store it now."
    )


class WebhookPage(Answer):
    """One page of the tenant's endpoints, oldest first."""

    webhooks: list[WebhookOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page. "
        + CURSOR_DESCRIPTION
    )


class DeliveryStatus(StrEnum):
    """``pending``: waiting for an attempt (held while the endpoint is disabled);
    ``succeeded``: a 2xx came back; ``failed``: every attempt failed (replay to try again)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DeliveryOut(Answer):
    """One event's delivery to one endpoint: the delivery log's entry."""

    id: UUID = Field(description="Also the `webhook-id` header of every attempt.")
    webhook_id: UUID
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int = Field(description="Attempts made (since the last replay).")
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any] = Field(description="The body delivered: the CloudEvent.")


class DeliveryPage(Answer):
    """One page of an endpoint's deliveries, newest first."""

    deliveries: list[DeliveryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page. "
        + CURSOR_DESCRIPTION
    )
