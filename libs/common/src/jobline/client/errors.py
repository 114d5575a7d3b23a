"""What the client raises: one root, :class:`GatewayError`, and a class per kind of answer.

Every error answer of the gateway is RFC 9457 problem+json; it is raised as an
:class:`ApiError` subclass carrying the status and the parsed problem, so callers (the CLI)
print one line that names the problem and branch on the class, not on numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobline.api.problems import Problem

if TYPE_CHECKING:
    from jobline.api.jobs import JobOut


class GatewayError(Exception):
    """The gateway refused the request or could not be reached."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or "")


class ConfigurationError(GatewayError):
    """The client is not configured: no gateway URL or no API key."""


class GatewayUnreachable(GatewayError):
    """No answer from the gateway (connection refused, timed out), even after retries."""

    def __init__(self, message: str, *, url: str, attempts: int) -> None:
        super().__init__(message)
        self.url = url
        self.attempts = attempts


class ApiError(GatewayError):
    """The gateway answered with an error status (4xx/5xx)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        problem: Problem,
        method: str,
        path: str,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem
        self.method = method
        self.path = path
        self.attempts = attempts
        self.retry_after = retry_after


class InvalidRequest(ApiError):
    """422 (or 400/413): the request was malformed or broke a rule; ``problem.errors`` names
    the fields."""


class Unauthorized(ApiError):
    """401: the API key is missing, unknown, revoked or expired."""


class Forbidden(ApiError):
    """403: the API key lacks the scope this call needs."""


class NotFound(ApiError):
    """404: no such job, schedule or key for this tenant."""


class RouteNotServed(NotFound):
    """The gateway does not serve this route (yet): it answered 404/405 for the path itself,
    not for a resource. A newer gateway is needed for this call."""


class Conflict(ApiError):
    """409: the resource's state does not allow this (e.g. cancel a finished job)."""


class RateLimited(ApiError):
    """429 after the client's own retries; ``retry_after`` says when to try again."""


class ServerError(ApiError):
    """5xx after the client's own retries."""


class WaitTimeout(GatewayError):
    """The job did not finish within the time given to ``wait``."""

    def __init__(self, message: str, *, job: JobOut) -> None:
        super().__init__(message)
        self.job = job


class BatchIncomplete(GatewayError):
    """A chunked batch stopped part-way: ``accepted`` holds the jobs of the chunks that were
    accepted. Calling ``submit_batch`` again with the same jobs and ``idempotency_key`` resumes
    it: the accepted chunks are replayed, not submitted twice."""

    def __init__(
        self, message: str, *, accepted: list[JobOut], idempotency_key: str, cause: GatewayError
    ) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.idempotency_key = idempotency_key
        self.cause = cause


def error_class(status: int) -> type[ApiError]:
    """The exception class for an HTTP error status."""
    if status in (400, 413, 422):
        return InvalidRequest
    return _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}
