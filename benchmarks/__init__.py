"""Benchmarks of sqsq: run them as scripts, never as timed tests (see README.md)."""
