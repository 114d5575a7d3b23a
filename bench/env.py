"""The servers a benchmark runs against: embedded ones (or JOBLINE_BENCH_* URLs), one run."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

from jobline import db, migrate
from jobline.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from jobline.settings import DatabaseSettings, KafkaSettings

FAST_POSTGRES = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@dataclass(frozen=True)
class BenchEnv:
    database_url: str
    kafka_bootstrap: str
    topic_prefix: str
    work_dir: Path

    @property
    def db_settings(self) -> DatabaseSettings:
        return DatabaseSettings(database_url=self.database_url, db_pool_size=20)

    @property
    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(kafka_bootstrap=self.kafka_bootstrap, topic_prefix=self.topic_prefix)

    def service_env(self) -> dict[str, str]:
        return {
            "JOBLINE_DATABASE_URL": self.database_url,
            "JOBLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "JOBLINE_TOPIC_PREFIX": self.topic_prefix,
            "JOBLINE_ENV": "test",
            "JOBLINE_LOG_LEVEL": "WARNING",
        }

    def fresh(self) -> BenchEnv:
        """A new database and topic prefix on the same servers, so benchmarks never mix."""
        name = f"bench_{uuid4().hex[:10]}"
        server = self.database_url.rsplit("/", 1)[0] + "/postgres"
        asyncio.run(db.create_database(server, name))
        url = db.database_url(server, name)
        migrate.upgrade(url)
        return BenchEnv(url, self.kafka_bootstrap, f"bench{uuid4().hex[:8]}", self.work_dir)


@contextmanager
def bench_env() -> Iterator[BenchEnv]:
    """Embedded PostgreSQL (fsync off, as a benchmark of our code, not of the disk) + broker."""
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobline-bench-")))
        server_url = os.environ.get("JOBLINE_BENCH_DATABASE_URL")
        if not server_url:
            pg = EmbeddedPostgres(work / "pg", free_port(), settings=FAST_POSTGRES)
            pg.start()
            stack.callback(pg.stop)
            server_url = pg.url
        bootstrap = os.environ.get("JOBLINE_BENCH_KAFKA_BOOTSTRAP")
        if not bootstrap:
            broker = EmbeddedBroker(free_port(), work / "broker.log")
            broker.start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
        yield BenchEnv(server_url, bootstrap, "bench", work)
