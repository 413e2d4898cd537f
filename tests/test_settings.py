"""Settings: keyword > ``SQSQ_*`` environment variable > default; bad values fail at
``App(...)`` with ConfigurationError, naming every problem."""

from __future__ import annotations

from datetime import timedelta

import pytest

import sqsq
from sqsq.settings import Settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.default_queue == "default"
    assert settings.max_receive_count == 5
    assert settings.wait_time_s == 20.0
    assert settings.check_revocations is True
    assert settings.coalesce_sends is True
    assert settings.send_linger_s == 0.002


def test_keyword_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQSQ_TABLE_NAME", "from-env")
    monkeypatch.setenv("SQSQ_MAX_RECEIVE_COUNT", "7")
    assert Settings().table_name == "from-env"
    assert Settings(table_name="from-keyword").table_name == "from-keyword"
    assert Settings().max_receive_count == 7
    assert Settings(max_receive_count=3).max_receive_count == 3


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("1", True), ("On", True), ("no", False), ("0", False)]
)
def test_booleans_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str, value: bool
) -> None:
    monkeypatch.setenv("SQSQ_COALESCE_SENDS", text)
    assert Settings().coalesce_sends is value


def test_durations_accept_timedelta_and_text() -> None:
    assert Settings(result_ttl_s=timedelta(hours=1)).result_ttl_s == 3600.0
    assert Settings(send_linger_s="0.01").send_linger_s == 0.01


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.default_queue = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"max_receive_count": 0}, "max_receive_count"),
        ({"max_receive_count": 1001}, "max_receive_count"),
        ({"max_attempts": "many"}, "max_attempts"),
        ({"wait_time_s": 21}, "wait_time_s"),
        ({"visibility_timeout_s": -1}, "visibility_timeout_s"),
        ({"retry_mode": "eager"}, "retry_mode"),
        ({"check_revocations": "maybe"}, "check_revocations"),
        ({"default_queue": "no spaces"}, "invalid SQS queue name 'no spaces'"),
        ({"send_linger_s": 2}, "send_linger_s"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_a_bad_setting_fails_at_app_construction(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(sqsq.ConfigurationError, match="invalid App settings") as info:
        sqsq.App("settings", **settings)
    assert problem in str(info.value)


def test_a_bad_environment_variable_fails_at_app_construction_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SQSQ_WAIT_TIME_S", "forever")
    monkeypatch.setenv("SQSQ_MAX_ATTEMPTS", "0")
    with pytest.raises(sqsq.ConfigurationError) as info:
        sqsq.App("settings")
    assert "wait_time_s" in str(info.value) and "forever" in str(info.value)
    assert "max_attempts" in str(info.value)  # every problem at once


def test_a_callers_boto3_session_builds_the_clients() -> None:
    import boto3

    session = boto3.Session(
        region_name="eu-west-1", aws_access_key_id="from-session", aws_secret_access_key="s"
    )
    app = sqsq.App("settings", boto3_session=session, endpoint_url="http://127.0.0.1:9")
    client = app.clients.sync("sqs")
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "from-session"
    app.close()


def test_without_a_session_the_clients_come_from_botocore_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    app = sqsq.App("settings", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    client = app.clients.sync("sqs")
    assert client._request_signer._credentials.access_key == "from-environment"
    app.close()
