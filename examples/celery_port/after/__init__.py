"""The same app on sqsq (see ``tasks.py``)."""
