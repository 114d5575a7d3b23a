"""The Kafka edge: client factories, topic creation and the readiness probe.

Producers never use idempotence or transactions: the embedded broker (Tansu) rejects
InitProducerId, and duplicates are absorbed by the guarded claim in PostgreSQL anyway.
Consumers commit manually, after the claim is durable (see ARCHITECTURE.md, Delivery).

The client factories must be called inside a running event loop (aiokafka binds to it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context

from jobline.core.errors import DependencyUnavailable, TopicError
from jobline.settings import KafkaSettings

# Batch for a few milliseconds: the relay publishes many rows per claim and waits for the acks.
LINGER_MS = 5


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """SASL and TLS options of every aiokafka client (producer, consumer, admin, probe)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    return options


def make_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas; not started."""
    options: dict[str, Any] = {
        **security_options(settings),
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.kafka_client_id,
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": LINGER_MS,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }
    return AIOKafkaProducer(**(options | overrides))


def make_consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer with manual commits that starts from the earliest offset; not started."""
    options: dict[str, Any] = {
        **security_options(settings),
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.kafka_client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    return AIOKafkaConsumer(*topics, **(options | overrides))


async def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    partitions: int | None = None,
    *,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics of ``names`` that do not exist yet; return the ones created.

    Lists first because some brokers (Tansu) accept creating an existing topic silently.
    Existing topics are left as they are, whatever their partition count.
    """
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(
        **security_options(settings),
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=settings.kafka_client_id,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        count = partitions or settings.topic_partitions
        response = await admin.create_topics(
            [NewTopic(name, count, replication_factor) for name in missing]
        )
    except KafkaError as exc:
        raise _unreachable(settings, exc) from exc
    finally:
        await admin.close()
    created = []
    for topic, code, *rest in response.topic_errors:
        error = for_code(code) if code else None
        if error is None:
            created.append(topic)
        elif error is not TopicAlreadyExistsError:  # lost a race with another replica
            detail = rest[0] if rest and rest[0] else error.message
            raise TopicError(f"cannot create topic {topic!r}: {detail}")
    return created


async def ensure_topics_sized(
    settings: KafkaSettings, partitions: Mapping[str, int | None]
) -> list[str]:
    """Like :func:`ensure_topics`, each topic with its own partition count (None: the
    deployment's default), e.g. the work topics of declared queues."""
    by_count: dict[int | None, list[str]] = {}
    for name, count in partitions.items():
        by_count.setdefault(count, []).append(name)
    created = []
    for count, names in by_count.items():
        created += await ensure_topics(settings, names, count)
    return created


async def check_broker(settings: KafkaSettings, timeout: float = 3.0) -> None:  # noqa: ASYNC109
    """Raise ``DependencyUnavailable`` unless the broker answers a metadata request in time."""
    client = AIOKafkaClient(
        **security_options(settings),
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=settings.kafka_client_id,
        request_timeout_ms=max(int(timeout * 1000), 1),
    )
    try:
        async with asyncio.timeout(timeout):
            await client.bootstrap()
    except TimeoutError as exc:
        raise _unreachable(settings, f"no answer within {timeout:g}s") from exc
    except (KafkaError, OSError) as exc:
        raise _unreachable(settings, exc) from exc
    finally:
        await client.close()


def _unreachable(settings: KafkaSettings, reason: object) -> DependencyUnavailable:
    return DependencyUnavailable(f"broker at {settings.kafka_bootstrap} unreachable: {reason}")


async def assignable_partitions(
    consumer: AIOKafkaConsumer, topic: str, *, attempts: int = 20
) -> list[TopicPartition]:
    """Every partition of ``topic``, for manual assignment; [] if the topic does not exist.

    A started consumer knows the topics that existed when it connected; one created since
    (by a relay starting beside it) shows after a metadata refresh, which aiokafka offers
    only on its client.
    """
    for attempt in range(attempts):
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if attempt < attempts - 1:
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.05 * attempt)
    return []
