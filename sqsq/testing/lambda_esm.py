"""An SQS event source mapping, simulated as AWS runs one — for tests on any endpoint.

moto's and LocalStack's event source mappings do not apply Lambda's rules (moto
invokes one record at a time and ignores ``batchItemFailures``, the batching window
and the function's timeout), so a handler that breaks them passes there and fails
on AWS. This module receives from the real queue and invokes the handler as
Lambda does:

====================================  ==================================================
rule                                  AWS documentation page
====================================  ==================================================
batches of up to ``BatchSize``        "Using Lambda with Amazon SQS" — batching: a
records, gathered for up to           batch is invoked when it is full, when the window
``MaximumBatchingWindowInSeconds``    ends, or at the 6 MB invocation payload limit
(standard queues; none on FIFO)
the event's shape: ``Records`` with   "Using Lambda with Amazon SQS" — example event
``attributes`` (all), message         (:func:`sqsq.testing.sqs_record`)
attributes, ``md5OfBody``,
``eventSourceARN``
``context.get_remaining_time_in_      "Define Lambda function handler in Python" —
millis()`` counts down from the       context object; "Configure Lambda function
function's ``Timeout``; the           timeout": the invocation is stopped at the timeout
invocation is killed there
a function error or a timeout fails   "Handling errors for an SQS event source in
the whole batch: nothing is deleted,  Lambda" — the messages reappear after the
the records reappear after the        visibility timeout
queue's visibility timeout
``ReportBatchItemFailures``: the      "Handling errors for an SQS event source in
listed ``itemIdentifier`` s stay,     Lambda" — implementing partial batch responses:
the others are deleted; an empty      success for an empty/null list or response;
list, a null list or a null response  complete failure for an invalid response, an
deletes the batch; an empty, null     empty or null ``itemIdentifier``, a bad key, or
or unknown identifier fails it whole  a message id not in the batch
FIFO: records of a group in order;    "Using Lambda with Amazon SQS" — FIFO: stop at
a listed record followed by an        the first failure and return it and the rest;
unlisted one of its group is a        order is kept only if what follows a failure
violation (recorded)                  in its group is returned too
``ScalingConfig.MaximumConcurrency``  "Configuring maximum concurrency for Amazon SQS
invocations at once (``drain``)       event sources" (2–1000)
====================================  ==================================================

The handler runs in a **subprocess execution environment** (:class:`Subprocess`,
the default): one Python process per environment, initialised once (cold start:
the handler's module is imported, at most :data:`INIT_TIMEOUT_S`), then invoked
again and again (warm), and killed — with whatever it was doing — when an
invocation passes the timeout, as Lambda does; the next invocation starts a new
one. :func:`build_bundle` builds what ``sam build`` would pack (``CodeUri`` copied,
its ``requirements.txt`` installed) so the environment can run with nothing else
on its path. :class:`InProcess` calls a handler in this process (fast; a timed-out
invocation's thread cannot be killed and is left running, so use it only where
the timeout does not matter).

Example::

    esm = EventSourceMapping.from_template("template.yaml")
    invocations = esm.drain(until=lambda: result.ready())
    assert not any(i.error for i in invocations)
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import sqs_record
from .lambda_runtime import InProcess, Runtime, Subprocess, build_bundle

#: Largest synchronous invocation payload, bytes ("Lambda quotas": 6 MB).
MAX_PAYLOAD_BYTES = 6_291_456
#: Default function Timeout when a template gives none, seconds (CloudFormation's and
#: SAM's default for AWS::Lambda::Function / AWS::Serverless::Function).
DEFAULT_TIMEOUT_S = 3.0


# --- the function and its event sources ---------------------------------------------------


@dataclass(frozen=True)
class EventSource:
    """One SQS event source of the function.

    Attributes:
        queue_url / queue_arn: the queue.
        batch_size: ``BatchSize`` (1–10,000; FIFO at most 10).
        batching_window_s: ``MaximumBatchingWindowInSeconds`` (0–300; none on FIFO).
        report_batch_item_failures: ``FunctionResponseTypes`` has ``ReportBatchItemFailures``.
        maximum_concurrency: ``ScalingConfig.MaximumConcurrency`` (None: unset).
        enabled: ``Enabled``.
    """

    queue_url: str
    queue_arn: str
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = True
    maximum_concurrency: int | None = None
    enabled: bool = True

    @property
    def fifo(self) -> bool:
        """Whether the source queue is a FIFO queue (``.fifo``)."""
        return self.queue_arn.endswith(".fifo")


@dataclass
class Invocation:
    """What one invocation did, as AWS would see it.

    Attributes:
        request_id: the context's ``aws_request_id``.
        source: the event source's queue ARN.
        message_ids: the batch's records, in order.
        response: what the handler returned (JSON), when it returned.
        error: ``{"errorType", "errorMessage"}`` of a function error (or a timeout:
            ``Sandbox.Timedout``), else None.
        timed_out: the invocation ran past the function's timeout and was killed.
        cold_start: the environment was initialised for this invocation.
        deleted: message ids the mapping deleted after it.
        returned: message ids left to reappear after the visibility timeout.
        violations: broken AWS rules the response showed (e.g. FIFO order).
        duration_s: from invoke to response (or kill), seconds.
        logs: the environment's output during the invocation (stdout and stderr lines).
    """

    request_id: str
    source: str
    message_ids: list[str]
    response: Any = None
    error: dict[str, str] | None = None
    timed_out: bool = False
    cold_start: bool = False
    deleted: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    logs: list[str] = field(default_factory=list)


# --- the response, as Lambda reads it -------------------------------------------------


def failed_items(response: Any, message_ids: list[str]) -> set[str] | None:
    """The records a response returns to the queue; None when the response fails the
    whole batch ("Handling errors for an SQS event source in Lambda")."""
    if response is None or response == {}:
        return set()
    if not isinstance(response, dict):
        return None  # not an SQSBatchResponse
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    listed: set[str] = set()
    known = set(message_ids)
    for item in failures:
        if not isinstance(item, dict) or set(item) != {"itemIdentifier"}:
            return None  # a bad key name
        identifier = item["itemIdentifier"]
        if not isinstance(identifier, str) or not identifier or identifier not in known:
            return None  # null, empty, or not a message of the batch
        listed.add(identifier)
    return listed


def fifo_violations(records: list[dict[str, Any]], returned: set[str]) -> list[str]:
    """Records deleted after a returned record of their message group: their group's
    order is broken (they ran, or will be lost to order, before the one returned)."""
    seen_failed: set[str] = set()
    out = []
    for record in records:
        group = record.get("attributes", {}).get("MessageGroupId", "")
        if record["messageId"] in returned:
            seen_failed.add(group)
        elif group in seen_failed:
            out.append(
                f"FIFO order: {record['messageId']} of group {group!r} deleted after a "
                "returned record of its group"
            )
    return out


# --- the mapping ---------------------------------------------------------------------


class EventSourceMapping:
    """SQS event sources of one function, polled and applied as Lambda does.

    Args:
        runtime: where the handler runs (:class:`Subprocess` or :class:`InProcess`).
        sources: the function's SQS event sources.
        timeout_s: the function's ``Timeout``, seconds.
        sqs: a boto3 SQS client (default: one for the current environment).
        function_arn: the context's ``invoked_function_arn``.
    """

    def __init__(
        self,
        runtime: Runtime,
        sources: list[EventSource],
        timeout_s: float,
        *,
        sqs: Any = None,
        function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sqsq-test",
    ) -> None:
        import boto3

        self.runtime = runtime
        self.sources = [s for s in sources if s.enabled]
        self.timeout_s = timeout_s
        self.sqs = sqs or boto3.client("sqs")
        self.function_arn = function_arn
        self.invocations: list[Invocation] = []
        self._next = 0
        self._lock = threading.Lock()

    @classmethod
    def from_template(
        cls,
        template: str | Path | dict[str, Any],
        *,
        function_id: str | None = None,
        physical_ids: dict[str, str] | None = None,
        code_dir: Path | None = None,
        isolated: bool = False,
        environ: dict[str, str] | None = None,
        sqs: Any = None,
    ) -> EventSourceMapping:
        """The function of a SAM/CloudFormation template and its SQS event sources.

        Reads ``Timeout`` (SAM ``Globals`` too; default 3 s), ``Handler``,
        ``Environment.Variables``, ``CodeUri`` and each ``Type: SQS`` event (or
        ``AWS::Lambda::EventSourceMapping``): ``BatchSize``,
        ``MaximumBatchingWindowInSeconds``, ``FunctionResponseTypes``,
        ``ScalingConfig.MaximumConcurrency``, ``Enabled``.

        Args:
            template: the template's path or document.
            function_id: its logical id (default: the only function).
            physical_ids: logical id → physical id of a deployed stack
                (``DescribeStackResources``: a queue's URL, a table's name); without
                it, names come from the template's ``QueueName``/``TableName``.
            code_dir: the environment's code (default: ``CodeUri`` resolved against
                the template's directory), e.g. a :func:`build_bundle` directory.
            isolated: only ``code_dir`` and the standard library on the path.
            environ: variables added to the function's, besides the AWS endpoint,
                credentials and region of this process (which are always passed on).

        Raises:
            ValueError: no such function, or a reference this reader cannot resolve.
        """
        base = Path.cwd()
        if not isinstance(template, dict):
            base = Path(template).resolve().parent
            template = load_template(Path(template))
        resources = template.get("Resources", {})
        globals_ = template.get("Globals", {}).get("Function", {})
        functions = {
            k: v
            for k, v in resources.items()
            if v.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
        }
        if function_id is None:
            if len(functions) != 1:
                raise ValueError(f"name the function: the template has {sorted(functions)}")
            function_id = next(iter(functions))
        if function_id not in functions:
            raise ValueError(f"no function {function_id!r} in the template")
        props = {**globals_, **functions[function_id].get("Properties", {})}
        resolver = _Resolver(resources, physical_ids or {}, sqs)
        variables = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        function_env = {k: resolver.value(v) for k, v in variables.items()}
        sources = [resolver.source(e) for e in _sqs_events(resources, function_id, props)]
        code = code_dir or (base / str(props.get("CodeUri", "."))).resolve()
        env = {**_endpoint_environ(), **(environ or {}), **function_env}
        env.setdefault("AWS_LAMBDA_FUNCTION_NAME", function_id)
        logging_config = props.get("LoggingConfig") or {}
        if logging_config.get("LogFormat") == "JSON":  # "Configuring advanced logging"
            env.setdefault("AWS_LAMBDA_LOG_FORMAT", "JSON")
            env.setdefault(
                "AWS_LAMBDA_LOG_LEVEL", logging_config.get("ApplicationLogLevel", "INFO")
            )
        env.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(props.get("MemorySize", 128)))
        runtime = Subprocess(str(props["Handler"]), [code], env, isolated=isolated)
        timeout = float(props.get("Timeout", DEFAULT_TIMEOUT_S))
        return cls(runtime, sources, timeout, sqs=resolver.sqs)

    # --- one batch ---

    def _receive(self, source: EventSource, wait_s: float) -> list[dict[str, Any]]:
        """Up to ``BatchSize`` messages, gathered for the batching window."""
        messages: list[dict[str, Any]] = []
        window_ends = time.monotonic() + source.batching_window_s
        first = True
        while len(messages) < source.batch_size:
            left = window_ends - time.monotonic()
            if not first and left <= 0:
                break
            wait = wait_s if first and not messages else max(0.0, min(left, 20.0))
            response = self.sqs.receive_message(
                QueueUrl=source.queue_url,
                MaxNumberOfMessages=min(10, source.batch_size - len(messages)),
                WaitTimeSeconds=int(wait),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            got = response.get("Messages", [])
            messages += got
            first = False
            if source.batching_window_s <= 0 or source.fifo:
                break
            if not got and not messages:
                break
        return messages

    def poll(self, source: EventSource | None = None, wait_s: float = 1.0) -> Invocation | None:
        """Receive one batch (from ``source``, or the sources in turn), invoke the
        function with it, and apply the response. None when nothing was received."""
        if source is None:
            with self._lock:
                source = self.sources[self._next % len(self.sources)]
                self._next += 1
        messages = self._receive(source, wait_s)
        if not messages:
            return None
        return self.invoke(source, messages)

    def invoke(self, source: EventSource, messages: list[dict[str, Any]]) -> Invocation:
        """Invoke the function with these received messages and apply its response."""
        region = source.queue_arn.split(":")[3] if source.queue_arn.count(":") >= 5 else ""
        records = [sqs_record(m, source.queue_arn, region or "us-east-1") for m in messages]
        while len(records) > 1 and len(json.dumps({"Records": records})) > MAX_PAYLOAD_BYTES:
            records.pop()  # left in flight: it reappears after the visibility timeout
        ids = [r["messageId"] for r in records]
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        response, error, timed_out, cold = self.runtime.invoke(
            {"Records": records}, self.timeout_s, request_id, self.function_arn
        )
        invocation = Invocation(
            request_id,
            source.queue_arn,
            ids,
            response=response,
            error=error,
            timed_out=timed_out,
            cold_start=cold,
            duration_s=time.monotonic() - started,
            logs=self.runtime.take_logs(request_id),
        )
        returned: set[str] = set()
        if error is not None:
            returned = set(ids)
        elif source.report_batch_item_failures:
            listed = failed_items(response, ids)
            if listed is None:
                invocation.violations.append(f"invalid batch response, batch failed: {response!r}")
            returned = set(ids) if listed is None else listed
        if source.fifo:
            invocation.violations += fifo_violations(records, returned)
        handles = {r["messageId"]: r["receiptHandle"] for r in records}
        invocation.returned = [i for i in ids if i in returned]
        invocation.deleted = self._delete(source, {i: handles[i] for i in ids if i not in returned})
        with self._lock:
            self.invocations.append(invocation)
        return invocation

    def _delete(self, source: EventSource, handles: dict[str, str]) -> list[str]:
        deleted = []
        items = list(handles.items())
        for start in range(0, len(items), 10):
            chunk = items[start : start + 10]
            response = self.sqs.delete_message_batch(
                QueueUrl=source.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": h} for n, (_, h) in enumerate(chunk)],
            )
            ok = {int(e["Id"]) for e in response.get("Successful", [])}
            deleted += [chunk[n][0] for n in sorted(ok)]
        return deleted

    # --- many batches ---

    def drain(
        self,
        *,
        until: Callable[[], bool] | None = None,
        timeout_s: float = 60.0,
        idle_polls: int = 2,
        concurrency: int = 1,
    ) -> list[Invocation]:
        """Poll and invoke until ``until()`` holds, or every source gave nothing
        ``idle_polls`` times in a row, or ``timeout_s`` passed.

        Args:
            concurrency: invocations at once (each in its own environment), capped by
                the sources' ``MaximumConcurrency``.

        Returns:
            The invocations made, in the order they ended.
        """
        caps = [s.maximum_concurrency for s in self.sources if s.maximum_concurrency]
        concurrency = max(1, min([concurrency, *caps]))
        deadline = time.monotonic() + timeout_s
        done: list[Invocation] = []
        stop = threading.Event()

        errors: list[BaseException] = []

        def loop(runtime: Runtime) -> None:
            try:
                poll_until(runtime)
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)
                stop.set()

        def poll_until(runtime: Runtime) -> None:
            idle = 0
            mapping = self if runtime is self.runtime else self._with(runtime)
            while not stop.is_set() and time.monotonic() < deadline:
                if until is not None and until():
                    break
                invocation = mapping.poll()
                if invocation is None:
                    idle += 1
                    if until is None and idle >= idle_polls * len(self.sources):
                        break
                    continue
                idle = 0
                with self._lock:
                    done.append(invocation)

        runtimes: list[Runtime] = [
            self.runtime,
            *(self.runtime.copy() for _ in range(concurrency - 1)),
        ]
        threads = [threading.Thread(target=loop, args=(r,), daemon=True) for r in runtimes]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()) + self.timeout_s + 15)
        finally:
            stop.set()
            for runtime in runtimes[1:]:
                runtime.kill()
        if errors:
            raise errors[0]
        return done

    def _with(self, runtime: Runtime) -> EventSourceMapping:
        other = EventSourceMapping.__new__(EventSourceMapping)
        other.__dict__.update(self.__dict__)
        other.runtime = runtime
        return other

    def close(self) -> None:
        """Stop the execution environment."""
        self.runtime.kill()

    def __enter__(self) -> EventSourceMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- templates --------------------------------------------------------------------------


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation/SAM template (YAML or JSON; short-form tags ``!Ref``,
    ``!GetAtt``, ``!Sub`` read as their long forms)."""
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]
        pass

    def tag(name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
        def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
            if isinstance(node, yaml.ScalarNode):
                value: Any = loader.construct_scalar(node)
                if name == "Fn::GetAtt":
                    value = str(value).split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            return {name: value}

        return construct

    for short, long in (("Ref", "Ref"), ("GetAtt", "Fn::GetAtt"), ("Sub", "Fn::Sub")):
        Loader.add_constructor(f"!{short}", tag(long))
    return dict(yaml.load(path.read_text(), Loader=Loader))


def _sqs_events(
    resources: dict[str, Any], function_id: str, props: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    for event in props.get("Events", {}).values():
        if event.get("Type") == "SQS":
            yield event.get("Properties", {})
    for resource in resources.values():
        if resource.get("Type") == "AWS::Lambda::EventSourceMapping":
            properties = resource.get("Properties", {})
            target = properties.get("FunctionName")
            if target in ({"Ref": function_id}, function_id) or (
                isinstance(target, dict) and target.get("Fn::GetAtt", [None])[0] == function_id
            ):
                yield {"Queue": properties.get("EventSourceArn"), **properties}


def _endpoint_environ() -> dict[str, str]:
    """This process's AWS endpoint, credentials and region, for the environment."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    env = {k: v for k, v in os.environ.items() if k in names or k.startswith("AWS_ENDPOINT_URL")}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return {**env, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}


class _Resolver:
    """Physical values of a template's references: a deployed stack's ids, or the
    names the template gives its queues and tables."""

    def __init__(self, resources: dict[str, Any], physical: dict[str, str], sqs: Any) -> None:
        import boto3

        self.resources = resources
        self.physical = physical
        self.sqs = sqs or boto3.client("sqs")

    def _queue_url(self, logical: str) -> str:
        if logical in self.physical:
            return self.physical[logical]
        name = self.resources.get(logical, {}).get("Properties", {}).get("QueueName")
        if not name:
            raise ValueError(f"cannot resolve the queue {logical!r}: pass physical_ids")
        return str(self.sqs.get_queue_url(QueueName=name)["QueueUrl"])

    def value(self, value: Any) -> str:
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and "Ref" in value:
            logical = value["Ref"]
            if logical in self.physical:
                return self.physical[logical]
            properties = self.resources.get(logical, {}).get("Properties", {})
            for key in ("TableName", "QueueName", "Name", "TopicName", "BucketName"):
                if key in properties:
                    return str(properties[key])
        raise ValueError(f"cannot resolve {value!r}: pass physical_ids")

    def source(self, properties: dict[str, Any]) -> EventSource:
        queue = properties.get("Queue")
        if isinstance(queue, dict) and "Fn::GetAtt" in queue:
            url = self._queue_url(queue["Fn::GetAtt"][0])
        elif isinstance(queue, str) and queue.startswith("arn:"):
            url = str(self.sqs.get_queue_url(QueueName=queue.rsplit(":", 1)[1])["QueueUrl"])
        else:
            raise ValueError(f"cannot resolve the event source queue {queue!r}")
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        scaling = properties.get("ScalingConfig") or {}
        return EventSource(
            queue_url=url,
            queue_arn=str(arn["Attributes"]["QueueArn"]),
            batch_size=int(properties.get("BatchSize", 10)),
            batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures"
            in (properties.get("FunctionResponseTypes") or []),
            maximum_concurrency=scaling.get("MaximumConcurrency"),
            enabled=bool(properties.get("Enabled", True)),
        )


__all__ = [
    "EventSource",
    "EventSourceMapping",
    "InProcess",
    "Invocation",
    "Subprocess",
    "build_bundle",
    "failed_items",
    "fifo_violations",
    "load_template",
]
