"""Typed errors of the core library. Each docstring is the default message."""

from __future__ import annotations


class JoblineError(Exception):
    """A Jobline error occurred."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(JoblineError):
    """The configuration is invalid."""


class IllegalTransition(JoblineError):
    """This event is not allowed in the job's current state."""


class StaleEvent(IllegalTransition):
    """This event belongs to another attempt or lease than the job's current one."""


class InvalidEvent(JoblineError):
    """The CloudEvent is malformed."""


class DependencyUnavailable(JoblineError):
    """A required server (PostgreSQL or the broker) is unreachable."""


class TopicError(JoblineError):
    """The broker refused to create a topic."""


class InvalidSchedule(JoblineError):
    """The schedule is invalid (bad cron expression, time zone, interval or bounds)."""
