"""The Celery app, as it was (see ``tasks.py``)."""
