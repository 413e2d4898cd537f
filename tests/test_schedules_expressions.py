"""EventBridge schedule expressions: validation and next fire times.

Fire times are checked against independent sources, never against sqsq's own
code: the examples of AWS's "Cron expressions reference" (their meaning written
out by hand here), its documented daylight-saving behaviour ("EventBridge
Scheduler automatically adjusts your schedule for Daylight Saving Time ... skipped
if the cron expression falls on a non-existent date and time ... runs only once"
in the fall), and pyawscron, a second, separately written AWS cron implementation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyawscron import AWSCron

import sqsq
from sqsq.schedules.expressions import InvalidScheduleExpression, parse


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# 2026-01-01 is a Thursday.
AWS_DOCUMENTED_EXAMPLES = [
    # "Run at 10:00 am (UTC+0) every day"
    ("cron(0 10 * * ? *)", _utc(2026, 1, 1), [_utc(2026, 1, 1, 10), _utc(2026, 1, 2, 10)]),
    # "Run at 12:15 pm (UTC+0) every day"
    ("cron(15 12 * * ? *)", _utc(2026, 1, 1), [_utc(2026, 1, 1, 12, 15), _utc(2026, 1, 2, 12, 15)]),
    # "Run at 6:00 pm (UTC+0) every Monday through Friday" (Thu, Fri, then Mon)
    (
        "cron(0 18 ? * MON-FRI *)",
        _utc(2026, 1, 1),
        [_utc(2026, 1, 1, 18), _utc(2026, 1, 2, 18), _utc(2026, 1, 5, 18)],
    ),
    # "Run at 8:00 am (UTC+0) every first day of the month"
    (
        "cron(0 8 1 * ? *)",
        _utc(2026, 1, 1),
        [_utc(2026, 1, 1, 8), _utc(2026, 2, 1, 8), _utc(2026, 3, 1, 8)],
    ),
    # "Run every 15 minutes"
    (
        "cron(0/15 * * * ? *)",
        _utc(2026, 1, 1),
        [_utc(2026, 1, 1, 0, 15), _utc(2026, 1, 1, 0, 30), _utc(2026, 1, 1, 0, 45)],
    ),
    # "Run every 10 minutes Monday through Friday" (from Friday 23:45: the weekend is skipped)
    (
        "cron(0/10 * ? * MON-FRI *)",
        _utc(2026, 1, 2, 23, 45),
        [_utc(2026, 1, 2, 23, 50), _utc(2026, 1, 5, 0, 0), _utc(2026, 1, 5, 0, 10)],
    ),
    # "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm (UTC+0)"
    (
        "cron(0/5 8-17 ? * MON-FRI *)",
        _utc(2026, 1, 1, 17, 50),
        [_utc(2026, 1, 1, 17, 55), _utc(2026, 1, 2, 8, 0), _utc(2026, 1, 2, 8, 5)],
    ),
    # "Run at 9 a.m. (UTC) the first Monday of each month"
    (
        "cron(0 9 ? * 2#1 *)",
        _utc(2026, 1, 1),
        [_utc(2026, 1, 5, 9), _utc(2026, 2, 2, 9), _utc(2026, 3, 2, 9)],
    ),
    # The reference's wildcards: "3#2 is the second Tuesday of the month"
    ("cron(0 9 ? * 3#2 *)", _utc(2026, 1, 1), [_utc(2026, 1, 13, 9), _utc(2026, 2, 10, 9)]),
    # "3W specifies the weekday closest to the third day of the month"
    # (Sat 3 Jan -> Fri 2 Jan; Tue 3 Feb; Tue 3 Mar)
    (
        "cron(0 9 3W * ? *)",
        _utc(2026, 1, 1),
        [_utc(2026, 1, 2, 9), _utc(2026, 2, 3, 9), _utc(2026, 3, 3, 9)],
    ),
    # "L ... specifies the last day of the month"
    (
        "cron(0 9 L * ? *)",
        _utc(2026, 1, 1),
        [_utc(2026, 1, 31, 9), _utc(2026, 2, 28, 9), _utc(2026, 3, 31, 9)],
    ),
    # the Year field: 1970-2199
    (
        "cron(0 12 1 1 ? 2027-2029)",
        _utc(2026, 6, 1),
        [_utc(2027, 1, 1, 12), _utc(2028, 1, 1, 12), _utc(2029, 1, 1, 12)],
    ),
]


@pytest.mark.parametrize(("text", "after", "expected"), AWS_DOCUMENTED_EXAMPLES)
def test_fire_times_of_aws_documented_examples(
    text: str, after: datetime, expected: list[datetime]
) -> None:
    assert parse(text).next_fire_times(after, count=len(expected)) == expected


# Checked against pyawscron (UTC; it computes in UTC only).
SECOND_IMPLEMENTATION = [
    "cron(0 9 ? * 6L *)",  # last Friday
    "cron(0 9 ? * 1 *)",  # Sundays (SUN = 1, not 0)
    "cron(0 9 ? * 7 *)",  # Saturdays
    "cron(0 9 ? * 2-6 *)",
    "cron(0 9 ? * SUN,WED *)",
    "cron(0 9 ? * 5#3 *)",  # third Thursday
    "cron(0 9 ? * 2#5 *)",  # fifth Monday: only some months have one
    "cron(0 12 15W * ? *)",
    "cron(0 12 1W * ? *)",  # 1st on a Saturday -> Monday the 3rd (never the previous month)
    "cron(0 12 31W * ? *)",  # months without a 31st do not fire
    "cron(0 12 L 2 ? *)",  # leap years
    "cron(5,35 1-3 10-12 * ? *)",
    "cron(0 0/6 ? JAN-MAR MON *)",
    "cron(30 23 L * ? *)",
]


@pytest.mark.parametrize("text", SECOND_IMPLEMENTATION)
def test_fire_times_agree_with_pyawscron(text: str) -> None:
    after = _utc(2026, 1, 1)
    ours = parse(text).next_fire_times(after, count=12)
    theirs: list[datetime] = []
    cron = AWSCron(text[len("cron(") : -1])
    cursor = after
    for _ in range(12):
        cursor = cron.occurrence(cursor).next()
        theirs.append(cursor)
    assert ours == theirs


@pytest.mark.parametrize(
    ("text", "zone", "after", "expected"),
    [
        # Europe/Berlin springs forward on 29 March 2026 at 02:00: 02:30 does not exist
        # that day, so it is skipped.
        (
            "cron(30 2 * * ? *)",
            "Europe/Berlin",
            _utc(2026, 3, 28),
            [_utc(2026, 3, 28, 1, 30), _utc(2026, 3, 30, 0, 30)],
        ),
        # ... and falls back on 25 October 2026: 02:30 happens twice and fires once.
        (
            "cron(30 2 * * ? *)",
            "Europe/Berlin",
            _utc(2026, 10, 24),
            [_utc(2026, 10, 24, 0, 30), _utc(2026, 10, 25, 0, 30), _utc(2026, 10, 26, 1, 30)],
        ),
        # America/New_York: spring forward on 8 March 2026 ...
        (
            "cron(30 2 * * ? *)",
            "America/New_York",
            _utc(2026, 3, 7),
            [_utc(2026, 3, 7, 7, 30), _utc(2026, 3, 9, 6, 30)],
        ),
        # ... fall back on 1 November 2026: an hourly schedule fires 01:00 once.
        (
            "cron(0 * * * ? *)",
            "America/New_York",
            _utc(2026, 11, 1, 4, 30),
            [_utc(2026, 11, 1, 5), _utc(2026, 11, 1, 7), _utc(2026, 11, 1, 8)],
        ),
        # A zone far from UTC: 09:00 in Tokyo is 00:00 UTC.
        ("cron(0 9 * * ? *)", "Asia/Tokyo", _utc(2026, 1, 1), [_utc(2026, 1, 2, 0)]),
    ],
)
def test_time_zones_across_daylight_saving_changes(
    text: str, zone: str, after: datetime, expected: list[datetime]
) -> None:
    assert parse(text).next_fire_times(after, zone, count=len(expected)) == expected


def test_rate_counts_fixed_durations_from_its_start() -> None:
    start = _utc(2026, 3, 28, 10, 7)
    times = parse("rate(1 day)").next_fire_times(
        _utc(2026, 3, 28, 11), "Europe/Berlin", count=2, start=start
    )
    # a day is 24 hours, across the spring-forward change too
    assert times == [start + timedelta(days=1), start + timedelta(days=2)]
    assert parse("rate(5 minutes)").next_fire_times(_utc(2026, 1, 1, 0, 1), count=2) == [
        _utc(2026, 1, 1, 0, 5),
        _utc(2026, 1, 1, 0, 10),
    ]


def test_at_fires_once_in_its_time_zone_and_end_date_stops_a_schedule() -> None:
    at = parse("at(2027-01-01T09:00:00)")
    assert at.next_fire_times(_utc(2026, 1, 1), "Europe/Paris", count=3) == [_utc(2027, 1, 1, 8)]
    assert at.next_fire_times(_utc(2027, 1, 2), "Europe/Paris") == []
    daily = parse("cron(0 9 * * ? *)")
    assert daily.next_fire_times(_utc(2026, 1, 1), end=_utc(2026, 1, 2, 12), count=5) == [
        _utc(2026, 1, 1, 9),
        _utc(2026, 1, 2, 9),
    ]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("cron(0 12 * * ?)", ["6 fields", "got 5"]),
        ("cron(0 12 * * ? * *)", ["6 fields", "got 7"]),
        ("cron(0 12 * * * *)", ["Day-of-month", "Day-of-week", "'?'"]),
        ("cron(0 12 ? * ? *)", ["Day-of-month", "Day-of-week", "'?'"]),
        ("cron(60 12 * * ? *)", ["field Minutes", "out of range"]),
        ("cron(0 24 * * ? *)", ["field Hours", "out of range"]),
        ("cron(0 12 32 * ? *)", ["field Day-of-month", "out of range"]),
        ("cron(0 12 * 13 ? *)", ["field Month", "out of range"]),
        ("cron(0 12 ? * 0 *)", ["field Day-of-week", "1-7 (SUN = 1)"]),
        ("cron(0 12 ? * 8 *)", ["field Day-of-week", "1-7"]),
        ("cron(0 12 ? * 3#1,6#3 *)", ["field Day-of-week", "one expression"]),
        ("cron(0 12 ? * 2#6 *)", ["field Day-of-week", "#n"]),
        ("cron(0 12 * * ? 1969)", ["field Year", "1970-2199"]),
        ("cron(0 12 * * ? 2300)", ["field Year", "1970-2199"]),
        ("cron(0 12 L * ? *) ", []),  # valid: surrounding space is ignored
        ("cron(0 L * * ? *)", ["field Hours", "'L' not allowed"]),
        ("cron(0 12 * * ? L)", ["field Year", "'L' not allowed"]),
        ("cron(0 12 W * ? *)", ["field Day-of-month"]),
        ("cron(0 12 * JANUARY ? *)", ["field Month"]),
        ("rate(1 minutes)", ["singular", "rate(1 minute)"]),
        ("rate(5 minute)", ["plural", "rate(5 minutes)"]),
        ("rate(0 minutes)", ["positive"]),
        ("rate(2 weeks)", ["minute(s), hour(s) or day(s)"]),
        ("rate(five minutes)", ["value unit"]),
        ("at(2027-02-30T09:00:00)", ["at()", "day is out of range"]),
        ("at(2027-01-01 09:00)", ["yyyy-mm-ddThh:mm:ss"]),
        ("every 5 minutes", ["not an EventBridge schedule expression"]),
        ("rate(84006 days)", []),  # valid: the span of the years 1970-2199
        ("rate(84007 days)", ["at most 84006 days", "1970-2199"]),
        ("rate(3000000 days)", ["at most 84006 days"]),
        ("rate(99999999999999999999999 minutes)", ["at most 84006 days"]),
        (f"cron(0 12 * * ? {','.join(['2030'] * 60)})", ["at most 256 characters"]),
    ],
)
def test_invalid_expressions_name_the_field_and_the_rule(text: str, names: list[str]) -> None:
    if not names:
        parse(text)
        return
    with pytest.raises(InvalidScheduleExpression) as caught:
        parse(text)
    for name in names:
        assert name in str(caught.value)
    assert isinstance(caught.value, sqsq.ConfigurationError)


def test_crontab_and_every_build_eventbridge_expressions() -> None:
    assert sqsq.crontab(minute=0, hour=12) == "cron(0 12 * * ? *)"
    assert sqsq.crontab(minute=30, hour=7, day_of_week="MON-FRI") == "cron(30 7 ? * MON-FRI *)"
    assert sqsq.crontab(minute=0, hour=0, day_of_month="L") == "cron(0 0 L * ? *)"
    assert sqsq.every(minutes=1) == "rate(1 minute)"
    assert sqsq.every(minutes=5) == "rate(5 minutes)"
    assert sqsq.every(hours=2) == "rate(2 hours)"
    assert sqsq.every(minutes=90) == "rate(90 minutes)"
    assert sqsq.every(period=timedelta(days=1)) == "rate(1 day)"
    with pytest.raises(InvalidScheduleExpression, match="whole number of minutes"):
        sqsq.every(period=timedelta(seconds=30))
    with pytest.raises(InvalidScheduleExpression, match="restrict one of the two"):
        sqsq.crontab(day_of_month=1, day_of_week="MON")
    with pytest.raises(InvalidScheduleExpression, match="hour=25"):
        sqsq.crontab(minute=0, hour=25)


def test_import_sqsq_loads_neither_the_schedules_package_nor_croniter() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, sqsq\n"
        "app = sqsq.App('light')\n"
        "@app.task\n"
        "def f() -> None: ...\n"
        "print(sorted(m for m in ('croniter', 'sqsq.schedules') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_rate_whose_fire_times_cannot_be_computed_is_refused_naming_the_schedule() -> None:
    app = sqsq.App("bounded")

    @app.task
    def job() -> None: ...

    # accepted before: every tick of the local scheduler then failed (year 10183)
    with pytest.raises(InvalidScheduleExpression, match=r"periodic task 'forever': .*84006"):
        app.add_periodic_task("rate(3000000 days)", job, name="forever")
    with pytest.raises(InvalidScheduleExpression, match="periodic task 'forever'"):

        @app.periodic_task("rate(3000000 days)", name="forever")
        def forever() -> None: ...

    assert app.periodic_tasks == {}
    # the largest rate() has fire times, far away
    periodic = app.add_periodic_task("rate(84006 days)", job, name="longest")
    assert periodic.next_fire_times(_utc(2026, 1, 1), count=2) == [
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=84006),
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=2 * 84006),
    ]
