"""Routes: which foreign events run which task, declared in code.

Each ``app.on_*`` decorator registers the function as a task (any ``@app.task``
option, e.g. ``queue=``) and a :class:`Route` to it. A route is plain data — the
service, its EventBridge event pattern, the task and its queue, and the service's
own identity (topic ARN, bucket, table) — so that ``sqsq infra`` can emit the
rule, subscription, notification configuration or pipe that feeds the queue.

The keyword arguments build the pattern; ``pattern=`` adds any other field of
the event (both must match). What each pattern is matched against:

=====================  ================================================================
``on_event``           the EventBridge event (``source``, ``detail-type``, ``detail``…)
``on_s3``              one record of the S3 notification (``eventName``, ``s3.bucket.name``,
                       ``s3.object.key`` — the object's key, URL-decoded: S3 sends
                       ``my+file%C3%A9.csv`` for ``my fileé.csv``; see ``shapes.s3_key``)
``on_sns``             the SNS notification (``TopicArn``, ``Subject``,
                       ``MessageAttributes.<name>.Value``)
``on_dynamodb_stream`` the stream record as Pipes sends it (``eventName``, ``eventSourceARN``,
                       ``dynamodb.NewImage…``) — the same JSON a pipe's filter uses
``route``              any other JSON object on the queue, as it is
=====================  ================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from . import patterns

if TYPE_CHECKING:
    from ..app import App
    from ..task import Task

#: ``@app.on_s3`` default: every object-created event.
DEFAULT_S3_EVENTS = ("s3:ObjectCreated:*",)
#: The stream record's ``eventName`` values.
DYNAMODB_EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})


@dataclass(frozen=True)
class Route:
    """One declared route from foreign events to a task.

    Attributes:
        service: ``"events"`` (EventBridge), ``"s3"``, ``"sns"``, ``"dynamodb"``
            (a stream through EventBridge Pipes) or ``"json"`` (any JSON object).
        pattern: the EventBridge event pattern (JSON object) events must match.
        task: the task's registered name.
        queue: the task's logical queue (where the service must send).
        topic_arn: SNS: the topic subscribed.
        bucket / prefix / suffix / events: S3: the notification configuration
            (``events`` in S3's names, e.g. ``"s3:ObjectCreated:*"``).
        table / stream_arn: DynamoDB: the table, or its stream's ARN.
    """

    service: str
    pattern: dict[str, Any]
    task: str
    queue: str
    topic_arn: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    events: tuple[str, ...] = ()
    table: str | None = None
    stream_arn: str | None = None

    @property
    def name(self) -> str:
        """The route's name (its task's), used in logs and the ``sqsq-route`` header."""
        return self.task

    def event_pattern(self) -> str:
        """The pattern as EventBridge JSON text (a rule's ``EventPattern``, a pipe's
        ``FilterCriteria`` pattern)."""
        return json.dumps(self.pattern, separators=(",", ":"), sort_keys=True)


def _values(name: str, value: str | Iterable[Any]) -> list[Any]:
    if isinstance(value, str):
        return [value]
    items = list(value)
    if not items:
        raise ConfigurationError(f"{name}: an empty list matches nothing")
    return items


def _merged(built: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """``built`` and ``extra`` (both must match), nested objects merged."""
    merged = dict(built)
    for name, value in (extra or {}).items():
        if name in merged:
            if isinstance(merged[name], dict) and isinstance(value, Mapping):
                merged[name] = _merged(merged[name], value)
                continue
            raise ConfigurationError(f"pattern field {name!r} is also set by a keyword argument")
        merged[name] = value
    return merged


def eventbridge_pattern(
    source: str | Iterable[Any] | None = None,
    detail_type: str | Iterable[Any] | None = None,
    detail: Mapping[str, Any] | None = None,
    pattern: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The event pattern of ``on_event``."""
    built: dict[str, Any] = {}
    if source is not None:
        built["source"] = _values("source", source)
    if detail_type is not None:
        built["detail-type"] = _values("detail_type", detail_type)
    if detail is not None:
        built["detail"] = dict(detail)
    return patterns.check(_merged(built, pattern))


def _s3_event_name(event: str) -> Any:
    """S3's configuration name (``s3:ObjectCreated:*``) as a matcher of the record's
    ``eventName`` (``ObjectCreated:Put``)."""
    name = event.removeprefix("s3:")
    if name.endswith(":*"):
        return {"prefix": name[:-1]}
    return name


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*")


def s3_pattern(
    bucket: str | None,
    prefix: str | None,
    suffix: str | None,
    events: Iterable[str],
    pattern: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record pattern of ``on_s3``."""
    built: dict[str, Any] = {
        "eventSource": ["aws:s3"],
        "eventName": [_s3_event_name(e) for e in _values("events", events)],
    }
    s3: dict[str, Any] = {}
    if bucket is not None:
        s3["bucket"] = {"name": [bucket]}
    if prefix or suffix:
        key = (
            {"wildcard": f"{_escape(prefix or '')}*{_escape(suffix or '')}"}
            if prefix and suffix
            else {"prefix": prefix}
            if prefix
            else {"suffix": suffix}
        )
        s3["object"] = {"key": [key]}
    if s3:
        built["s3"] = s3
    return patterns.check(_merged(built, pattern))


def sns_pattern(
    topic_arn: str | Iterable[Any] | None,
    subject: str | Iterable[Any] | None,
    message_attributes: Mapping[str, Any] | None,
    pattern: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The notification pattern of ``on_sns``; ``message_attributes`` maps a name to
    a value or a list of matchers of its ``Value``."""
    built: dict[str, Any] = {"Type": ["Notification"]}
    if topic_arn is not None:
        built["TopicArn"] = _values("topic_arn", topic_arn)
    if subject is not None:
        built["Subject"] = _values("subject", subject)
    if message_attributes:
        built["MessageAttributes"] = {
            name: {"Value": _values(f"message_attributes[{name!r}]", value)}
            for name, value in message_attributes.items()
        }
    return patterns.check(_merged(built, pattern))


def dynamodb_pattern(
    table: str | None,
    stream_arn: str | None,
    event_name: str | Iterable[str] | None,
    pattern: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stream-record pattern of ``on_dynamodb_stream``."""
    built: dict[str, Any] = {"eventSource": ["aws:dynamodb"]}
    if stream_arn is not None:
        built["eventSourceARN"] = [stream_arn]
    elif table is not None:
        table_arn = (
            f"arn:aws*:dynamodb:*:*:table/{_escape(table)}"  # the stream's ARN, or the table's
        )
        built["eventSourceARN"] = [{"wildcard": table_arn}, {"wildcard": f"{table_arn}/stream/*"}]
    if event_name is not None:
        names = _values("event_name", event_name)
        unknown = set(names) - DYNAMODB_EVENT_NAMES
        if unknown:
            raise ConfigurationError(
                f"event_name {sorted(unknown)}: a stream record's eventName is one of "
                f"{sorted(DYNAMODB_EVENT_NAMES)}"
            )
        built["eventName"] = names
    return patterns.check(_merged(built, pattern))


def declare(
    app: App,
    service: str,
    pattern: dict[str, Any],
    options: dict[str, Any],
    **identity: Any,
) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
    """The decorator of ``app.on_*``: registers the task, then its route."""
    from . import install

    router = install(app)

    def register(fn: Callable[..., Any]) -> Task[Any, Any]:
        decorate: Any = app.task(**options)  # unknown options raise ConfigurationError
        task: Task[Any, Any] = decorate(fn)
        router.add(Route(service, pattern, task.name, task.queue, **identity))
        return task

    return register
