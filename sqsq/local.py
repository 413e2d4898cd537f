"""The embedded local AWS endpoint: a moto server on a free loopback port.

Used by ``sqsq dev``, the quick-start demo, the test fixtures and the
benchmarks, so none of them needs an AWS account. Requires the ``local`` extra
(``pip install 'sqsq[local]'``). Run alone with ``python -m sqsq.local``.

Know its limits (see the design notes): moto is single-process Python, its
ReceiveMessage rescans the queue (cost grows with depth), it does not fire
EventBridge Scheduler schedules, expire DynamoDB TTL items or implement
StartMessageMoveTask. One rule of AWS's it breaks under concurrency is applied
here: DynamoDB's conditional writes are atomic (each request checks its condition
and writes as one step), while moto's threaded server reads, checks and writes in
separate steps, so two concurrent conditional writes could both pass — the
endpoint serializes moto's DynamoDB requests (:func:`_atomic_dynamodb`).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from .errors import ConfigurationError

#: Credentials and region for the local endpoint (moto accepts any).
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _atomic_dynamodb() -> None:
    """Make moto's DynamoDB requests one at a time in this process (once): a
    conditional write's check and write then cannot interleave with another
    request's, as on DynamoDB ("Condition expressions", DynamoDB Developer Guide).
    DynamoDB requests never block in moto (no long polls), so one lock costs little."""
    import threading

    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler, "_sqsq_atomic", False):
        return
    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    def atomic_call_action(self: Any) -> Any:
        with lock:
            return call_action(self)

    DynamoHandler.call_action = atomic_call_action  # type: ignore[method-assign]
    DynamoHandler._sqsq_atomic = True  # type: ignore[attr-defined]


class LocalEndpoint:
    """A moto server in a background thread (its DynamoDB requests one at a time,
    so conditional writes are atomic as on AWS: :func:`_atomic_dynamodb`).

    Args:
        host: loopback address to bind.
        port: TCP port; 0 picks a free one.

    Example::

        with LocalEndpoint() as endpoint:
            app = sqsq.App("demo", endpoint_url=endpoint.url)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "the embedded endpoint needs moto's server: pip install 'sqsq[local]'"
            ) from exc
        _atomic_dynamodb()
        self._server: Any = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""

    #: What the endpoint is, for messages ("moto").
    name = "moto"
    #: moto answers StartMessageMoveTask with HTTP 500.
    has_message_move_tasks = False
    #: moto accepts UpdateTimeToLive (it never expires items).
    has_ttl = True

    def start(self) -> LocalEndpoint:
        """Start serving; sets :attr:`url` (``http://127.0.0.1:<port>``)."""
        import logging

        for name, value in LOCAL_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        # moto's server logs every request through werkzeug at INFO
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def url_for(self, service: str) -> str:
        """The endpoint of ``service``: the one URL for every service."""
        del service
        return self.url

    def environ(self) -> dict[str, str]:
        """Environment variables that point a process (worker, CLI) here."""
        return {**LOCAL_ENVIRONMENT, "SQSQ_ENDPOINT_URL": self.url}

    def reset(self) -> None:
        """Forget every resource (moto's ``/moto-api/reset``)."""
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10
        ).close()

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:  # pragma: no cover - manual use
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Run the embedded local AWS endpoint.")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before the server thread starts
    endpoint = LocalEndpoint(port=options.port).start()
    print(endpoint.url, flush=True)
    signal.sigwait(stop)
    endpoint.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
