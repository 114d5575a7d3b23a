"""RFC 9457 problem details: every 4xx/5xx a Jobline API sends is ``application/problem+json``.

Routes raise :class:`ProblemError`; the handlers installed by :func:`install` turn it, request
validation errors and Starlette's own 404/405 into problems. :func:`responses` documents a
route's error statuses, and :func:`openapi_problem_content` rewrites them in the OpenAPI
document to the problem media type.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, Final
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobline.core.quotas import QuotaExceeded
from jobline.core.tokens import retry_after_header

MEDIA_TYPE: Final = "application/problem+json"
TYPE_BASE: Final = "urn:jobline:problem:"

log = logging.getLogger(__name__)


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

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = None
    job_id: UUID | None = Field(
        default=None, description="The job a conflict is about (e.g. the unique key's holder)."
    )


class ProblemError(Exception):
    """Raised anywhere in a request: becomes a problem response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
        job_id: UUID | None = None,
    ) -> None:
        super().__init__(detail)
        self.job_id = job_id
        self.status = status
        self.detail = detail
        self.kind = kind or _slug(status)
        self.title = title or HTTPStatus(status).phrase
        self.errors = list(errors)
        self.headers = headers or {}


def _slug(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")


def problem_response(
    instance: str,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
    job_id: UUID | None = None,
) -> JSONResponse:
    body = Problem(
        type=TYPE_BASE + (kind or _slug(status)),
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors) or None,
        job_id=job_id,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def validation_errors(raw: Iterable[Any]) -> list[FieldError]:
    """pydantic/FastAPI error dicts as field errors; body locations become JSON pointers."""
    out = []
    for err in raw:
        loc = [str(p) for p in err.get("loc", ())]
        location = loc[0] if loc else "body"
        path = loc[1:]
        if err.get("type") == "json_invalid":
            path = []  # the position of a JSON syntax error, not a field
        pointer = None
        if location == "body":
            pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)
        out.append(
            FieldError(
                field=".".join(path) or location,
                location=location,
                pointer=pointer,
                message=str(err.get("msg", "invalid")),
            )
        )
    return out


def install(app: FastAPI) -> None:
    """Register the handlers that make every error response a problem."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            request.url.path,
            exc.status,
            exc.detail,
            kind=exc.kind,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
            job_id=exc.job_id,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(exc.errors())
        named = ", ".join(dict.fromkeys(e.field for e in errors))
        return problem_response(
            request.url.path,
            422,
            f"The request is invalid: {named}.",
            kind="validation",
            title="Invalid request",
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        if status == 400:
            # FastAPI's answer to a body it could not decode: for us a malformed body is 422.
            status = 422
        return problem_response(
            request.url.path, status, str(exc.detail), headers=dict(exc.headers or {})
        )

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request.url.path, 500, "An unexpected error occurred.")

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_error)


_DESCRIPTIONS: Final = {
    401: "Missing, malformed, unknown, revoked or expired API key.",
    403: "The API key lacks the scope this route needs.",
    404: "No such resource for this tenant.",
    409: "The job's state does not allow this action, or a unique key is held (`job_id`).",
    413: "The request body exceeds the configured limit.",
    422: "Invalid request: malformed JSON, unknown field, bad type or value"
    " (each named in `errors`), or an Idempotency-Key reused with a different body.",
    429: "Rate limit (of the key, the address or the tenant's quota) exceeded; see Retry-After.",
    500: "Unexpected server error.",
    503: "PostgreSQL is unavailable.",
}

# Every /v1 route can answer these: auth, body guard, validation, rate limit, failures.
COMMON: Final = (401, 403, 413, 422, 429, 500, 503)


def responses(*extra: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: its own error statuses plus :data:`COMMON`."""
    codes = sorted({*COMMON, *extra})
    return {c: {"model": Problem, "description": _DESCRIPTIONS[c]} for c in codes}


def openapi_problem_content(schema: dict[str, Any]) -> dict[str, Any]:
    """Document every 4xx/5xx response as ``application/problem+json`` (as it is sent)."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for code, response in operation.get("responses", {}).items():
                if str(code)[0] in "45" and "content" in response:
                    content = response["content"]
                    media = content.pop("application/json", None)
                    if media is not None:
                        content[MEDIA_TYPE] = media
    return schema


def document_unmatched_paths(schema: dict[str, Any]) -> dict[str, Any]:
    """A path whose parameter the router cannot match (a name with a line break in it, say)
    is answered 404 by the router before the route's own validation: document that 404 on
    every operation with a path parameter that does not list one already."""
    for path, item in schema.get("paths", {}).items():
        if "{" not in path:
            continue
        for operation in item.values():
            if isinstance(operation, dict):
                operation.setdefault("responses", {}).setdefault(
                    "404",
                    {
                        "description": "No route matches this path (e.g. a path parameter "
                        "holding a line break).",
                        "content": {
                            MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                        },
                    },
                )
    return schema


def quota_problem(exc: QuotaExceeded) -> ProblemError:
    """A tenant quota's refusal: 429 with Retry-After when waiting helps, else 422."""
    if exc.retry_after is not None:
        return ProblemError(
            429,
            f"Quota {exc.quota}: {exc}.",
            kind="quota-exceeded",
            headers={"Retry-After": retry_after_header(exc.retry_after)},
        )
    return ProblemError(422, f"Quota {exc.quota}: {exc}.", kind="quota-exceeded")
