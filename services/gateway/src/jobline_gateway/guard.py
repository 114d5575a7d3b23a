"""The request body guard: size limit and JSON well-formedness, before any route runs.

An ASGI middleware rather than a dependency because the limit must hold while the body is
being read: a client that lies in Content-Length (or sends none, chunked) is cut off at the
limit, not after buffering whatever it sends. The body is then replayed to the app.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobline.web.problems import FieldError, problem_response


def _no_constants(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity; JSON (and PostgreSQL's jsonb) does not.
    raise ValueError(f"{name} is not valid JSON")


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True  # FastAPI would try to parse it as JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class BodyGuard:
    """413 over ``limit`` bytes (declared or actually read); 422 for a body that is not JSON."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        disconnected = False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(headers.get("content-type")):
            error = _json_error(body)
            if error is not None:
                response = problem_response(
                    scope.get("path", ""),
                    422,
                    f"The request body is not valid JSON: {error}.",
                    kind="validation",
                    title="Invalid request",
                    errors=[FieldError(field="body", location="body", pointer="", message=error)],
                )
                await response(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed and not disconnected:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            scope.get("path", ""),
            413,
            f"The request body exceeds {self.limit} bytes.",
            kind="body-too-large",
        )
        # Tell the client we will not read the rest of an oversized body.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _json_error(body: bytes) -> str | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    try:
        value: Any = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply"
    del value
    return None
