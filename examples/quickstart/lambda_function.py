"""AWS Lambda entry point of the quick start (``template.yaml``).

The function's handler is ``examples.quickstart.lambda_function.handler``: an SQS
event source mapping with ``FunctionResponseTypes: [ReportBatchItemFailures]``
calls it with batches of records; it returns the ids of the records SQS must
deliver again. Settings come from the function's ``SQSQ_*`` environment variables.
"""

from __future__ import annotations

from examples.quickstart.app import app

handler = app.lambda_handler

__all__ = ["app", "handler"]
