"""Configuration from the environment (prefix ``JOBLINE_``), one class per concern.

Every service builds its settings once at start through :func:`load`, which turns a
pydantic validation error into a :class:`ConfigError` naming the offending variable.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobline.core import production
from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.errors import ConfigError
from jobline.core.jobdefaults import PLATFORM_DEFAULTS, JobDefaults
from jobline.core.webhooks.addresses import AddressPolicy

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
    # /docs, /redoc and /openapi.json: on in dev and test, off in prod unless set to true.
    docs_enabled: bool | None = None

    @property
    def production(self) -> bool:
        return self.env is Environment.PROD

    @property
    def serve_docs(self) -> bool:
        return self.docs_enabled if self.docs_enabled is not None else not self.production


class DatabaseSettings(_Base):
    """PostgreSQL, the source of truth for job state."""

    database_url: str
    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    db_max_overflow: Annotated[int, Field(ge=0, le=200)] = 10
    db_connect_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 5.0
    # TLS to PostgreSQL (libpq's names; asyncpg reads them from the URL): e.g. verify-full
    # with the CA that signed the server's certificate. Unset: whatever the URL says.
    db_sslmode: (
        Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None
    ) = None
    db_sslrootcert: Path | None = None

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
        """The URL as asyncpg and libpq accept it, with the TLS settings in its query."""
        return with_tls(plain_url(self.database_url), self.db_sslmode, self.db_sslrootcert)


class KafkaSettings(_Base):
    """The Kafka-protocol broker that carries work and events."""

    kafka_bootstrap: str
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] = "jobline"
    topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 8
    kafka_request_timeout_ms: Annotated[int, Field(ge=1000)] = 15000
    kafka_client_id: str = "jobline"
    # SASL and TLS, passed to every producer, consumer and admin client Jobline builds.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "kafka_security_protocol SASL_* needs kafka_sasl_mechanism, "
                "kafka_sasl_username and kafka_sasl_password"
            )
        return self


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


class WebhookAddressSettings(_Base):
    """Where webhooks may be delivered (the gateway checks a URL when it is saved, the relay
    every address at delivery): public addresses only, unless allowed here."""

    # Loopback, private, link-local and other non-public addresses too (development, tests).
    webhook_allow_private_addresses: bool = False
    # Comma-separated networks always allowed, e.g. "10.20.0.0/16,fd00:1::/64".
    webhook_allowed_networks: str = ""

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in _items(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network: {item!r} ({exc})") from None
        return value

    @property
    def webhook_address_policy(self) -> AddressPolicy:
        return AddressPolicy.of(
            self.webhook_allow_private_addresses, _items(self.webhook_allowed_networks)
        )


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def asyncpg_url(url: str) -> str:
    """``postgresql://...`` in SQLAlchemy's ``postgresql+asyncpg://`` form."""
    for scheme in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme) :]
    return url


def plain_url(url: str) -> str:
    """``postgresql+asyncpg://...`` back in the plain form asyncpg and psql accept."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_tls(url: str, sslmode: str | None, rootcert: Path | None) -> str:
    """``url`` with ``sslmode``/``sslrootcert`` set in its query (settings win over the URL)."""
    if sslmode is None and rootcert is None:
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if sslmode is not None:
        query["sslmode"] = sslmode
    if rootcert is not None:
        query["sslrootcert"] = str(rootcert)
    return urlunsplit(parts._replace(query=urlencode(query)))


def secrets_of(settings: BaseSettings) -> dict[str, str | None]:
    """The configured secrets of ``settings``, by environment variable."""
    found: dict[str, str | None] = {}
    if isinstance(settings, DatabaseSettings):
        found[f"{PREFIX}DATABASE_URL (password)"] = production.url_password(settings.database_url)
    if isinstance(settings, KafkaSettings) and settings.kafka_sasl_password is not None:
        found[f"{PREFIX}KAFKA_SASL_PASSWORD"] = settings.kafka_sasl_password.get_secret_value()
    return found


def check_production(settings: BaseSettings) -> None:
    """In prod, refuse placeholder or default secrets (:class:`ConfigError` naming them)."""
    if not isinstance(settings, RuntimeSettings) or not settings.production:
        return
    problems = production.secret_problems(secrets_of(settings))
    if problems:
        raise ConfigError("refusing to start with JOBLINE_ENV=prod: " + "; ".join(problems))


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from the environment, failing with one line that names the variable;
    in prod, placeholder secrets are refused too."""
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "?"
            problems.append(f"{PREFIX}{field.upper()}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    check_production(settings)
    return settings
