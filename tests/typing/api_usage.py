"""Checked by mypy --strict in tests/test_typing.py: the public API type-checks at
the call site. Lines ending in ``# error`` must be reported, no other line."""

from __future__ import annotations

import sqsq
from sqsq.task import BoundTask

app = sqsq.App("typing")


@app.task
def plain(x: int) -> int:
    return x


@app.task(queue="emails", max_retries=2)
def render(to: str, subject: str) -> str:
    return to + subject


@app.task(bind=True, autoretry_for=(ValueError,))
def bound(self: BoundTask, order_id: str) -> int:
    return self.request.attempt


async def producers() -> None:
    plain.delay(1)
    render.delay("a@example.com", "hi")
    bound.delay("o-1")
    result = await render.adelay("a@example.com", subject="hi")
    value: object = await result.aget(timeout=1)
    del value
    plain.delay("one")  # error
    render.delay("a@example.com")  # error
    bound.delay(1)  # error


def eager() -> None:
    plain.apply(1)
    plain.apply(args=(1,), kwargs={})  # Celery's form
    plain.apply((1,), {}, throw=True)  # Celery's positional form
    render.apply("a@example.com", subject="hi")
    plain.apply("one")  # error
