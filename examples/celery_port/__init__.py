"""A small Celery-on-SQS app (``before/``) and its port to sqsq (``after/``).

docs/migrating-from-celery.md walks through the diff; tests/test_celery_port.py runs
both with the same inputs (Celery in eager mode, sqsq against the embedded endpoint
with a real worker) and checks that they give the same results.
"""
