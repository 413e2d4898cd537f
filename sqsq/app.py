"""App: the task registry, its settings and the AWS clients they share.

The App (with ``Task``) is also the facade through which the capabilities built on
the core — ``sqsq.workflows``, ``sqsq.events``, ``sqsq.schedules`` — reach it. The
core (execution, settle, the worker, the Lambda handler) never imports a capability
subpackage, not even by name at run time (``tests/test_architecture.py`` scans for
it); what it needs of one it asks the App for, through a slot the capability fills
itself::

    slot                     filled by                               asked for by
    App.router              sqsq.events.install(app): app.on_*(),   Executor.prepare (a body
                            app.route(), or event_router()          without "task")
    App.continuation        sqsq.workflows.install(app), or         settle.store / astore (an
                            follow_ups()                            envelope with "workflow")
    App.celery              sqsq.interop.install(app), or           Executor.prepare (a body
                            celery_protocol()                       that is not an envelope)
    App.payloads            sqsq.payloads.install(app) (a           the send steps (a body over
                            payload_bucket), or claim_check()       the queue's size), the worker /
                                                                    Lambda (a pointer received),
                                                                    settle (objects to delete)

A worker or Lambda function whose app module never touched a capability must still
act on what another process sent it (an envelope with a ``workflow``, an S3
notification): :meth:`App.follow_ups` and :meth:`App.event_router` are the bridge —
each returns what the slot holds, or loads the built-in capability into it on first
use (one import, in this module, never in the core). ``app.periodic_task`` and
``task.s()`` / ``app.on_*`` load their subpackages the same way, on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from . import producer
from .aws_errors import aws_boundary
from .clients import Clients
from .dynamodb import ResultStore
from .errors import ConfigurationError
from .idempotency import IdempotencyStore
from .result import AsyncResult
from .revocations import RevocationView
from .sender import Sender
from .settings import check_queue_name
from .sqs import QueueDirectory
from .task import TASK_OPTIONS, BoundTask, Task, TaskOptions

if TYPE_CHECKING:
    from collections.abc import Mapping

    import boto3
    from botocore.config import Config
    from typing_extensions import Unpack

    from .execution import Router, Translator
    from .flow.control import FlowControl
    from .payloads import ClaimCheck
    from .settle import Continuation

P = ParamSpec("P")
R = TypeVar("R")

_APP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class App:
    """A sqsq application: tasks, settings and AWS clients.

    Args:
        name: short name (letters, digits, ``-``, ``_``; ≤ 40) used in default
            resource names: queues ``<name>-<queue>``, table ``<name>-sqsq``.
        boto3_session: a ``boto3.Session`` to build clients from (credentials, region).
        botocore_config: a ``botocore.config.Config`` merged over sqsq's defaults.
        **settings: any :class:`~sqsq.settings.Settings` field, e.g. ``region_name``,
            ``endpoint_url``, ``queue_prefix``, ``table_name``, ``default_queue``,
            ``max_receive_count``, ``result_ttl_s``. Unset fields come from
            ``SQSQ_*`` environment variables, then defaults.

    Raises:
        ConfigurationError: a bad name or setting.

    Example::

        app = sqsq.App("orders")

        @app.task
        def charge(order_id: str, cents: int) -> dict: ...

        charge.delay("o-1", 500).get(timeout=30)
    """

    def __init__(
        self,
        name: str,
        *,
        boto3_session: boto3.Session | None = None,
        botocore_config: Config | None = None,
        **settings: Any,
    ) -> None:
        if not _APP_NAME.match(name):
            raise ConfigurationError(f"invalid app name {name!r}: 1-40 letters, digits, '-' or '_'")
        self.name = name
        from .settings_model import Settings  # pydantic-settings: loaded by the first App

        try:
            self.settings = Settings(**{k: v for k, v in settings.items() if v is not None})
        except ValueError as exc:
            raise ConfigurationError(f"invalid App settings: {exc}") from None
        self.tasks: dict[str, Task[Any, Any]] = {}
        #: Periodic tasks by schedule name (``sqsq.schedules.declare.PeriodicTask``).
        self.periodic_tasks: dict[str, Any] = {}
        self.clients = Clients(
            self.settings, boto3_session=boto3_session, botocore_config=botocore_config
        )
        self.directory = QueueDirectory(self.clients)
        #: Sends single calls, coalescing concurrent ones (``sqsq.sender``).
        self.sender = Sender(self.clients, self.directory, self.settings)
        self.results = ResultStore(self.clients, self.table_name, name)
        self.idempotency = IdempotencyStore(self.clients, self.table_name)
        self._revocations: RevocationView | None = None
        #: Asked about bodies that are not envelopes (``sqsq.execution.Router``);
        #: ``sqsq.events`` installs one when a route is declared or such a body
        #: arrives (:meth:`event_router`).
        self.router: Router | None = None
        #: Follows up stored outcomes whose envelope carries a ``workflow``
        #: (``sqsq.settle.Continuation``); ``sqsq.workflows`` installs it
        #: (:meth:`follow_ups`).
        self.continuation: Continuation | None = None
        #: Translates Celery messages (``sqsq.execution.Translator``); ``sqsq.interop``
        #: installs it (:meth:`celery_protocol`).
        self.celery: Translator | None = None
        #: Rate and concurrency limits (``sqsq.flow.FlowControl``), installed by
        #: :meth:`flow_control` when the app has a limit.
        self.flow: FlowControl | None = None
        if self.settings.tracing is not False and _tracing_available(self.settings.tracing):
            from .tracing import install  # OpenTelemetry's API is installed: trace

            install()
        #: The S3 claim check for large bodies and results (``sqsq.payloads``),
        #: installed at once when ``payload_bucket`` is set, or by
        #: :meth:`claim_check` when a worker first receives a pointer.
        self.payloads: ClaimCheck | None = None
        if self.settings.payload_bucket:
            self.claim_check()
        if self.settings.queue_rate_limits:
            from .flow.rates import parse_rate

            try:
                for rate in self.settings.queue_rate_limits.values():
                    parse_rate(rate)
            except ValueError as exc:
                raise ConfigurationError(f"invalid queue_rate_limits: {exc}") from None

    def __repr__(self) -> str:
        return f"<App {self.name} tasks={len(self.tasks)}>"

    @property
    def revocations(self) -> RevocationView:
        """This process's view of the app's revocations (see ``revocations.py``)."""
        if self._revocations is None:
            self._revocations = RevocationView(
                self.clients, self.table_name, self.name, self.settings.revocation_interval_s
            )
        return self._revocations

    # --- names ---------------------------------------------------------------------

    @property
    def queue_prefix(self) -> str:
        """The prefix of the app's queue names (``queue_prefix``; default ``"<app name>-"``)."""
        prefix = self.settings.queue_prefix
        return f"{self.name}-" if prefix is None else prefix

    @property
    def table_name(self) -> str:
        """The app's DynamoDB table (``table_name``; default ``"<app name>-sqsq"``)."""
        return self.settings.table_name or f"{self.name}-sqsq"

    def queue_name(self, queue: str) -> str:
        """The physical SQS queue name of a logical queue (``<prefix><queue>``).

        Raises:
            ConfigurationError: not a valid SQS queue name.
        """
        try:
            return check_queue_name(self.queue_prefix + queue)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def logical_queue(self, physical: str) -> str:
        """The logical queue of a physical SQS queue name (prefix removed)."""
        return physical.removeprefix(self.queue_prefix)

    def queues(self) -> list[str]:
        """Logical queues in use: the default queue, every task's and every periodic
        task's, sorted."""
        periodic = (p.queue for p in self.periodic_tasks.values())
        return sorted(
            {self.settings.default_queue, *(t.queue for t in self.tasks.values()), *periodic}
        )

    # --- tasks ----------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, *, bind: Literal[True], **options: Unpack[TaskOptions]
    ) -> Callable[[Callable[Concatenate[BoundTask, P], R]], Task[P, R]]: ...

    @overload
    def task(
        self, *, bind: Literal[False] = ..., **options: Unpack[TaskOptions]
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(self, fn: Any = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Register a function as a task: ``@app.task`` or ``@app.task(...)``.

        Args:
            name: registered name (default ``"module.function"``).
            queue: logical queue (default: the app's ``default_queue``).
            store_result: store the outcome in DynamoDB (default True; one write per task).
            result_ttl: seconds (or timedelta) the result stays readable
                (default: the app's ``result_ttl_s``, 1 day).
            bind: pass a :class:`~sqsq.task.BoundTask` as first argument
                (``self.request``, ``self.retry()``).
            max_retries: retries after the first attempt (default 3; None: no limit).
            autoretry_for: exception types retried automatically.
            retry_backoff: True (1 s) or a base in seconds for exponential backoff.
            retry_backoff_max: cap of the backoff, seconds (default 600).
            retry_jitter: full jitter over the backoff (default True).
            default_retry_delay: delay without backoff, seconds (default 180).
            time_limit: longest run in seconds; past it the task fails with
                TimeLimitExceeded (async: cancelled; processes: killed; threads:
                abandoned — a thread cannot be killed).
            soft_time_limit: seconds after which :class:`~sqsq.SoftTimeLimitExceeded`
                is raised inside the body (Celery's name), < ``time_limit`` when both
                are set; how each pool delivers it: ``sqsq.soft_time_limit``.
            visibility_timeout: lease of its message while it runs, seconds
                (≤ 12 h); default: the queue's visibility timeout.
            idempotency_key: ``str.format`` template over the arguments
                (``"{order_id}"``) or a callable returning the key.
            idempotency_ttl: how long a key is remembered, seconds (default 1 day).
            rate_limit: ``"100/s"``, ``"10/m"``, ``"1000/h"`` or a number per second,
                shared by all workers and Lambda handlers; ``rate_key``: per key.
            concurrency_limit: most bodies running at once across all workers
                (``concurrency_key``: per key).
            track_started: record STARTED (worker, start time) when the body starts,
                as Celery's ``track_started``: one conditional PutItem per attempt
                (default: the ``track_started`` setting, off).

        Raises:
            ConfigurationError: an unknown option, or a name already registered.
        """
        unknown = set(options) - TASK_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown task option(s) {sorted(unknown)}; known: {sorted(TASK_OPTIONS)}"
            )

        def register(function: Callable[P, R]) -> Task[P, R]:
            if not callable(function):
                raise ConfigurationError(f"@app.task needs a function, got {function!r}")
            try:
                task: Task[P, R] = Task(self, function, **options)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            if task.name in self.tasks:
                raise ConfigurationError(f"a task named {task.name!r} is already registered")
            self.tasks[task.name] = task
            return task

        return register(fn) if fn is not None else register

    # --- periodic tasks (sqsq.schedules, imported on first use) ---------------------

    def periodic_task(self, schedule: str | timedelta, **options: Any) -> Callable[[Any], Any]:
        """Register a task sent on an EventBridge schedule: ``@app.periodic_task("rate(1 hour)")``.

        Args:
            schedule: an EventBridge expression (``"rate(5 minutes)"``,
                ``"cron(0 12 * * ? *)"``, ``"at(2027-01-01T09:00:00)"``), one built by
                ``sqsq.crontab(...)`` / ``sqsq.every(...)``, or a timedelta.
            args / kwargs: the arguments of every call.
            timezone: IANA zone the expression is evaluated in (default UTC).
            flexible_window: seconds (or timedelta) EventBridge may delay a fire
                (FlexibleTimeWindow, whole minutes, 1-1440).
            start / end: aware datetimes bounding the schedule (StartDate / EndDate).
            enabled: False creates the schedule DISABLED.
            retry_attempts / max_event_age: the schedule's RetryPolicy (0-185;
                60-86400 s).
            description: the schedule's Description.
            **options: any ``@app.task`` option (``name`` also names the schedule).

        Raises:
            ConfigurationError: a bad expression (the message names the field and
                the rule), option, or a name already declared.
        """
        from .schedules.declare import periodic_task_decorator

        return periodic_task_decorator(self, schedule, options)

    def add_periodic_task(
        self, schedule: str | timedelta, task: Task[Any, Any], **options: Any
    ) -> Any:
        """Celery's ``app.add_periodic_task(schedule, task, args=..., name=...)``.

        Declares a schedule for an already registered task. ``name`` names the
        schedule (default: the task's name); the other options are those of
        :meth:`periodic_task` (``queue`` too).

        Returns:
            The :class:`~sqsq.schedules.declare.PeriodicTask`.

        Raises:
            ConfigurationError: as :meth:`periodic_task`.
        """
        from .schedules.declare import declare

        if not isinstance(task, Task):
            raise ConfigurationError(f"add_periodic_task needs a task, got {task!r}")
        return declare(self, schedule, task, **options)

    # --- routes of foreign events (sqsq.events, imported on first use) ----------------

    def on_event(
        self,
        *,
        source: str | Iterable[Any] | None = None,
        detail_type: str | Iterable[Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        pattern: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., R]], Task[Any, R]]:
        """Run the decorated task for each EventBridge event that matches, as a rule's
        SQS target, a pipe or the Scheduler sends it: ``@app.on_event(source="orders",
        detail_type="Order Placed")``. The task receives the event (annotate its
        parameter with Powertools' ``EventBridgeModel``, a pydantic model, or ``dict``)
        and runs once per event ``id``.

        Args:
            source / detail_type: the event's ``source`` / ``detail-type`` (a value, or a
                list of values / EventBridge matchers).
            detail: a pattern over the event's ``detail``.
            pattern: any other EventBridge event pattern fields (all must match).
            **options: any ``@app.task`` option (``queue=``, ``max_retries=``, ...).

        Raises:
            ConfigurationError: an invalid or unsupported pattern, or task option.
        """
        from .events.routes import declare, eventbridge_pattern

        built = eventbridge_pattern(source, detail_type, detail, pattern)
        return declare(self, "events", built, options)

    def on_s3(
        self,
        *,
        bucket: str | None = None,
        prefix: str | None = None,
        suffix: str | None = None,
        events: Iterable[str] = ("s3:ObjectCreated:*",),
        pattern: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., R]], Task[Any, R]]:
        """Run the decorated task for each record of an S3 event notification sent
        directly to the queue: ``@app.on_s3(bucket="uploads", prefix="in/")``. The
        task receives one record (Powertools' ``S3RecordModel``, or ``dict``) and runs
        once per bucket + key + ``sequencer``. ``s3:TestEvent`` is dropped.

        S3 URL-encodes the key in its notifications ("Event message structure",
        Amazon S3 User Guide); sqsq decodes it first (``urllib.parse.unquote_plus``):
        ``prefix`` / ``suffix`` match, and the task's ``s3.object.key`` holds, the
        object's real key (``"in/my report.csv"``, not ``"in/my+report.csv"``).

        Args:
            bucket: the bucket's name.
            prefix / suffix: of the object key, decoded (the object's real key, as
                ``GetObject`` takes it).
            events: S3's event types, e.g. ``["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"]``.
            pattern: more fields of the record (EventBridge pattern syntax).
            **options: any ``@app.task`` option.

        Raises:
            ConfigurationError: an invalid pattern or task option.
        """
        from .events.routes import declare, s3_pattern

        built = s3_pattern(bucket, prefix, suffix, events, pattern)
        return declare(
            self,
            "s3",
            built,
            options,
            bucket=bucket,
            prefix=prefix,
            suffix=suffix,
            events=tuple(events),
        )

    def on_sns(
        self,
        *,
        topic_arn: str | None = None,
        subject: str | Iterable[Any] | None = None,
        message_attributes: Mapping[str, Any] | None = None,
        pattern: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., R]], Task[Any, R]]:
        """Run the decorated task for each SNS notification (raw message delivery off)
        whose message is not itself an envelope or a routed event:
        ``@app.on_sns(topic_arn="arn:aws:sns:…:alerts")``. The task receives the
        notification (Powertools' ``SnsNotificationModel``, or ``dict``) and runs once
        per SNS ``MessageId``.

        Args:
            topic_arn: the topic's ARN.
            subject: the notification's ``Subject`` (value(s) or matchers).
            message_attributes: attribute name → value(s) or matchers of its ``Value``.
            pattern: more fields of the notification (EventBridge pattern syntax).
            **options: any ``@app.task`` option.

        Raises:
            ConfigurationError: an invalid pattern or task option.
        """
        from .events.routes import declare, sns_pattern

        built = sns_pattern(topic_arn, subject, message_attributes, pattern)
        return declare(self, "sns", built, options, topic_arn=topic_arn)

    def on_dynamodb_stream(
        self,
        *,
        table: str | None = None,
        stream_arn: str | None = None,
        event_name: str | Iterable[str] | None = None,
        pattern: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., R]], Task[Any, R]]:
        """Run the decorated task for each DynamoDB stream record an EventBridge pipe
        sends to the queue: ``@app.on_dynamodb_stream(table="orders",
        event_name=["INSERT"])``. The task receives the record (Powertools'
        ``DynamoDBStreamRecordModel``, or ``dict``) and runs once per ``eventID``.

        Args:
            table: the table's name (matched in the record's ``eventSourceARN``).
            stream_arn: or the stream's exact ARN.
            event_name: ``"INSERT"``, ``"MODIFY"``, ``"REMOVE"`` or a list of them.
            pattern: more fields of the record, e.g. ``{"dynamodb": {"NewImage": …}}``.
            **options: any ``@app.task`` option.

        Raises:
            ConfigurationError: an invalid pattern, event name or task option.
        """
        from .events.routes import declare, dynamodb_pattern

        built = dynamodb_pattern(table, stream_arn, event_name, pattern)
        return declare(self, "dynamodb", built, options, table=table, stream_arn=stream_arn)

    def route(
        self, pattern: Mapping[str, Any], **options: Any
    ) -> Callable[[Callable[..., R]], Task[Any, R]]:
        """Run the decorated task for any JSON object on the queue that is not an
        envelope and matches ``pattern`` (EventBridge pattern syntax), e.g. a
        producer's own events: ``@app.route({"kind": ["invoice"]})``. Also matched
        against EventBridge events, S3 records and stream records after their own
        routes. The task receives the object; no identity is known, so the task's
        own ``idempotency_key`` applies.

        Raises:
            ConfigurationError: an invalid pattern or task option.
        """
        from .events import patterns
        from .events.routes import declare

        return declare(self, "json", patterns.check(pattern), options)

    @aws_boundary(
        lambda app, name, *_, queue=None, **__: app.queue_name(app._send_queue(name, queue))
    )
    def send_task(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        countdown: float | timedelta | None = None,
        task_id: str | None = None,
        protocol: Literal["sqsq", "celery"] | None = None,
    ) -> AsyncResult:
        """Enqueue a task by name, without its function (no signature check).

        Args:
            name: the task's registered name.
            queue: logical queue; default: the registered task's queue if this app
                knows it, else the default queue.
            protocol: ``"celery"`` writes Celery's protocol v2 as kombu's SQS
                transport does (JSON), for a queue still served by Celery workers
                (``sqsq.interop``); default: the registered task's ``protocol``,
                else ``"sqsq"``.

        Raises:
            EnqueueError: as :meth:`Task.apply_async` (also its NotSerializable and
                MessageTooLarge); ConfigurationError and AWSError as there too.

        With ``task_always_eager``, a task this app registers runs here instead, as
        ``Task.apply`` (its signature checked); an unknown name is still sent.
        """
        known = self.tasks.get(name)
        if known is not None and self.settings.task_always_eager:
            return known._eager(args, kwargs, task_id)  # run here (see sqsq.eager)
        logical = self._send_queue(name, queue)
        try:
            check_queue_name(logical)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if (protocol or (known.protocol if known else "sqsq")) == "celery":
            message = self.celery_message(
                name, args, kwargs, logical, countdown, None, None, task_id
            )
        else:
            message = producer.build(
                name,
                list(args or ()),
                kwargs,
                queue=logical,
                queue_name=self.queue_name(logical),
                countdown=countdown,
                task_id=task_id,
                signing_key=self.signing_key,
                claim_check=self.payloads,
            )
        self.sender.send(message)
        return self.AsyncResult(message.task_id)

    def celery_message(
        self,
        name: str,
        args: Iterable[Any] | None,
        kwargs: dict[str, Any] | None,
        queue: str,
        countdown: float | timedelta | None,
        eta: datetime | None,
        expires: float | timedelta | datetime | None,
        task_id: str | None,
    ) -> producer.OutgoingMessage:
        """A call of task ``name`` on logical queue ``queue``, in Celery's protocol v2
        (``sqsq.interop.celery_protocol.build``), for ``protocol="celery"``."""
        from .interop import install
        from .interop.celery_protocol import build

        return build(
            name,
            list(args or ()),
            kwargs,
            routing_key=install(self).routing_key(queue),
            queue_name=self.queue_name(queue),
            countdown=countdown,
            eta=eta,
            expires=expires,
            task_id=task_id,
        )

    def _send_queue(self, name: str, queue: str | None) -> str:
        """The logical queue ``send_task(name, queue=queue)`` sends to."""
        known = self.tasks.get(name)
        return queue or (known.queue if known else self.settings.default_queue)

    @property
    def signing_key(self) -> bytes | None:
        """The message signing key (``Settings.signing_key`` resolved; see
        ``signing.py``), or None when messages are not signed. The previous keys
        (``Settings.signing_previous_keys``) are resolved with it, so that a process
        that could read it can also verify: the worker and the Lambda handler read
        it once, before they judge any message."""
        keys = self.verification_keys
        return keys[0] if keys else None

    @property
    def verification_keys(self) -> list[bytes]:
        """The keys a signature is accepted from: the signing key first, then
        ``Settings.signing_previous_keys``; ``[]`` when messages are not signed."""
        spec = self.settings.signing_key
        if not spec:
            return []
        from .signing import resolve_key

        specs = [spec, *self.settings.signing_previous_keys]
        return [resolve_key(s, self.clients) for s in specs]

    def AsyncResult(self, task_id: str) -> AsyncResult:
        """A handle on the result of task ``task_id`` (no AWS call until read)."""
        return AsyncResult(task_id, self.results)

    # --- capabilities the core asks for (the bridge: see the module docstring) ------

    def event_router(self) -> Router:
        """The router the execution core asks about a body that is not an envelope
        (``App.router``), installing ``sqsq.events``' on first use — so a worker
        whose app declared no route still unwraps SNS notifications and dead-letters
        unrouted events with reason ``no_route``."""
        if self.router is None:
            from .events import install

            return install(self)
        return self.router

    def celery_protocol(self) -> Translator:
        """The translator the execution core asks about a body that is not an
        envelope (``App.celery``), installing ``sqsq.interop``'s on first use — so a
        worker runs the Celery messages kombu's SQS transport writes."""
        if self.celery is None:
            from .interop import install

            return install(self)
        return self.celery

    def follow_ups(self) -> Continuation:
        """The continuation ``settle`` calls for stored outcomes whose envelope carries
        a ``workflow`` (``App.continuation``), installing ``sqsq.workflows``' on first
        use — so a worker whose app module never built a canvas still sends the next
        chain step, the callbacks and the chord count of workflows another process
        started."""
        if self.continuation is None:
            from .workflows import install

            return install(self)
        return self.continuation

    def claim_check(self) -> ClaimCheck:
        """The S3 claim check (``App.payloads``), installing ``sqsq.payloads``' on
        first use — so a worker or Lambda function without a ``payload_bucket`` still
        reads the pointers of offloaded messages (sqsq's or the SQS Extended
        Client's)."""
        if self.payloads is None:
            from .payloads import install

            return install(self)
        return self.payloads

    def flow_control(self) -> FlowControl | None:
        """The app's rate and concurrency limits (``App.flow``), installing
        ``sqsq.flow`` on first use — or None while the app has no limit at all: no
        task's ``rate_limit`` / ``concurrency_limit``, no ``queue_rate_limits``, and
        no runtime override (``sqsq limits set``) in the revocation view; such an app
        makes no request and imports nothing for limits."""
        if self.flow is None:
            if not self._limited():
                return None
            from .flow import install

            return install(self)
        return self.flow

    def _limited(self) -> bool:
        controls = self._revocations.controls if self._revocations is not None else {}
        return (
            bool(self.settings.queue_rate_limits)
            or any(t.rate_limit or t.concurrency_limit for t in self.tasks.values())
            or any(sk.startswith("limit#") for sk in controls)
        )

    # --- Lambda -------------------------------------------------------------------

    def lambda_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """AWS Lambda handler for an SQS event source mapping with
        ``FunctionResponseTypes: [ReportBatchItemFailures]``.

        Use as ``handler = app.lambda_handler``. See :mod:`sqsq.aws_lambda`.

        Returns:
            ``{"batchItemFailures": [{"itemIdentifier": <messageId>}, …]}``.

        Raises:
            ConfigurationError: ``event`` is not an SQS event (a miswired trigger).
        """
        from .aws_lambda import invoke

        return invoke(self, event, context)

    # --- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Close the boto3 clients."""
        self.clients.close()

    async def aclose(self) -> None:
        """Close the aiobotocore clients of the running event loop."""
        await self.clients.aclose()


#: Whether OpenTelemetry's API can be imported: looked up once per process.
_otel_found: bool | None = None


def _tracing_available(required: bool | None) -> bool:
    """Whether ``opentelemetry.trace`` is importable (``importlib.util.find_spec``,
    cached; nothing is imported here).

    Raises:
        MissingExtra: it is not, and ``required`` (the ``tracing=True`` setting).
    """
    global _otel_found
    if _otel_found is None:
        import importlib.util

        try:
            _otel_found = importlib.util.find_spec("opentelemetry.trace") is not None
        except ImportError:  # no "opentelemetry" package at all
            _otel_found = False
    if required and not _otel_found:
        from .errors import MissingExtra

        raise MissingExtra(
            "otel", "tracing=True", ImportError("No module named 'opentelemetry.trace'")
        )
    return _otel_found


def load_app(path: str) -> App:
    """Import ``module:attribute`` (or ``module`` with an ``app`` attribute).

    Raises:
        ConfigurationError: the module or attribute is missing, or is not an App.
    """
    import importlib
    import sys

    module_name, _, attribute = path.partition(":")
    attribute = attribute or "app"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigurationError(
            f"invalid APP {path!r}: expected 'module:attribute', e.g. examples.quickstart.app:app"
        )
    if not attribute.isidentifier():
        raise ConfigurationError(f"invalid attribute {attribute!r} in APP {path!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import {module_name!r} (from {path!r}): {exc}; APP is 'module:attribute'"
            ) from None
        raise
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise ConfigurationError(
            f"{path!r}: {module_name}.{attribute} is {type(app).__name__ if app is not None else 'missing'}, "
            "not a sqsq.App"
        )
    return app
