"""The app's foreign-event routes (:mod:`sqsq.events`) as CloudFormation.

For each route declared with ``app.on_event`` / ``app.on_sns`` / ``app.on_s3``::

    events  ->  AWS::Events::Rule (EventPattern = the route's pattern, target: the queue)
    sns     ->  AWS::SNS::Subscription (protocol sqs; raw delivery off: the router
                unwraps SNS notifications)
    s3      ->  an Output ``<Bucket>Notification``: the bucket's NotificationConfiguration
                as JSON, for ``aws s3api put-bucket-notification-configuration`` (the
                bucket is not the app's, so the stack does not create or change it)

and one AWS::SQS::QueuePolicy per routed queue letting each service send to it (only
from the rule, topic or bucket routed). DynamoDB stream routes (EventBridge Pipes) are
not emitted yet; ``json`` routes need nothing.
"""

from __future__ import annotations

import json

from ..errors import ConfigurationError
from ..events import Route, routes_of
from .resources import Declared, Doc, camel, get_att, ref, sub


def _queue_id(route: Route, ids: Declared) -> str:
    for queue in ids.resources.queues:
        if queue.logical == route.queue and not queue.dead_letter:
            return ids.queue_id(queue)
    raise ConfigurationError(f"route {route.name}: no queue {route.queue!r} in the app")


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


def route_resources(ids: Declared) -> Doc:
    """The rules, subscriptions and queue policies of the app's routes.

    Raises:
        ConfigurationError: a route names no queue of the app, an SNS route no topic
            ARN, an S3 route no bucket, or two routes clash on a logical id.
    """
    out: Doc = {}
    statements: dict[str, list[Doc]] = {}
    for route in routes_of(ids.app):
        if route.service not in ("events", "sns", "s3"):
            continue
        queue_id = _queue_id(route, ids)
        base = camel(route.name)
        if route.service == "events":
            rule_id = base + "Rule"
            if rule_id in out:
                raise ConfigurationError(f"routes clash on {rule_id}: rename one task")
            out[rule_id] = {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Description": f"sqsq route to task {route.task}",
                    "EventPattern": json.loads(route.event_pattern()),
                    "State": "ENABLED",
                    "Targets": [{"Id": "sqsq", "Arn": get_att(queue_id)}],
                },
            }
            condition: Doc = {"ArnEquals": {"aws:SourceArn": get_att(rule_id)}}
            statements.setdefault(queue_id, []).append(_send("events", queue_id, condition))
        elif route.service == "sns":
            topic = _required(route, route.topic_arn, "topic ARN (on_sns(topic_arn=...))")
            sub_id = base + "Subscription"
            if sub_id in out:
                raise ConfigurationError(f"routes clash on {sub_id}: rename one task")
            out[sub_id] = {
                "Type": "AWS::SNS::Subscription",
                "Properties": {
                    "Protocol": "sqs",
                    "TopicArn": topic,
                    "Endpoint": get_att(queue_id),
                    "RawMessageDelivery": False,
                },
            }
            condition = {"ArnEquals": {"aws:SourceArn": topic}}
            statements.setdefault(queue_id, []).append(_send("sns", queue_id, condition))
        else:
            bucket = _required(route, route.bucket, "bucket (on_s3(bucket=...))")
            condition = {
                "ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"},
                "StringEquals": {"aws:SourceAccount": sub("${AWS::AccountId}")},
            }
            statements.setdefault(queue_id, []).append(_send("s3", queue_id, condition))
    for queue_id, allowed in statements.items():
        out[queue_id + "RoutePolicy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [ref(queue_id)],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": allowed},
            },
        }
    return out


def notification_configuration(routes: list[Route], ids: Declared) -> Doc:
    """One bucket's NotificationConfiguration (S3's shape) for its routes; each
    QueueArn is a ``${<Queue>.Arn}`` placeholder for ``Fn::Sub``."""
    configurations: list[Doc] = []
    for route in routes:
        rules = [
            {"Name": name, "Value": value}
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
    for bucket, routes in buckets.items():
        out[camel(bucket) + "Notification"] = {
            "Description": (
                f"aws s3api put-bucket-notification-configuration --bucket {bucket} "
                "--notification-configuration '<this value>'"
            ),
            "Value": sub(json.dumps(notification_configuration(routes, ids), sort_keys=True)),
        }
    return out
