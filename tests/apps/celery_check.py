"""A Celery app and a partial sqsq port of it, for ``sqsq celery check``
(tests/test_celery_interop.py): one task missing, one renamed (an alias), options
that differ, and beat entries of each kind."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.schedules import BaseSchedule, crontab

import sqsq
from sqsq.interop import use_celery


class Payday(BaseSchedule):
    """A schedule of the user's own (as a ``solar`` one): no EventBridge form."""

    def is_due(self, last_run_at: object) -> tuple[bool, float]:
        return False, 3600.0


celery = Celery("shop", set_as_current=False)
celery.conf.update(
    timezone="Europe/Paris",
    beat_schedule={
        "nightly": {"task": "shop.report", "schedule": crontab(minute=30, hour=2)},
        "weekdays": {"task": "shop.report", "schedule": crontab(minute=0, day_of_week="mon-fri")},
        "often": {"task": "shop.ping", "schedule": timedelta(minutes=5)},
        "too-often": {"task": "shop.ping", "schedule": 30.0},
        "payday": {"task": "shop.ping", "schedule": Payday()},
    },
)


@celery.task(name="shop.charge", rate_limit="10/m", time_limit=60, acks_late=True, shared=False)
def charge(order: str) -> str:
    return order


@celery.task(name="shop.report", acks_late=True, shared=False)
def report() -> None: ...


@celery.task(name="shop.ping", shared=False)
def ping() -> None: ...


@celery.task(name="shop.refund", acks_late=True, shared=False)
def refund(order: str) -> str:
    return order


app = sqsq.App("shop")
use_celery(app, aliases={"shop.report": "reports.daily"})


@app.task(name="shop.charge", rate_limit="10/m", time_limit=30)
def charge_port(order: str) -> str:
    return order


@app.task(name="reports.daily")
def report_port() -> None: ...


@app.task(name="shop.ping")
def ping_port() -> None: ...
