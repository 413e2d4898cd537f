"""Flow control: rate limits and concurrency limits shared by every worker and
Lambda handler of an app, through DynamoDB.

The core never imports this package: the worker's poller, its runner and the
Lambda handler ask the App (the facade, ``App.flow_control()``), which installs it
on first use — only when the app has a limit.

- ``rates.py``: Celery's rate syntax; a bucket's batch and shards.
- ``bucket.py``: the token bucket (GCRA clock, conditional writes, batches).
- ``overrides.py``: runtime overrides (``sqsq limits``), read with the revocation poll.
- ``control.py``: :class:`FlowControl`, what the poller, runner and Lambda ask.
"""

from __future__ import annotations

from .control import FlowControl, Hold, install
from .rates import Rate, parse_rate

__all__ = ["FlowControl", "Hold", "Rate", "install", "parse_rate"]
