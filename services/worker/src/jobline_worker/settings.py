"""Settings of the worker (env prefix `JOBLINE_`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from jobline.settings import DatabaseSettings, HttpSettings, KafkaSettings, RuntimeSettings


class Settings(RuntimeSettings, DatabaseSettings, KafkaSettings, HttpSettings):
    """Everything the worker reads from the environment, validated at start."""

    worker_port: Annotated[int, Field(ge=1, le=65535)] = 8003
