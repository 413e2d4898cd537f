"""Helpers of the fault suite (queue attributes and depths, waiting)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from tests.helpers import queue_counts


def set_queue(app: Any, queue: str, **attributes: str) -> str:
    """Set attributes of a logical queue; returns its URL."""
    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name(queue))
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    app.directory.forget(app.queue_name(queue))
    return str(app.directory.url(app.queue_name(queue)))


def counts(app: Any, queue: str) -> tuple[int, int]:
    """(visible, in flight) messages of a physical queue name."""
    sqs = app.clients.sync("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    return queue_counts(sqs, url)


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``condition`` until true; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class TcpProxy:
    """A loopback TCP proxy whose link can be cut: ``cut()`` closes every
    connection and refuses new ones (connection refused), ``restore()`` listens
    again on the same port. Used to take "AWS" away from a worker."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import socket
        import threading

        self._socket = socket
        self._threading = threading
        self.target = (target_host, target_port)
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._listener: Any = None
        self.port = 0
        self._listen()

    def _listen(self) -> None:
        listener = self._socket.socket(self._socket.AF_INET, self._socket.SOCK_STREAM)
        listener.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self, listener: Any) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = self._socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: Any, sink: Any) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        # shutdown() first: on Linux, close() alone leaves a thread blocked in
        # accept() listening, and the next connection would still get through
        with contextlib.suppress(OSError):
            self._listener.shutdown(self._socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for s in connections:
            try:
                s.shutdown(self._socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self._listen()

    def close(self) -> None:
        self.cut()
