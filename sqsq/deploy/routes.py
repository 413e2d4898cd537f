"""The app's foreign-event routes (:mod:`sqsq.events`) as CloudFormation.

For each route declared with ``app.on_event`` / ``app.on_sns`` / ``app.on_s3``::

    events    ->  AWS::Events::Rule (EventPattern = the route's pattern, target: the queue)
    sns       ->  AWS::SNS::Subscription (protocol sqs; raw delivery off: the router
                  unwraps SNS notifications)
    s3        ->  an Output ``<Bucket>Notification``: the bucket's NotificationConfiguration
                  as JSON, for ``aws s3api put-bucket-notification-configuration`` (the
                  bucket is not the app's, so the stack does not create or change it)
    dynamodb  ->  AWS::Pipes::Pipe from the stream to the queue (the route's pattern,
                  less ``eventSource``/``eventSourceARN``, as its filter) and its role;
                  the stream's ARN is the route's ``stream_arn`` or, given only a
                  table, a template parameter ``<Table>StreamArn`` (a stream's ARN ends
                  in its creation time, which the template cannot know)

and one AWS::SQS::QueuePolicy per routed queue letting EventBridge, SNS and S3 send to
it (only from the rule, topic or bucket routed; the pipe sends with its role).
``json`` routes need nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from ..errors import ConfigurationError
from ..events import Route, routes_of
from ..resources import QueueSpec
from .iam import trust
from .resources import Declared, Doc, camel, get_att, ref, sub

#: What a pipe reads from a DynamoDB stream (EventBridge Pipes' "DynamoDB stream as a
#: source" execution role permissions).
STREAM_ACTIONS = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
]


def _queue(route: Route, ids: Declared) -> QueueSpec:
    for queue in ids.resources.queues:
        if queue.logical == route.queue and not queue.dead_letter:
            return queue
    raise ConfigurationError(f"route {route.name}: no queue {route.queue!r} in the app")


def _queue_id(route: Route, ids: Declared) -> str:
    return ids.queue_id(_queue(route, ids))


def _new(out: Doc, logical_id: str, resource: Doc) -> None:
    if logical_id in out:
        raise ConfigurationError(f"routes clash on {logical_id}: rename one task")
    out[logical_id] = resource


def _stream_source(route: Route, parameters: Doc) -> Any:
    """The pipe's source: the route's stream ARN, else a parameter named after its table."""
    if route.stream_arn:
        return route.stream_arn
    table = _required(route, route.table, "table or stream ARN (on_dynamodb_stream(...))")
    name = camel(table) + "StreamArn"
    parameters[name] = {
        "Type": "String",
        "AllowedPattern": "arn:aws[a-z-]*:dynamodb:.+:table/.+/stream/.+",
        "Description": f"The DynamoDB stream of table {table} (its LatestStreamArn).",
    }
    return ref(name)


def pipe_resources(route: Route, ids: Declared, parameters: Doc) -> Doc:
    """A DynamoDB stream route's AWS::Pipes::Pipe and AWS::IAM::Role (adds the
    ``<Table>StreamArn`` parameter it needs to ``parameters``)."""
    queue = _queue(route, ids)
    queue_id = ids.queue_id(queue)
    source = _stream_source(route, parameters)
    role_id = camel(route.name) + "PipeRole"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": STREAM_ACTIONS, "Resource": source},
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": get_att(queue_id)},
        ],
    }
    source_parameters: Doc = {
        "DynamoDBStreamParameters": {"StartingPosition": "LATEST", "BatchSize": 10}
    }
    # The source is the stream already: the filter keeps what the router matches
    # beyond it (and wildcard ARNs, which Pipes filters do not take, are dropped).
    pattern = {k: v for k, v in route.pattern.items() if k not in ("eventSource", "eventSourceARN")}
    if pattern:
        filters = [{"Pattern": json.dumps(pattern, sort_keys=True)}]
        source_parameters["FilterCriteria"] = {"Filters": filters}
    properties: Doc = {
        "Description": f"sqsq route to task {route.task}",
        "RoleArn": get_att(role_id),
        "Source": source,
        "SourceParameters": source_parameters,
        "Target": get_att(queue_id),
    }
    if queue.fifo:  # stream records carry their identity: eventID deduplicates
        properties["TargetParameters"] = {
            "SqsQueueParameters": {
                "MessageGroupId": route.task[-100:],
                "MessageDeduplicationId": "$.eventID",
            }
        }
    return {
        role_id: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"sqsq route to task {route.task}: the pipe reads the stream",
                "AssumeRolePolicyDocument": trust("pipes.amazonaws.com"),
                "Policies": [{"PolicyName": "sqsq-pipe", "PolicyDocument": policy}],
            },
        },
        camel(route.name) + "Pipe": {"Type": "AWS::Pipes::Pipe", "Properties": properties},
    }


def _send(service: str, queue_id: str, condition: Doc) -> Doc:
    return {
        "Effect": "Allow",
        "Principal": {"Service": f"{service}.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": get_att(queue_id),
        "Condition": condition,
    }


def _required(route: Route, value: str | None, what: str) -> str:
    if not value:
        raise ConfigurationError(f"route {route.name}: sqsq infra needs the {what}")
    return value


def route_resources(ids: Declared, parameters: Doc) -> Doc:
    """The rules, subscriptions, pipes and queue policies of the app's routes (adds the
    parameters they need to ``parameters``).

    Raises:
        ConfigurationError: a route names no queue of the app, an SNS route no topic
            ARN, an S3 route no bucket, a DynamoDB stream route neither table nor
            stream ARN, or two routes clash on a logical id.
    """
    out: Doc = {}
    statements: dict[str, list[Doc]] = {}
    for route in routes_of(ids.app):
        if route.service == "dynamodb":
            for logical_id, resource in pipe_resources(route, ids, parameters).items():
                _new(out, logical_id, resource)
            continue
        if route.service not in ("events", "sns", "s3"):
            continue
        queue_id = _queue_id(route, ids)
        base = camel(route.name)
        if route.service == "events":
            rule_id = base + "Rule"
            _new(
                out,
                rule_id,
                {
                    "Type": "AWS::Events::Rule",
                    "Properties": {
                        "Description": f"sqsq route to task {route.task}",
                        "EventPattern": json.loads(route.event_pattern()),
                        "State": "ENABLED",
                        "Targets": [{"Id": "sqsq", "Arn": get_att(queue_id)}],
                    },
                },
            )
            condition: Doc = {"ArnEquals": {"aws:SourceArn": get_att(rule_id)}}
            statements.setdefault(queue_id, []).append(_send("events", queue_id, condition))
        elif route.service == "sns":
            topic = _required(route, route.topic_arn, "topic ARN (on_sns(topic_arn=...))")
            _new(
                out,
                base + "Subscription",
                {
                    "Type": "AWS::SNS::Subscription",
                    "Properties": {
                        "Protocol": "sqs",
                        "TopicArn": topic,
                        "Endpoint": get_att(queue_id),
                        "RawMessageDelivery": False,
                        # Subscribe is called in the topic's region (without it, in the
                        # stack's: a topic elsewhere fails the stack)
                        **({"Region": part[3]} if len(part := topic.split(":")) >= 6 else {}),
                    },
                },
            )
            condition = {"ArnEquals": {"aws:SourceArn": topic}}
            statements.setdefault(queue_id, []).append(_send("sns", queue_id, condition))
        else:
            bucket = _required(route, route.bucket, "bucket (on_s3(bucket=...))")
            condition = {
                "ArnEquals": {"aws:SourceArn": sub(f"arn:${{AWS::Partition}}:s3:::{bucket}")},
                "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
            }
            statements.setdefault(queue_id, []).append(_send("s3", queue_id, condition))
    for queue_id, allowed in statements.items():
        _new(
            out,
            queue_id + "RoutePolicy",
            {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {
                    "Queues": [ref(queue_id)],
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": allowed},
                },
            },
        )
    return out


def notification_configuration(routes: list[Route], ids: Declared) -> Doc:
    """One bucket's NotificationConfiguration (S3's shape) for its routes; each
    QueueArn is a ``${<Queue>.Arn}`` placeholder for ``Fn::Sub``.

    A route's prefix and suffix are the real key's (the router matches the decoded
    key); S3 wants special characters of a filter rule's value URL-encoded
    ("Configuring event notifications using object key name filtering"), as the keys
    in its notifications are — so they are written encoded here (``/`` kept)."""
    configurations: list[Doc] = []
    for route in routes:
        rules = [
            {"Name": name, "Value": quote_plus(value, safe="/")}
            for name, value in (("prefix", route.prefix), ("suffix", route.suffix))
            if value
        ]
        configuration: Doc = {
            "Id": f"sqsq-{route.task}",
            "QueueArn": "${" + _queue_id(route, ids) + ".Arn}",
            "Events": list(route.events),
        }
        if rules:
            configuration["Filter"] = {"Key": {"FilterRules": rules}}
        configurations.append(configuration)
    return {"QueueConfigurations": configurations}


def route_outputs(ids: Declared) -> Doc:
    """For each routed S3 bucket, its notification configuration as a JSON string
    (``Fn::Sub`` fills in the queue ARNs)."""
    buckets: dict[str, list[Route]] = {}
    for route in routes_of(ids.app):
        if route.service == "s3":
            buckets.setdefault(_required(route, route.bucket, "bucket"), []).append(route)
    out: Doc = {}
    named: dict[str, str] = {}
    for bucket, routes in buckets.items():
        output_id = camel(bucket) + "Notification"
        other = named.setdefault(output_id, bucket)
        if other != bucket:
            raise ConfigurationError(
                f"buckets {other} and {bucket} share the output id {output_id}: "
                "route one of them by hand (docs/guides/enqueue-from-aws.md)"
            )
        out[output_id] = {
            "Description": (
                f"aws s3api put-bucket-notification-configuration --bucket {bucket} "
                "--notification-configuration '<this value>'"
            ),
            "Value": sub(json.dumps(notification_configuration(routes, ids), sort_keys=True)),
        }
    return out


def add_routes(doc: Doc, ids: Declared) -> None:
    """Add the app's routes to a target's template ``doc`` (its Resources, Outputs
    and Parameters), in place.

    Raises:
        ConfigurationError: see :func:`route_resources`; or a route's logical id is
            taken by one of the target's own resources.
    """
    parameters: Doc = {}
    for section, added in (
        ("Resources", route_resources(ids, parameters)),
        ("Outputs", route_outputs(ids)),
        ("Parameters", parameters),
    ):
        if not added:
            continue
        existing = doc.setdefault(section, {})
        taken = sorted(set(existing) & set(added))
        if taken:
            raise ConfigurationError(f"routes' {section} clash with the template's: {taken}")
        existing.update(added)
