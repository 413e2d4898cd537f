"""Flow control: rate limits and concurrency limits shared by every worker and
Lambda handler of an app, through DynamoDB.

The core never imports this package: the worker's poller, its runner and the
Lambda handler ask the App (the facade), which installs it on first use.
"""

from __future__ import annotations
