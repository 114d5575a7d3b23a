"""Production mode: placeholder secrets refused, docs off by default, TLS settings (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobline.core import production
from jobline.core.errors import ConfigError
from jobline.settings import (
    DatabaseSettings,
    KafkaSettings,
    RuntimeSettings,
    check_production,
    load,
    with_tls,
)


class _Service(RuntimeSettings, DatabaseSettings, KafkaSettings):
    pass


GOOD = "postgresql://jobline:Xk29dmq81LpZ@db.internal:5432/jobline"


@pytest.mark.parametrize(
    ("secret", "placeholder"),
    [
        ("postgres", True),
        ("CHANGEME", True),
        ("please-change-me-now", True),
        ("", True),
        ("Xk29dmq81LpZ", False),
    ],
)
def test_placeholders(secret: str, placeholder: bool) -> None:
    assert production.is_placeholder(secret) is placeholder


def test_secret_problems_name_the_variable() -> None:
    problems = production.secret_problems(
        {"A": "password", "B": "short1", "C": None, "D": "x" * 20}
    )
    assert problems == ["A: a placeholder or default secret", "B: shorter than 12 characters"]
    assert production.url_password("postgresql://u:p%40ss@h/db") == "p@ss"
    assert production.url_password("postgresql://h/db") is None


def test_prod_refuses_a_placeholder_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBLINE_ENV", "prod")
    monkeypatch.setenv("JOBLINE_KAFKA_BOOTSTRAP", "k:9092")
    monkeypatch.setenv("JOBLINE_DATABASE_URL", "postgresql://jobline:postgres@db/jobline")
    with pytest.raises(ConfigError, match="JOBLINE_DATABASE_URL \\(password\\): a placeholder"):
        load(_Service)
    monkeypatch.setenv("JOBLINE_DATABASE_URL", GOOD)
    monkeypatch.setenv("JOBLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("JOBLINE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("JOBLINE_KAFKA_SASL_USERNAME", "jobline")
    monkeypatch.setenv("JOBLINE_KAFKA_SASL_PASSWORD", "changeme")
    with pytest.raises(ConfigError, match="JOBLINE_KAFKA_SASL_PASSWORD"):
        load(_Service)
    monkeypatch.setenv("JOBLINE_KAFKA_SASL_PASSWORD", "a-real-long-secret-9f8e")
    settings = load(_Service)
    assert settings.production
    assert not settings.serve_docs


def test_dev_keeps_placeholders_and_docs() -> None:
    settings = _Service(database_url="postgresql://u:postgres@h/db", kafka_bootstrap="k:1")
    check_production(settings)  # dev: fine
    assert settings.serve_docs
    prod = _Service(env="prod", docs_enabled=True, database_url=GOOD, kafka_bootstrap="k:1")
    assert prod.serve_docs


def test_sasl_needs_its_credentials() -> None:
    with pytest.raises(ValueError, match="kafka_sasl_mechanism"):
        KafkaSettings(kafka_bootstrap="k:1", kafka_security_protocol="SASL_PLAINTEXT")


def test_database_tls_settings_go_into_the_url() -> None:
    assert with_tls("postgresql://h/db", None, None) == "postgresql://h/db"
    assert (
        with_tls("postgresql://h/db?application_name=x", "verify-full", Path("/ca.pem"))
        == "postgresql://h/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fca.pem"
    )
    settings = DatabaseSettings(database_url="postgresql://h/db", db_sslmode="require")
    assert settings.plain_url == "postgresql://h/db?sslmode=require"
