import pytest

from jobline.core.errors import ConfigError
from jobline.settings import DatabaseSettings, KafkaSettings, asyncpg_url, load, plain_url


def test_missing_variables_are_named(monkeypatch):
    monkeypatch.delenv("JOBLINE_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="JOBLINE_DATABASE_URL: Field required"):
        load(DatabaseSettings)


def test_a_bad_value_fails_fast_with_the_variable(monkeypatch):
    monkeypatch.setenv("JOBLINE_DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigError, match=r"JOBLINE_DATABASE_URL: .*postgresql"):
        load(DatabaseSettings)
    monkeypatch.setenv("JOBLINE_KAFKA_BOOTSTRAP", "h:1")
    monkeypatch.setenv("JOBLINE_TOPIC_PARTITIONS", "0")
    with pytest.raises(ConfigError, match="JOBLINE_TOPIC_PARTITIONS"):
        load(KafkaSettings)


def test_environment_is_read_with_the_prefix(monkeypatch):
    monkeypatch.setenv("JOBLINE_KAFKA_BOOTSTRAP", "broker:9092")
    monkeypatch.setenv("JOBLINE_TOPIC_PREFIX", "acme")
    settings = load(KafkaSettings)
    assert settings.kafka_bootstrap == "broker:9092"
    assert settings.topic_prefix == "acme"


def test_url_forms():
    assert asyncpg_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert asyncpg_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert plain_url("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"
