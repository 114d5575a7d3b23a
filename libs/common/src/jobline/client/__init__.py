"""A small typed client of the gateway's REST API (httpx, synchronous): jobs and schedules.

Every error answer of the gateway is RFC 9457 problem+json; it is raised as
:class:`GatewayError` carrying the status and the problem's detail, so callers (the CLI)
print one line that names the problem.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

import httpx


DEFAULT_URL: Final = "http://127.0.0.1:8000"
KEY_FILE: Final = "dev-api-key"  # written by `jobline dev` into its data dir

Json = dict[str, Any]


class GatewayError(Exception):
    """The gateway refused the request or could not be reached."""

    def __init__(self, message: str, status: int | None = None, problem: Json | None = None):
        super().__init__(message)
        self.status = status
        self.problem = problem or {}


def gateway_url(env: Mapping[str, str] | None = None) -> str:
    """JOBLINE_GATEWAY_URL, else the local gateway on JOBLINE_GATEWAY_PORT (default 8000)."""
    env = os.environ if env is None else env
    if url := env.get("JOBLINE_GATEWAY_URL"):
        return url.rstrip("/")
    if port := env.get("JOBLINE_GATEWAY_PORT"):
        return f"http://127.0.0.1:{port}"
    return DEFAULT_URL


def api_key(env: Mapping[str, str] | None = None) -> str:
    """JOBLINE_API_KEY, else the dev stack's key (``<JOBLINE_DATA_DIR>/dev-api-key``)."""
    env = os.environ if env is None else env
    if key := env.get("JOBLINE_API_KEY"):
        return key.strip()
    path = Path(env.get("JOBLINE_DATA_DIR", ".jobline")) / KEY_FILE
    try:
        return path.read_text().strip()
    except OSError:
        raise GatewayError(
            f"no API key: set JOBLINE_API_KEY or run the dev stack (no {path})"
        ) from None


class Client:
    """``with Client(url, key) as c: c.create_schedule({...})``; methods return the JSON."""

    def __init__(
        self,
        base_url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url or gateway_url(),
            headers={"Authorization": f"Bearer {key or api_key()}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- jobs -------------------------------------------------------------------------

    def submit_job(self, job: Json, *, idempotency_key: str | None = None) -> Json:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json("POST", "/v1/jobs", json=job, headers=headers)

    def get_job(self, job_id: str) -> Json:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def list_jobs(self, **filters: Any) -> Json:
        """One page: ``{"jobs": [...], "next_cursor": ...}``; filters as the API names them."""
        return self._json("GET", "/v1/jobs", params=_params(filters))

    def cancel_job(self, job_id: str) -> Json:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    # --- schedules --------------------------------------------------------------------

    def create_schedule(self, schedule: Json) -> Json:
        return self._json("POST", "/v1/schedules", json=schedule)

    def list_schedules(
        self, *, name: str | None = None, limit: int | None = None
    ) -> Iterator[Json]:
        """Every schedule of the tenant (following the cursor), by name."""
        cursor: str | None = None
        while True:
            page = self._json(
                "GET",
                "/v1/schedules",
                params=_params({"name": name, "limit": limit, "cursor": cursor}),
            )
            yield from page["schedules"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def get_schedule(self, schedule_id: str) -> Json:
        return self._json("GET", f"/v1/schedules/{schedule_id}")

    def find_schedule(self, id_or_name: str) -> Json:
        """By id, or else by name (names are unique per tenant)."""
        if _looks_like_uuid(id_or_name):
            return self.get_schedule(id_or_name)
        for schedule in self.list_schedules(name=id_or_name):
            return schedule
        raise GatewayError(f"no schedule named {id_or_name!r}", 404)

    def update_schedule(self, schedule_id: str, changes: Json) -> Json:
        return self._json("PATCH", f"/v1/schedules/{schedule_id}", json=changes)

    def pause_schedule(self, schedule_id: str) -> Json:
        return self._json("POST", f"/v1/schedules/{schedule_id}/pause")

    def resume_schedule(self, schedule_id: str) -> Json:
        return self._json("POST", f"/v1/schedules/{schedule_id}/resume")

    def delete_schedule(self, schedule_id: str) -> None:
        self._request("DELETE", f"/v1/schedules/{schedule_id}")

    def next_fires(self, schedule_id: str, count: int = 5, after: str | None = None) -> Json:
        params = _params({"count": count, "after": after})
        return self._json("GET", f"/v1/schedules/{schedule_id}/next", params=params)

    def schedule_jobs(self, schedule_id: str, **page: Any) -> Json:
        return self._json("GET", f"/v1/schedules/{schedule_id}/jobs", params=_params(page))

    # --- transport --------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        return cast(Json, self._request(method, path, **kwargs).json())

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayError(f"gateway at {self._http.base_url} unreachable: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response


def _error(response: httpx.Response) -> GatewayError:
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if isinstance(problem, dict) and "detail" in problem:
        message = str(problem["detail"])
        fields = [e.get("field") for e in problem.get("errors") or [] if isinstance(e, dict)]
        if fields and "invalid: " not in message:
            message += f" ({', '.join(str(f) for f in fields)})"
        return GatewayError(f"{response.status_code}: {message}", response.status_code, problem)
    return GatewayError(f"{response.status_code}: {response.text[:200]}", response.status_code)


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


__all__ = ["Client", "GatewayError", "api_key", "gateway_url"]
