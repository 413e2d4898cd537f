"""Fault 5: the AWS endpoint goes away for ~10 s under a running worker and comes back.

The worker reaches the local endpoint through a TCP proxy; the proxy cuts every
connection and refuses new ones for 10 s, then listens again on the same port.
The worker must not crash, no message may be lost, and the backlog must drain.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from sqsq import State
from tests.faults.faultapp import lines, sleepy
from tests.faults.helpers import TcpProxy, counts, wait_for

APP = "tests.faults.faultapp:app"
N = 60
OUTAGE_S = 10

pytestmark = pytest.mark.slow


def test_worker_rides_out_an_endpoint_outage(
    faults: Any, worker: Any, tmp_path: Path, sqsq_endpoint: Any
) -> None:
    out = tmp_path / "runs.txt"
    proxies: dict[str, TcpProxy] = {}  # one per endpoint (SQS and DynamoDB may differ)
    for service in ("sqs", "dynamodb"):
        url = sqsq_endpoint.url_for(service)
        if url not in proxies:
            host, port = url.removeprefix("http://").split(":")
            proxies[url] = TcpProxy(host, int(port))
    through = {
        f"AWS_ENDPOINT_URL_{s.upper()}": proxies[sqsq_endpoint.url_for(s)].url
        for s in ("sqs", "dynamodb")
    }
    try:
        results = sleepy.delay_many((0.2, str(out)) for _ in range(N))
        process = worker.start(
            APP,
            "-Q",
            "busy",
            "-c",
            "4",
            **through,
            # botocore alone would bridge 10 s with its retries; with 2 attempts the
            # worker's own backoff (receive loop, settle retries) must do it.
            SQSQ_MAX_ATTEMPTS="2",
        )
        wait_for(lambda: len(lines(str(out))) >= 10, 60, "the worker to get going")
        for proxy in proxies.values():
            proxy.cut()
        ran_before_cut = len(lines(str(out)))
        time.sleep(OUTAGE_S)
        assert process.poll() is None, "the worker died during the outage"
        ran_during_outage = len(lines(str(out)))
        for proxy in proxies.values():
            proxy.restore()
        for result in results:
            assert result.get(timeout=120) == "slept"
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        for proxy in proxies.values():
            proxy.close()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "failed (EndpointConnectionError" in stderr  # noticed and logged, one line each
    # The cut really stopped the flow: at most the tasks already held (4 running, 10
    # prefetched, the default prefetch) ran on, 2 lines each. botocore's retries
    # (standard mode) or the receive loop's backoff bridged it.
    assert ran_during_outage - ran_before_cut <= 2 * (4 + 10)
    assert all(r.state is State.SUCCESS for r in results)
    assert counts(faults, faults.queue_name("busy")) == (0, 0)
    assert counts(faults, faults.queue_name("busy") + "-dlq") == (0, 0)
