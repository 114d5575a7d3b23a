"""The ``unique`` field of a submission: at most one unfinished job per key and tenant."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from jobline.api.fields import JsonNumber, NulFreeText, Request

MAX_UNIQUE_WINDOW_SECONDS: Final = 30 * 86400


class UniquePolicy(StrEnum):
    """What a submission gets while its unique key is held by an unfinished job."""

    REJECT = "reject"
    REPLACE = "replace"
    DEBOUNCE = "debounce"


class UniqueIn(Request):
    """At most one unfinished job (scheduled, queued, running, retrying) per key and tenant.

    A duplicate gets `reject`: 409 naming the job that holds the key; `replace`: the holder
    is cancelled and this job accepted, unless the holder is running (then as `reject`);
    `debounce`: while the holder was created less than `window_seconds` ago, 200 with the
    holder and nothing created (after that, as `reject`).
    """

    model_config = ConfigDict(
        json_schema_extra={
            # window_seconds goes with debounce, and only with it (the validator below).
            "if": {"properties": {"policy": {"const": "debounce"}}, "required": ["policy"]},
            "then": {
                "required": ["window_seconds"],
                "properties": {"window_seconds": {"type": "number"}},
            },
            "else": {"properties": {"window_seconds": {"type": "null"}}},
            "examples": [{"key": "invoice-42", "policy": "debounce", "window_seconds": 30}],
        }
    )

    key: Annotated[
        NulFreeText,
        Field(
            min_length=1,
            max_length=255,
            description="Chosen by the client; compared exactly (case and spaces count).",
        ),
    ]
    policy: UniquePolicy = UniquePolicy.REJECT
    window_seconds: (
        Annotated[
            float,
            Field(
                gt=0,
                le=MAX_UNIQUE_WINDOW_SECONDS,
                description="Required with `debounce`, not allowed with another policy.",
            ),
            JsonNumber,
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _window(self) -> UniqueIn:
        if self.policy is UniquePolicy.DEBOUNCE and self.window_seconds is None:
            raise PydanticCustomError("missing_window", "debounce needs window_seconds")
        if self.policy is not UniquePolicy.DEBOUNCE and self.window_seconds is not None:
            raise PydanticCustomError(
                "window_without_debounce", "window_seconds is only for the debounce policy"
            )
        return self
