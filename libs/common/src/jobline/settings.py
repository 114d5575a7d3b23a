"""Configuration from the environment (prefix ``JOBLINE_``), one class per concern.

Every service builds its settings once at start through :func:`load`, which turns a
pydantic validation error into a :class:`ConfigError` naming the offending variable.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.errors import ConfigError
from jobline.core.jobdefaults import PLATFORM_DEFAULTS, JobDefaults

_D = PLATFORM_DEFAULTS

PREFIX = "JOBLINE_"


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)


class RuntimeSettings(_Base):
    """Where we run and where local state lives."""

    env: Environment = Environment.DEV
    data_dir: Path = Path(".jobline")
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")


class DatabaseSettings(_Base):
    """PostgreSQL, the source of truth for job state."""

    database_url: str
    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    db_max_overflow: Annotated[int, Field(ge=0, le=200)] = 10
    db_connect_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 5.0

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @property
    def async_url(self) -> str:
        """The URL in SQLAlchemy's asyncpg dialect form."""
        return asyncpg_url(self.database_url)

    @property
    def plain_url(self) -> str:
        """The URL as asyncpg and libpq accept it."""
        return plain_url(self.database_url)


class KafkaSettings(_Base):
    """The Kafka-protocol broker that carries work and events."""

    kafka_bootstrap: str
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] = "jobline"
    topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 8
    kafka_request_timeout_ms: Annotated[int, Field(ge=1000)] = 15000
    kafka_client_id: str = "jobline"


class JobDefaultsSettings(_Base):
    """Platform defaults for a job that names none and whose type has no tenant policy."""

    job_default_max_attempts: Annotated[int, Field(ge=1, le=1000)] = _D.max_attempts
    job_default_timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = _D.timeout_seconds
    job_default_backoff_kind: BackoffKind = _D.backoff.kind
    job_default_backoff_base_seconds: Annotated[float, Field(ge=0, le=86400)] = (
        _D.backoff.base_seconds
    )
    job_default_backoff_max_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = (
        _D.backoff.max_seconds
    )
    # Finished jobs (and their attempts) stay queryable this long, then may be purged.
    job_retention_seconds: Annotated[float, Field(gt=0)] = 7 * 86400.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.job_default_backoff_max_seconds < self.job_default_backoff_base_seconds:
            raise ValueError("job_default_backoff_max_seconds must be >= the base")
        return self

    @property
    def job_defaults(self) -> JobDefaults:
        return JobDefaults(
            max_attempts=self.job_default_max_attempts,
            timeout_seconds=self.job_default_timeout_seconds,
            backoff=BackoffPolicy(
                kind=self.job_default_backoff_kind,
                base_seconds=self.job_default_backoff_base_seconds,
                max_seconds=self.job_default_backoff_max_seconds,
                multiplier=_D.backoff.multiplier,
            ),
        )


class HttpSettings(_Base):
    """The host each service's HTTP server binds; ports are per service."""

    http_host: str = "127.0.0.1"


def asyncpg_url(url: str) -> str:
    """``postgresql://...`` in SQLAlchemy's ``postgresql+asyncpg://`` form."""
    for scheme in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme) :]
    return url


def plain_url(url: str) -> str:
    """``postgresql+asyncpg://...`` back in the plain form asyncpg and psql accept."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from the environment, failing with one line that names the variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "?"
            problems.append(f"{PREFIX}{field.upper()}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
