"""``sqsq.crontab`` against Celery's own ``crontab``: the same arguments fire at the same
times.

For 200 argument sets — the classic ones by hand, the rest from a seeded generator
over Celery's grammar — the next 20 fire times from a fixed start are computed by
Celery (``crontab.remaining_delta``, as beat does: each fire is the last run of the
next) and by sqsq's evaluator of the EventBridge expression ``sqsq.crontab`` wrote
(``Expression.fire_times``: what ``sqsq schedule ls``, ``schedule serve`` and the
Scheduler simulator use, with EventBridge's Day-of-week numbering, SUN = 1).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from celery.schedules import crontab as celery_crontab

import sqsq
from sqsq.errors import InvalidScheduleExpression
from sqsq.schedules.expressions import parse

#: A Friday evening before a month's end (and in February, so 29-31 are missing).
START = datetime(2027, 2, 26, 21, 47, 30, tzinfo=UTC)
FIRES = 20
EXPRESSIONS = 200

#: The classic ones; each is passed to both as is.
HAND_PICKED: list[dict[str, Any]] = [
    {},
    {"minute": 0, "hour": 0},
    {"minute": 0, "hour": "*/3"},
    {"minute": "*/15"},
    {"minute": 30, "hour": 7, "day_of_week": "mon-fri"},
    {"minute": 30, "hour": 7, "day_of_week": "1-5"},
    {"minute": 0, "hour": 9, "day_of_week": 0},
    {"minute": 0, "hour": 9, "day_of_week": 1},
    {"minute": 0, "hour": 9, "day_of_week": 6},
    {"minute": 0, "hour": 9, "day_of_week": "sunday"},
    {"minute": 0, "hour": 9, "day_of_week": "*/2"},
    {"minute": 0, "hour": 9, "day_of_week": "*/3"},
    {"minute": 0, "hour": 9, "day_of_week": "*/7"},
    {"minute": 0, "hour": 9, "day_of_week": "sat,sun"},
    {"minute": 0, "hour": 9, "day_of_week": "fri-mon"},
    {"minute": 0, "hour": 9, "day_of_week": "Tue,Thu"},
    {"minute": 0, "hour": 9, "day_of_week": {1, 3, 5}},
    {"minute": 0, "hour": 0, "day_of_month": "1"},
    {"minute": 0, "hour": 0, "day_of_month": 31},
    {"minute": 0, "hour": 0, "day_of_month": "29"},
    {"minute": 0, "hour": 0, "day_of_month": "2-30/2"},
    {"minute": 0, "hour": 0, "day_of_month": "1-7,15-21"},
    {"minute": 0, "hour": 0, "day_of_month": "*/10"},
    {"minute": 0, "hour": 0, "day_of_month": 29, "month_of_year": 2},
    {"minute": 0, "hour": 0, "month_of_year": "*/3"},
    {"minute": 0, "hour": 0, "month_of_year": "2-12/2"},
    {"minute": 0, "hour": 0, "day_of_month": 1, "month_of_year": "jan,jul"},
    {"minute": 0, "hour": 6, "day_of_week": "mon", "month_of_year": "mar-may"},
    {"minute": 0, "hour": 0, "day_of_week": "mon", "day_of_month": "1-7"},
    {"minute": 0, "hour": 0, "day_of_week": 5, "day_of_month": "15-21"},
    {"minute": 0, "hour": 0, "day_of_week": "sun", "day_of_month": "29-31"},
    {"minute": "1,13,30-45,50-59/2", "hour": 3},
    {"minute": 5, "hour": "0,8-17/2"},
    {"minute": [0, 30], "hour": [9, 17]},
    {"minute": 0, "hour": "22-2"},
    {"minute": "58-3", "hour": 23, "day_of_month": 28},
]


def celery_fires(kwargs: dict[str, Any], count: int) -> list[datetime]:
    """The next ``count`` runs of Celery's crontab after START, as beat computes them."""
    schedule = celery_crontab(nowfun=lambda: START, **kwargs)
    fires, last = [], START
    for _ in range(count):
        last_run_at, delta, _now = schedule.remaining_delta(last, tz=UTC)
        last = last_run_at + delta
        fires.append(last.astimezone(UTC))
    return fires


def sqsq_fires(kwargs: dict[str, Any], count: int) -> list[datetime]:
    return parse(sqsq.crontab(**kwargs)).next_fire_times(START, "UTC", count=count)


# --- a seeded generator over Celery's grammar ---------------------------------------------

DAYS = ["sun", "monday", "Tue", "wed", "thursday", "FRI", "sat"]
MONTHS = ["jan", "feb", "march", "apr", "may", "jun", "jul", "Aug", "sep", "oct", "nov", "dec"]


def part(rng: random.Random, low: int, size: int, names: list[str] | None) -> str:
    """One comma-separated part: n, a-b (wrapping too), */s, a-b/s, a name, a name range."""

    def value() -> str:
        number = rng.randrange(low, low + size)
        return names[number - low] if names and rng.random() < 0.4 else str(number)

    kind = rng.choice(["n", "n", "range", "wrap", "star-step", "range-step"])
    if kind == "n":
        return value()
    if kind == "star-step":
        return f"*/{rng.randint(1, size)}"
    first, last = value(), value()
    text = f"{first}-{last}"
    return f"{text}/{rng.randint(1, max(2, size // 3))}" if kind == "range-step" else text


def spec(rng: random.Random, low: int, size: int, names: list[str] | None = None) -> Any:
    """A cronspec in one of Celery's shapes: an int, a set, a list, or a string."""
    shape = rng.choice(["int", "set", "list", "str", "str", "str"])
    if shape == "int":
        return rng.randrange(low, low + size)
    if shape in ("set", "list"):
        values = rng.sample(range(low, low + size), rng.randint(1, min(4, size)))
        return set(values) if shape == "set" else values
    return ",".join(part(rng, low, size, names) for _ in range(rng.randint(1, 3)))


def generated(seed: int = 21) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    while True:
        kwargs: dict[str, Any] = {
            # sparse minutes and hours, so that 20 fires span days and months
            "minute": rng.choice([rng.randrange(60), spec(rng, 0, 60)]),
            "hour": rng.choice([rng.randrange(24), spec(rng, 0, 24), "*"]),
        }
        days = rng.choice(["week", "week", "month", "neither", "nth"])
        if days == "week":
            kwargs["day_of_week"] = spec(rng, 0, 7, DAYS)
        elif days == "month":
            kwargs["day_of_month"] = spec(rng, 1, 31)
        elif days == "nth":
            n = rng.randint(1, 5)
            kwargs["day_of_week"] = rng.choice([rng.randrange(7), rng.choice(DAYS)])
            kwargs["day_of_month"] = f"{7 * n - 6}-{min(7 * n, 31)}"
        if rng.random() < 0.4:
            kwargs["month_of_year"] = spec(rng, 1, 12, MONTHS)
        yield kwargs


def agreed_expressions() -> list[dict[str, Any]]:
    """HAND_PICKED and generated argument sets, up to EXPRESSIONS that Celery accepts."""
    cases = list(HAND_PICKED)
    for kwargs in generated():
        if len(cases) == EXPRESSIONS:
            return cases
        try:
            celery_crontab(**kwargs)
        except ValueError:
            continue  # refused by Celery: see test_sqsq_refuses_what_celery_refuses
        cases.append(kwargs)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("kwargs", agreed_expressions(), ids=repr)
def test_next_20_fire_times_agree_with_celery(kwargs: dict[str, Any]) -> None:
    assert sqsq_fires(kwargs, FIRES) == celery_fires(kwargs, FIRES), sqsq.crontab(**kwargs)


def test_the_table_covers_the_grammar() -> None:
    """The 200 are not 200 variations of one thing: each shape of each field occurs."""
    cases = agreed_expressions()
    written = [sqsq.crontab(**kwargs) for kwargs in cases]
    assert len(cases) == EXPRESSIONS
    assert len(set(written)) > 180
    fields = [text[len("cron(") : -1].split() for text in written]
    assert sum("#" in f[4] for f in fields) >= 10  # one weekday in week n
    assert sum(f[4] not in ("?", "*") and "#" not in f[4] for f in fields) >= 50
    assert sum(f[2] not in ("?", "*") for f in fields) >= 20
    assert sum(f[3] != "*" for f in fields) >= 40
    assert sum("/" in " ".join(f) for f in fields) >= 10  # a step EventBridge writes as one
    strings = [value for kwargs in cases for value in kwargs.values() if isinstance(value, str)]
    assert sum("/" in s for s in strings) >= 50  # steps: written as a step or as a list
    assert any("-" in s and "/" in s for s in strings)
    assert any(s[:3].lower() in ("mon", "tue", "sat", "sun") for s in strings)


def test_late_days_in_short_months_as_celery() -> None:
    """Days 29-31 in short months: where Celery refuses (no month has the day), sqsq
    refuses; where it accepts, the fires agree (February 29 only in leap years)."""
    rng = random.Random(29)
    refused = accepted = 0
    for _ in range(60):
        kwargs = {
            "minute": 0,
            "hour": 0,
            "day_of_month": rng.choice([rng.randint(29, 31), f"{rng.randint(29, 30)}-31"]),
            "month_of_year": rng.sample([2, 4, 6, 9, 11, "feb", "jun"], rng.randint(1, 2)),
        }
        kwargs["month_of_year"] = ",".join(map(str, kwargs["month_of_year"]))
        try:
            celery_crontab(**kwargs)
        except ValueError:
            refused += 1
            with pytest.raises(InvalidScheduleExpression, match=r"day_of_month=.*month_of_year="):
                sqsq.crontab(**kwargs)
        else:
            accepted += 1
            assert sqsq_fires(kwargs, 3) == celery_fires(kwargs, 3)
    assert refused > 0
    assert accepted > 0


@pytest.mark.parametrize(
    ("sqsq_day", "celery_day"), [(7, 0), ("7", "0"), ("5-7", "5-6,0"), ("7-2", "0-2")]
)
def test_day_of_week_7_is_sunday_as_in_cron(sqsq_day: Any, celery_day: Any) -> None:
    """Celery itself refuses 7; cron(5) and the sqsq docs read it as Sunday."""
    assert sqsq_fires({"minute": 0, "hour": 9, "day_of_week": sqsq_day}, FIRES) == (
        celery_fires({"minute": 0, "hour": 9, "day_of_week": celery_day}, FIRES)
    )


def test_day_of_week_1_is_monday_not_eventbridge_sunday() -> None:
    """The breaking fix: before, ``day_of_week=1`` was written as EventBridge's 1 (SUN)."""
    assert sqsq.crontab(minute=0, hour=9, day_of_week=1) == "cron(0 9 ? * MON *)"
    assert sqsq.crontab(minute=0, hour=9, day_of_week="1-5") == "cron(0 9 ? * MON-FRI *)"
    fires = sqsq_fires({"minute": 0, "hour": 9, "day_of_week": "1-5"}, 30)
    weekdays = {fire.strftime("%a") for fire in fires}
    assert weekdays == {"Mon", "Tue", "Wed", "Thu", "Fri"}


@pytest.mark.parametrize(
    ("kwargs", "written"),
    [
        ({"minute": "*/15"}, "cron(0/15 * * * ? *)"),
        ({"minute": "5-59/15"}, "cron(5/15 * * * ? *)"),
        ({"hour": "22-2", "minute": 0}, "cron(0 0-2,22,23 * * ? *)"),
        ({"minute": 0, "day_of_week": "*/2"}, "cron(0 * ? * SUN,TUE,THU,SAT *)"),
        ({"minute": 0, "day_of_week": "fri-mon"}, "cron(0 * ? * SUN,MON,FRI,SAT *)"),
        ({"minute": 0, "day_of_week": "0-6"}, "cron(0 * * * ? *)"),
        ({"minute": 0, "day_of_week": "mon", "day_of_month": "1-7"}, "cron(0 * ? * 2#1 *)"),
        ({"minute": 0, "day_of_month": "1-31", "day_of_week": 3}, "cron(0 * ? * WED *)"),
        ({"minute": 0, "month_of_year": "*/3"}, "cron(0 * * 1/3 ? *)"),
        ({"minute": 0, "month_of_year": "2-12/2"}, "cron(0 * * 2/2 ? *)"),
        ({"minute": 0, "hour": 0, "day_of_month": "L"}, "cron(0 0 L * ? *)"),
        ({"minute": 0, "hour": 0, "day_of_month": "15W"}, "cron(0 0 15W * ? *)"),
        ({"minute": 0, "hour": 0, "year": "2027-2030"}, "cron(0 0 * * ? 2027-2030)"),
    ],
)
def test_written_expression(kwargs: dict[str, Any], written: str) -> None:
    assert sqsq.crontab(**kwargs) == written


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"day_of_week": 1, "day_of_month": 2}, ["day_of_week=1", "day_of_month=2"]),
        ({"day_of_week": "mon,fri", "day_of_month": "1-7"}, ["day_of_week=", "day_of_month="]),
        ({"day_of_week": "mon", "day_of_month": "1-8"}, ["day_of_week=", "day_of_month="]),
        ({"day_of_week": "mon", "day_of_month": "L"}, ["day_of_week=", "day_of_month="]),
        ({"day_of_month": 30, "month_of_year": 2}, ["day_of_month=30", "month_of_year=2"]),
        ({"day_of_month": 31, "month_of_year": "apr,jun"}, ["day_of_month=31"]),
        ({"minute": 60}, ["minute=60", "0-59"]),
        ({"minute": "5/15"}, ["minute='5/15'", "5-59/15"]),
        ({"minute": "*/0"}, ["minute='*/0'", "step"]),
        ({"minute": "*/"}, ["minute='*/'", "step"]),
        ({"minute": ""}, ["minute=''"]),
        ({"minute": []}, ["minute=[]", "empty"]),
        ({"minute": 1.5}, ["minute=1.5"]),
        ({"minute": True}, ["minute=True"]),
        ({"minute": [1, "2"]}, ["minute=[1, '2']"]),
        ({"minute": "mon"}, ["minute='mon'"]),
        ({"minute": "1-5-7"}, ["minute='1-5-7'"]),
        ({"hour": 24}, ["hour=24", "0-23"]),
        ({"hour": "-1"}, ["hour='-1'"]),
        ({"day_of_week": 8}, ["day_of_week=8", "7 for Sunday"]),
        ({"day_of_week": "jan"}, ["day_of_week='jan'", "day name"]),
        ({"day_of_week": "monkey"}, ["day_of_week='monkey'"]),
        ({"day_of_week": "*/7L"}, ["day_of_week='*/7L'"]),
        ({"day_of_week": "2#1"}, ["day_of_week='2#1'"]),
        ({"day_of_month": 0}, ["day_of_month=0", "1-31"]),
        ({"day_of_month": 32}, ["day_of_month=32", "1-31"]),
        ({"month_of_year": 13}, ["month_of_year=13", "1-12"]),
        ({"month_of_year": "mon"}, ["month_of_year='mon'", "month name"]),
        ({"year": 1969}, ["Year", "1970-2199"]),
        (
            {
                "minute": [m for m in range(60) if m % 3],
                "hour": [h for h in range(24) if h % 3],
                "day_of_month": [d for d in range(1, 32) if d % 3],
                "month_of_year": [m for m in range(1, 13) if m % 3],
                "year": "2027,2029,2031,2033",
            },
            ["crontab(minute=…)", "256"],
        ),
    ],
    ids=repr,
)
def test_refused_naming_the_field(kwargs: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(InvalidScheduleExpression) as caught:
        sqsq.crontab(**kwargs)
    for name in named:
        assert name in str(caught.value)
    assert isinstance(caught.value, sqsq.ConfigurationError)


def test_synced_crontab_schedules_fire_on_celerys_days_in_the_simulator(
    local_aws: Any, sqsq_prefix: str
) -> None:
    """End to end: ``sqsq.crontab`` declared, synced to the endpoint as EventBridge
    Scheduler schedules, read back and fired by the Scheduler simulator over nine
    weeks — on the days Celery's crontab is due."""
    from datetime import timedelta

    from sqsq.resources import apply as create_resources
    from sqsq.schedules.scheduler import apply as sync
    from sqsq.testing import SimulatedScheduler

    declared = {
        "weekdays": {"minute": 0, "hour": 9, "day_of_week": "1-5"},
        "first-monday": {"minute": 0, "hour": 0, "day_of_week": 1, "day_of_month": "1-7"},
        "even-days": {"minute": 30, "hour": "*/12", "day_of_week": "*/2"},
    }
    app = sqsq.App(sqsq_prefix + "crontab")

    @app.task(name="noop")
    def noop() -> None: ...

    for name, kwargs in declared.items():
        app.add_periodic_task(sqsq.crontab(**kwargs), noop, name=name)
    create_resources(app)
    sync(app)

    sim = SimulatedScheduler.for_app(app, now=START, delivery="none")
    run = sim.advance(timedelta(weeks=9))
    for name, kwargs in declared.items():
        fired = [fire.scheduled_time for fire in run.select(name)]
        assert fired
        assert fired == celery_fires(kwargs, len(fired)), name
