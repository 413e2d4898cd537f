"""sqsq's clients keep only the endpoint data of the services sqsq calls (a worker's
memory), and resolve every endpoint as stock botocore does."""

from __future__ import annotations

import os

import botocore.session
import pytest

import sqsq
from sqsq.clients import ENDPOINT_SERVICES

SERVICES = ("sqs", "dynamodb", "stepfunctions", "iam", "sts", "s3", "lambda", "cloudformation")
REGIONS = ("us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1")


@pytest.fixture
def real_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint override from the environment: AWS's own endpoints resolve."""
    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "SQSQ_ENDPOINT_URL")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.mark.parametrize("region", REGIONS)
def test_endpoints_resolve_as_stock_botocore_with_the_data_trimmed(
    real_endpoints: None, region: str
) -> None:
    app = sqsq.App("endpoints", region_name=region)
    stock = botocore.session.get_session()

    for service in SERVICES:  # kept (sqsq's own) and dropped (lambda, cloudformation)
        expected = stock.create_client(service, region_name=region).meta.endpoint_url
        assert app.clients.sync(service).meta.endpoint_url == expected, service

    loader = app.clients.sync("sqs")._loader
    endpoints, _ = loader.load_data_with_path("endpoints")
    for partition in endpoints["partitions"]:
        assert set(partition["services"]) <= ENDPOINT_SERVICES
        assert {"sqs", "dynamodb"} <= set(partition["services"]), partition["partition"]
