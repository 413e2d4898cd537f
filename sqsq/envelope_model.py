"""The envelope as a pydantic model: the one decoder and the JSON Schema source.

:mod:`sqsq.envelope` encodes without pydantic (a producer never imports it) and
decodes through this model; ``sqsq.envelope.Envelope`` and ``sqsq.Envelope`` are
this class, loaded on first use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .envelope import (
    MAX_ID_CHARS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_TASK_NAME_CHARS,
    MAX_TASK_TOKEN_CHARS,
    VERSION,
)


class Envelope(BaseModel):
    """One task invocation on the wire (immutable). Fields are documented below
    and in the JSON Schema (``sqsq schema``)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        title="sqsq task envelope",
        use_attribute_docstrings=True,
        json_schema_extra={
            "description": "A sqsq task message. Minimum: "
            '{"task": "<registered name>", "args": [...], "kwargs": {...}}.'
        },
    )

    version: Literal[1] = VERSION
    """Wire-format version; workers refuse versions they do not know."""
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    """Task id; omitted by foreign producers, then the SQS MessageId is used."""
    task: str = Field(min_length=1, max_length=MAX_TASK_NAME_CHARS)
    """Registered task name, e.g. "orders.charge"."""
    args: list[Any] = Field(default_factory=list)
    """Positional arguments (JSON values)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments (JSON values)."""
    queue: str | None = None
    """Logical queue the producer sent to."""
    eta: datetime | None = None
    """Earliest time to run (ISO 8601, UTC)."""
    expires: datetime | None = None
    """Time after which the task must not run (ISO 8601, UTC)."""
    retries: int = Field(default=0, ge=0)
    """Retries that came before this message (explicit re-sends)."""
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS
    )
    """Run the body at most once per key, if set."""
    parent_id: str | None = None
    """Id of the task that enqueued this one (workflows)."""
    root_id: str | None = None
    """Id of the first task of the workflow."""
    workflow: dict[str, Any] | None = None
    """What follows this task's outcome (callbacks, errbacks, the rest of a chain,
    chord membership); read by the continuation ``sqsq.workflows`` registers."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Free-form string headers (trace context, ...)."""
    sent_at: datetime | None = None
    """When the producer enqueued it (ISO 8601, UTC)."""
    scheduled_at: datetime | None = None
    """The fire time of the schedule that sent it (EventBridge Scheduler's
    <aws.scheduler.scheduled-time>, ISO 8601, UTC); None for other tasks."""
    task_token: str | None = Field(default=None, min_length=1, max_length=MAX_TASK_TOKEN_CHARS)
    """A Step Functions task token (``"task_token.$": "$$.Task.Token"`` in a
    ``sqs:sendMessage.waitForTaskToken`` task): the task's final outcome is reported
    with SendTaskSuccess / SendTaskFailure, and its lease extensions with
    SendTaskHeartbeat (see ``sqsq/task_tokens.py``)."""

    @field_validator("eta", "expires", "sent_at", "scheduled_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Times without an offset are UTC (foreign producers often send them so)."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def task_id(self) -> str:
        """The id, which a decoded envelope always has (see :func:`sqsq.envelope.decode`).

        Raises:
            ValueError: an envelope built without an ``id`` and not decoded.
        """
        if self.id is None:
            raise ValueError("an envelope without an id: decode() fills it from the SQS MessageId")
        return self.id
