"""pytest plugin: an AWS endpoint for tests (embedded moto, or any endpoint you name)
and Lambda event factories.

Installed with sqsq (entry point ``pytest11``); fixtures do nothing until a test
asks for them.

- ``sqsq_endpoint`` (session): by default the embedded moto server
  (:class:`~sqsq.local.LocalEndpoint`) on a free loopback port. While it runs,
  botocore's ``AWS_ENDPOINT_URL`` and test credentials are set in ``os.environ``,
  so every App whose ``endpoint_url`` is unset — including module-level apps
  imported before the fixture ran — talks to it, over real HTTP, with boto3 and
  aiobotocore alike.
- ``local_aws`` (function): the same endpoint, with no resources left from other
  tests (moto: reset before the test; an external endpoint: what the run created
  is deleted before the test).
- ``sqsq_prefix`` (session): a prefix unique to this test run (``SQSQ_TEST_PREFIX``
  or ``sqsqt-<8 hex>-``); name your test apps with it
  (``App(sqsq_prefix + "orders")``) when several runs share an account.
- :func:`sqs_event` / :class:`LambdaContext`: an SQS event for a Lambda handler,
  in the documented shape ("Using Lambda with Amazon SQS"), built from messages
  really received from a queue.
- :class:`EventSourceMapping` (``sqsq.testing.lambda_esm``): an SQS event source
  mapping run as Lambda runs one — from a SAM template's function and events:
  batches and batching window, partial batch responses read as AWS reads them, the
  function's timeout counted down and enforced by killing the execution environment
  (a real process), FIFO order — since moto's invokes one record at a time and
  ignores ``batchItemFailures`` and the timeout; :func:`build_bundle` packs what
  ``sam build`` would.
- :class:`SimulatedScheduler` (``sqsq.testing.scheduler``): fires EventBridge
  Scheduler schedules — read from the endpoint or from a CloudFormation template —
  on a virtual clock, by AWS's rules (context attributes, StartDate/EndDate, time
  zones, ``at()`` with ActionAfterCompletion DELETE, RetryPolicy, the dead-letter
  queue and its attributes), since moto and LocalStack store schedules but never
  fire them. :func:`fire_schedule` fires one periodic task of the app now, for a
  scheduled time the test names, with the body Scheduler would send.
- :func:`sweep_ttl` (``sqsq.testing.ttl``): deletes what DynamoDB's TTL would
  delete at a virtual time (Number attribute, epoch seconds, not more than five
  years in the past), since no emulator sweeps TTL.

**The shell does not leak in.** For the whole test session — from
``pytest_configure``, before test modules are imported, so that a module-level
``App`` reads a clean environment too, until ``pytest_unconfigure``, which puts them
back — the plugin removes each ``SQSQ_<SETTING>`` (a field of
:class:`~sqsq.settings_model.Settings`, e.g. ``SQSQ_ENDPOINT_URL``,
``SQSQ_TABLE_NAME``, ``SQSQ_SIGNING_KEY``) from ``os.environ``; and while
``sqsq_endpoint`` is active, botocore's ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_<SERVICE>`` point at the test endpoint only (a service-specific
variable from the shell would win over the generic one). Tests that never use the
fixtures keep the shell's botocore variables. In a shell holding ``sqsq dev``'s
``export`` lines, tests still talk to their own endpoint. Kept: ``SQSQ_TEST_*``
(they configure the plugin) and other ``SQSQ_*`` names no App reads; what a test
sets itself (``monkeypatch.setenv``) works as usual. ``SQSQ_TEST_KEEP_ENV=1`` keeps
the shell's ``SQSQ_<SETTING>`` variables (the plugin then clears nothing at
configure).

**Any endpoint** (:class:`ExternalEndpoint`): set ``SQSQ_TEST_ENDPOINT_URL`` (one
URL for every service), or one per service — ``SQSQ_TEST_ENDPOINT_URL_SQS``,
``SQSQ_TEST_ENDPOINT_URL_DYNAMODB``, ``SQSQ_TEST_ENDPOINT_URL_STS``,
``SQSQ_TEST_ENDPOINT_URL_SCHEDULER`` (a service without one uses
``SQSQ_TEST_ENDPOINT_URL``, then AWS; STS, IAM, Step Functions (``SFN``),
``EVENTBRIDGE``, ``SNS``, ``S3`` and ``CLOUDWATCH`` follow SQS) — and the suite runs there
instead of on moto: LocalStack, dynalite, or ``aws`` for a sandbox AWS account
(credentials and region from the usual chain). Nothing that existed before the
run is touched: the kit lists the queues and tables at the start and deletes only
those that appeared after it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ..local import LOCAL_ENVIRONMENT, LocalEndpoint

#: Public names of the simulators, imported on first use (``sqsq.testing.X``): importing
#: ``sqsq.testing`` stays light (no boto3, no croniter).
_LAZY = {
    "SimulatedScheduler": "scheduler",
    "SimulatedSchedule": "scheduler",
    "Fire": "scheduler",
    "Run": "scheduler",
    "schedules_from_template": "scheduler",
    "dead_letter_attributes": "scheduler",
    "fire_schedule": "scheduler",
    "EventSourceMapping": "lambda_esm",
    "EventSource": "lambda_esm",
    "Invocation": "lambda_esm",
    "build_bundle": "lambda_runtime",
    "sweep_ttl": "ttl",
    "Swept": "ttl",
    "ttl_attribute": "ttl",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


#: Services whose endpoint the kit sets (botocore's AWS_ENDPOINT_URL_<SERVICE> names).
SERVICES = (
    "SQS",
    "DYNAMODB",
    "STS",
    "SCHEDULER",
    "IAM",
    "SFN",
    "EVENTBRIDGE",
    "SNS",
    "S3",
    "CLOUDWATCH",
)
#: Services that follow SQS's endpoint unless named: an emulator serves them together.
FOLLOW_SQS = ("STS", "IAM", "SFN", "EVENTBRIDGE", "SNS", "S3", "CLOUDWATCH")
#: The environment variable that names one endpoint for every service.
ENDPOINT_VARIABLE = "SQSQ_TEST_ENDPOINT_URL"
#: The value of an endpoint variable that means "AWS itself" (a sandbox account).
AWS = "aws"


def external_endpoints(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """Service (``"SQS"``, …) → endpoint URL (or ``"aws"``) from the
    ``SQSQ_TEST_ENDPOINT_URL[_<SERVICE>]`` variables; None when none is set (moto)."""
    env = os.environ if environ is None else environ
    default = env.get(ENDPOINT_VARIABLE, "").strip()
    urls = {s: env.get(f"{ENDPOINT_VARIABLE}_{s}", "").strip() or default for s in SERVICES}
    if not any(urls.values()):
        return None
    for service in FOLLOW_SQS:  # e.g. the role of `schedule sync`, a recipe's topic
        urls[service] = urls[service] or urls["SQS"]
    return {s: url or AWS for s, url in urls.items()}


class ExternalEndpoint:
    """An endpoint the kit did not start (LocalStack, dynalite, AWS): same
    interface as :class:`~sqsq.local.LocalEndpoint` for the fixtures.

    Args:
        urls: service → URL or ``"aws"`` (see :func:`external_endpoints`).
    """

    #: LocalStack and AWS have StartMessageMoveTask.
    has_message_move_tasks = True
    #: Whether DynamoDB's UpdateTimeToLive works here (probed at start; dynalite has
    #: none, and its DescribeTimeToLive says DISABLED — sqsq warns and goes on, tests
    #: of the TTL setting skip, ``sweep_ttl`` sweeps its ``fallback_attribute``).
    has_ttl = True

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.url = urls["SQS"] if urls["SQS"] != AWS else ""
        self.name = ", ".join(sorted({u for u in urls.values()}))
        self._baseline: tuple[set[str], set[str]] = (set(), set())
        self._scheduler_baseline: tuple[set[str], set[tuple[str, str]], set[str]] = (
            set(),
            set(),
            set(),
        )

    def url_for(self, service: str) -> str | None:
        """The endpoint URL of ``service`` (``"sqs"``, …); None for AWS itself."""
        url = self.urls.get(service.upper(), AWS)
        return None if url == AWS else url

    def environ(self) -> dict[str, str]:
        """botocore's per-service variables that point a process here."""
        return {
            f"AWS_ENDPOINT_URL_{s}": url for s in SERVICES if (url := self.url_for(s)) is not None
        }

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url_for(service))

    def _existing(self) -> tuple[set[str], set[str]]:
        sqs, ddb = self._client("sqs"), self._client("dynamodb")
        queues = {
            url
            for page in sqs.get_paginator("list_queues").paginate()
            for url in page.get("QueueUrls", [])
        }
        tables = {
            name
            for page in ddb.get_paginator("list_tables").paginate()
            for name in page.get("TableNames", [])
        }
        return queues, tables

    def _existing_schedules(self) -> tuple[set[str], set[tuple[str, str]], set[str]]:
        """Schedule groups, ``(group, schedule)`` names and IAM roles; empty where the
        endpoint has no Scheduler or IAM (they are then never created either)."""
        groups: set[str] = set()
        schedules: set[tuple[str, str]] = set()
        roles: set[str] = set()
        if self.url_for("scheduler") is not None:
            with contextlib.suppress(Exception):
                scheduler = self._client("scheduler")
                for page in scheduler.get_paginator("list_schedule_groups").paginate():
                    groups |= {g["Name"] for g in page.get("ScheduleGroups", [])}
                for page in scheduler.get_paginator("list_schedules").paginate():
                    schedules |= {(x["GroupName"], x["Name"]) for x in page.get("Schedules", [])}
        if self.url_for("iam") is not None:
            with contextlib.suppress(Exception):
                for page in self._client("iam").get_paginator("list_roles").paginate():
                    roles |= {r["RoleName"] for r in page.get("Roles", [])}
        return groups, schedules, roles

    def _reset_schedules(self) -> None:
        groups, schedules, roles = self._existing_schedules()
        base_groups, base_schedules, base_roles = self._scheduler_baseline
        if schedules - base_schedules or groups - base_groups:
            scheduler = self._client("scheduler")
            for group, name in sorted(schedules - base_schedules):
                with contextlib.suppress(Exception):
                    scheduler.delete_schedule(GroupName=group, Name=name)
            for group in sorted(groups - base_groups):
                with contextlib.suppress(Exception):
                    scheduler.delete_schedule_group(Name=group)
        if roles - base_roles:
            iam = self._client("iam")
            for role in sorted(roles - base_roles):
                with contextlib.suppress(Exception):
                    _delete_role(iam, role)

    def start(self) -> ExternalEndpoint:
        """Remember what exists (:meth:`reset` never deletes it); probe TTL support."""
        self._baseline = self._existing()
        self._scheduler_baseline = self._existing_schedules()
        if self.url_for("dynamodb") is not None:
            self.has_ttl = self._probe_ttl()
        return self

    def _probe_ttl(self) -> bool:
        ddb = self._client("dynamodb")
        name = f"sqsq-ttl-probe-{uuid.uuid4().hex[:8]}"
        ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        try:
            ddb.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
        except ddb.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "UnknownOperationException":
                raise
            return False
        finally:
            ddb.delete_table(TableName=name)
        return True

    def stop(self) -> None:
        """Delete what the run created."""
        self.reset()

    def reset(self) -> None:
        """Delete the queues, tables, schedules, schedule groups and IAM roles created
        since :meth:`start` (and only those)."""
        self._reset_schedules()
        queues, tables = self._existing()
        sqs, ddb = self._client("sqs"), self._client("dynamodb")
        for url in sorted(queues - self._baseline[0]):
            with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
                sqs.delete_queue(QueueUrl=url)
        deleted = sorted(tables - self._baseline[1])
        for name in deleted:
            with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
                ddb.delete_table(TableName=name)
        for name in deleted:  # a table of that name can be created again only once gone
            ddb.get_waiter("table_not_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        # SQS forbids a queue of the same name for 60 s after DeleteQueue on AWS; the
        # per-run prefix (sqsq_prefix) is how suites on AWS avoid reusing names.


def _delete_role(iam: Any, role: str) -> None:
    """Delete a role the run created, with what holds it: its inline and attached
    policies, and the instance profiles it is in (a stack's EC2 instance role; those
    profiles were made with it, by the same run)."""
    for name in iam.list_role_policies(RoleName=role).get("PolicyNames", []):
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    for policy in iam.list_attached_role_policies(RoleName=role).get("AttachedPolicies", []):
        iam.detach_role_policy(RoleName=role, PolicyArn=policy["PolicyArn"])
    for profile in iam.list_instance_profiles_for_role(RoleName=role).get("InstanceProfiles", []):
        name = profile["InstanceProfileName"]
        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role)
        with contextlib.suppress(Exception):
            iam.delete_instance_profile(InstanceProfileName=name)
    iam.delete_role(RoleName=role)


#: Set to ``1`` to keep the shell's ``SQSQ_<SETTING>`` and ``AWS_ENDPOINT_URL*``
#: variables during the tests (see the module docstring).
KEEP_ENV_VARIABLE = "SQSQ_TEST_KEEP_ENV"
#: The variables cleared at ``pytest_configure``, with their values, put back at
#: ``pytest_unconfigure``.
_cleared: dict[str, str] = {}


def shell_variables(environ: dict[str, str] | os._Environ[str] | None = None) -> list[str]:
    """The names in ``environ`` (default ``os.environ``) that the plugin clears for a
    session: ``SQSQ_<SETTING>`` for each field of sqsq's Settings (names compared in
    upper case, as the settings read them)."""
    from ..settings import ENV_PREFIX
    from ..settings_model import Settings

    env = os.environ if environ is None else environ
    settings = {f"{ENV_PREFIX}{field}".upper() for field in Settings.model_fields}
    return sorted(name for name in env if name.upper() in settings)


def _botocore_endpoints() -> list[str]:
    """botocore's endpoint variables in ``os.environ``: ``AWS_ENDPOINT_URL`` and
    ``AWS_ENDPOINT_URL_<SERVICE>``."""
    return [name for name in os.environ if name.upper().startswith("AWS_ENDPOINT_URL")]


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Clear the shell's sqsq settings and endpoint variables for the session
    (:func:`shell_variables`), before test modules are imported."""
    if os.environ.get(KEEP_ENV_VARIABLE, "").strip() in ("1", "true", "yes"):
        return
    for name in shell_variables():
        _cleared[name] = os.environ.pop(name)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put back what :func:`pytest_configure` cleared."""
    os.environ.update(_cleared)
    _cleared.clear()


def _endpoint() -> LocalEndpoint | ExternalEndpoint:
    urls = external_endpoints()
    return LocalEndpoint() if urls is None else ExternalEndpoint(urls)


@pytest.fixture(scope="session")
def sqsq_endpoint() -> Iterator[LocalEndpoint | ExternalEndpoint]:
    """The endpoint for the whole session: embedded moto, or the one named by
    ``SQSQ_TEST_ENDPOINT_URL[_<SERVICE>]``. The shell's ``SQSQ_<SETTING>`` variables
    are not seen by the session's tests (cleared at ``pytest_configure``, put back
    after; :func:`shell_variables`) and its ``AWS_ENDPOINT_URL*`` not while this
    fixture is active, so an ``App`` without an ``endpoint_url`` of its own talks to
    this endpoint."""
    endpoint = _endpoint()
    names = [
        *LOCAL_ENVIRONMENT,
        "AWS_ENDPOINT_URL",
        "SQSQ_ENDPOINT_URL",
        *(f"AWS_ENDPOINT_URL_{s}" for s in SERVICES),
    ]
    names += [name for name in _botocore_endpoints() if name not in names]
    saved = {name: os.environ.get(name) for name in names}
    for name in _botocore_endpoints():  # the shell's, while the fixture is active
        os.environ.pop(name)
    if isinstance(endpoint, LocalEndpoint):
        endpoint.start()
        os.environ.update(LOCAL_ENVIRONMENT)
        os.environ["AWS_ENDPOINT_URL"] = endpoint.url
    else:  # an external endpoint: botocore's per-service variables
        for name in names[len(LOCAL_ENVIRONMENT) :]:
            os.environ.pop(name, None)
        if endpoint.url_for("sqs") is not None:  # an emulator: test credentials
            for name, value in LOCAL_ENVIRONMENT.items():
                os.environ.setdefault(name, value)
        os.environ.update(endpoint.environ())
        endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()
        for name, saved_value in saved.items():
            if saved_value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved_value


@pytest.fixture
def local_aws(
    sqsq_endpoint: LocalEndpoint | ExternalEndpoint,
) -> LocalEndpoint | ExternalEndpoint:
    """The endpoint with no resources left from other tests (reset before the test)."""
    sqsq_endpoint.reset()
    return sqsq_endpoint


@pytest.fixture(scope="session")
def sqsq_prefix() -> str:
    """A resource-name prefix unique to this run (``SQSQ_TEST_PREFIX`` or
    ``sqsqt-<8 hex>-``): ``App(sqsq_prefix + "orders")``."""
    return os.environ.get("SQSQ_TEST_PREFIX") or f"sqsqt-{uuid.uuid4().hex[:8]}-"


class LambdaContext:
    """A stand-in for the Lambda context object.

    Args:
        remaining_ms: what ``get_remaining_time_in_millis()`` returns first; it
            then counts down in real time.
        request_id: ``aws_request_id``.
    """

    def __init__(self, remaining_ms: int = 60_000, request_id: str = "test-request") -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000
        self.aws_request_id = request_id
        self.function_name = "sqsq-test"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation's deadline."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_record(
    message: dict[str, Any], queue_arn: str, region: str = "us-east-1"
) -> dict[str, Any]:
    """One Lambda SQS record from a ReceiveMessage entry (attributes "All")."""
    attributes = {
        key: message.get("Attributes", {}).get(key, default)
        for key, default in (
            ("ApproximateReceiveCount", "1"),
            ("SentTimestamp", str(int(time.time() * 1000))),
            ("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
            ("ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))),
        )
    }
    for key in ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber", "AWSTraceHeader"):
        if key in message.get("Attributes", {}):
            attributes[key] = message["Attributes"][key]
    message_attributes = {}
    for name, attr in message.get("MessageAttributes", {}).items():
        entry: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": attr["DataType"],
        }
        if "BinaryValue" in attr:
            entry["binaryValue"] = base64.b64encode(attr["BinaryValue"]).decode()
        else:
            entry["stringValue"] = attr.get("StringValue")
        message_attributes[name] = entry
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def sqs_event(
    messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1"
) -> dict[str, Any]:
    """An SQS event (``{"Records": [...]}``) for ``app.lambda_handler``."""
    return {"Records": [sqs_record(m, queue_arn, region) for m in messages]}
