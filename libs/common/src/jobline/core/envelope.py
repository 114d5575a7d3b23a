"""The work message a worker receives: what to run, for whom, and which attempt it is.

The envelope is the value of a message on ``<prefix>.jobs.<queue>`` (key = job id). Its
``attempt`` is the attempt this message starts; the worker's claim is guarded on it, so a
stale or duplicated message can never start a job twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from jobline.core import jsontext
from jobline.core.errors import JoblineError

ENVELOPE_VERSION = 1


class InvalidEnvelope(JoblineError):
    """The work message cannot be decoded."""


@dataclass(frozen=True, slots=True)
class WorkEnvelope:
    """One attempt of one job, as carried on a work topic."""

    id: UUID
    tenant: str
    type: str
    queue: str
    attempt: int
    payload: dict[str, Any]
    timeout_seconds: float
    max_attempts: int
    deadline: str | None = None
    traceparent: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # The job as it was when the message was written (see Job.envelope): optional, so a
    # message from before these fields, or from another producer, still decodes.
    sequence: int | None = None
    budget_start: int = 0
    priority: int = 0
    backoff: dict[str, Any] | None = None
    created_at: str | None = None
    run_at: str | None = None
    # The workflow the job is a node of: its outcome then also resolves its dependants, and
    # its handler receives its parents' results (jobline.core.workflows).
    workflow: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": ENVELOPE_VERSION,
            "id": str(self.id),
            "tenant": self.tenant,
            "type": self.type,
            "queue": self.queue,
            "attempt": self.attempt,
            "payload": self.payload,
            "timeout_seconds": self.timeout_seconds,
            "max_attempts": self.max_attempts,
            "deadline": self.deadline,
            "traceparent": self.traceparent,
            "metadata": self.metadata,
            "sequence": self.sequence,
            "budget_start": self.budget_start,
            "priority": self.priority,
            "backoff": self.backoff,
            "created_at": self.created_at,
            "run_at": self.run_at,
            **({"workflow": self.workflow} if self.workflow is not None else {}),
        }

    def encode(self) -> bytes:
        return jsontext.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> WorkEnvelope:
        if not isinstance(data, dict):
            raise InvalidEnvelope("envelope is not a JSON object")
        try:
            envelope = cls(
                id=UUID(str(data["id"])),
                tenant=_str(data, "tenant"),
                type=_str(data, "type"),
                queue=_str(data, "queue"),
                attempt=_int(data, "attempt"),
                payload=_obj(data, "payload"),
                timeout_seconds=float(data["timeout_seconds"]),
                max_attempts=_int(data, "max_attempts"),
                deadline=data.get("deadline"),
                traceparent=data.get("traceparent"),
                metadata=data.get("metadata") or {},
                sequence=_optional_int(data, "sequence"),
                budget_start=_optional_int(data, "budget_start") or 0,
                priority=_optional_int(data, "priority") or 0,
                backoff=data.get("backoff"),
                created_at=data.get("created_at"),
                run_at=data.get("run_at"),
                workflow=data.get("workflow"),
            )
        except KeyError as exc:
            raise InvalidEnvelope(f"envelope lacks field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidEnvelope(f"envelope field has a bad value: {exc}") from None
        if envelope.attempt < 1:
            raise InvalidEnvelope("envelope attempt must be >= 1")
        return envelope

    @classmethod
    def decode(cls, raw: bytes | None) -> WorkEnvelope:
        if raw is None:
            raise InvalidEnvelope("message has no value")
        try:
            data = jsontext.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:  # orjson's and json's decode errors
            raise InvalidEnvelope(f"message is not JSON: {exc}") from None
        return cls.from_dict(data)


def _str(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string")
    return value


def _int(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer")
    return value


def _optional_int(data: dict[str, Any], name: str) -> int | None:
    return None if data.get(name) is None else _int(data, name)


def _obj(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data[name]
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a JSON object")
    return value
