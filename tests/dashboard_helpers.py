"""Serving the dashboard for tests: uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

#: Longest a test waits for the server to start, seconds.
START_S = 30.0


@contextmanager
def served(apps: Sequence[Any], **options: Any) -> Iterator[str]:
    """Serve the dashboard of ``apps`` (``create_app``'s ``options``); yields its base
    URL (``http://127.0.0.1:<port>``)."""
    import uvicorn

    from sqsq.dashboard import create_app

    config = uvicorn.Config(
        create_app(apps, **options), host="127.0.0.1", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the dashboard did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
