"""Test-only sqsq apps, importable by worker subprocesses as ``tests.apps.<module>:app``."""
