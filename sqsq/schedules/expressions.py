"""EventBridge schedule expressions: ``rate()``, ``cron()``, ``at()``, and their fire times.

The grammar is EventBridge Scheduler's ("Schedule types in EventBridge Scheduler",
"Cron expressions reference")::

    rate(value unit)        unit: minute | minutes | hour | hours | day | days
                            (singular exactly when value is 1); at most
                            limits.SCHEDULER_MAX_RATE_DAYS (the cron years' span)
    cron(Minutes Hours Day-of-month Month Day-of-week Year)
        Minutes 0-59  , - * /        Day-of-month 1-31  , - * ? / L W
        Hours   0-23  , - * /        Month 1-12 or JAN-DEC  , - * /
        Day-of-week 1-7 or SUN-SAT (SUN = 1)  , - * ? L #
        Year 1970-2199  , - * /
        one of Day-of-month / Day-of-week is ``?``; ``#`` stands alone in its field
    at(yyyy-mm-ddThh:mm:ss)  one time, in the schedule's time zone

Parsing and next-fire computation of ``cron()`` are croniter's (pallets-eco,
well kept, handles ``L``, ``W``, ``#`` and years); this module only translates
EventBridge's dialect to it — ``?`` to ``*``, day-of-week 1-7 (SUN = 1) to
croniter's 0-6 (SUN = 0), ``nL`` to ``Ln``, the year as croniter's 7th field —
and checks the rules croniter does not know (six fields, the ``?`` rule, the
characters each field allows). Every error names the field and the rule.

Time zones follow Scheduler's documented daylight-saving behaviour: fire times
are computed on the wall clock of the zone; a time that does not exist (spring
forward) is skipped, and a time that occurs twice (fall back) fires once, at
its first occurrence. ``rate()`` counts fixed durations (a day is 24 hours)
from its anchor: the schedule's start date, else the Unix epoch.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .. import limits
from ..errors import InvalidScheduleExpression as InvalidScheduleExpression  # (re-exported)

#: Fields of an EventBridge cron expression, in order.
CRON_FIELDS = ("Minutes", "Hours", "Day-of-month", "Month", "Day-of-week", "Year")
#: Characters each field allows besides digits ("Cron expressions reference").
_ALLOWED = {
    "Minutes": ",-*/",
    "Hours": ",-*/",
    "Day-of-month": ",-*?/LW",
    "Month": ",-*/",
    "Day-of-week": ",-*?L#",
    "Year": ",-*/",
}
_NAMES = {
    "Month": "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC",
    "Day-of-week": "SUN|MON|TUE|WED|THU|FRI|SAT",
}
_WEEKDAYS = {day: i for i, day in enumerate(_NAMES["Day-of-week"].split("|"))}
#: Years croniter computes (its 7th field); EventBridge accepts up to 2199.
CRONITER_MAX_YEAR = 2099
_RATE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+)\s*\)$")
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86_400}
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_CRON = re.compile(r"^cron\((.*)\)$")


@dataclass(frozen=True)
class Expression:
    """A validated EventBridge schedule expression.

    Attributes:
        text: the expression as EventBridge takes it, e.g. ``"cron(0 12 * * ? *)"``.
        kind: ``"rate"``, ``"cron"`` or ``"at"``.
    """

    text: str
    kind: str

    def __str__(self) -> str:
        return self.text

    @property
    def rate_s(self) -> int:
        """The period of a ``rate()`` expression, seconds."""
        match = _RATE.match(self.text)
        assert match is not None, "rate_s of a non-rate expression"
        return int(match.group(1)) * _RATE_UNITS[match.group(2).rstrip("s")]

    @property
    def at_time(self) -> datetime:
        """The wall-clock time of an ``at()`` expression (naive; in the schedule's zone)."""
        match = _AT.match(self.text)
        assert match is not None, "at_time of a non-at expression"
        return datetime.fromisoformat(match.group(1))

    def croniter_fields(self) -> str:
        """The ``cron()`` expression in croniter's 7-field dialect."""
        match = _CRON.match(self.text)
        assert match is not None, "croniter_fields of a non-cron expression"
        return _to_croniter(match.group(1).split())

    def fire_times(
        self,
        after: datetime,
        timezone: str = "UTC",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[datetime]:
        """Fire times strictly after ``after``, ascending, as aware UTC datetimes.

        Args:
            after: an aware datetime.
            timezone: the IANA zone the expression is evaluated in
                (``ScheduleExpressionTimezone``).
            start / end: the schedule's StartDate / EndDate (aware), if any.
        """
        zone = zone_info(timezone)
        after = max(after, start - timedelta(microseconds=1)) if start else after
        for fire in self._fire_times(after, zone, start):
            if end is not None and fire > end:
                return
            yield fire

    def _fire_times(
        self, after: datetime, zone: ZoneInfo, start: datetime | None
    ) -> Iterator[datetime]:
        if self.kind == "at":
            try:
                fire = self.at_time.replace(tzinfo=zone).astimezone(UTC)
            except (OverflowError, ValueError):
                return  # e.g. at(9999-12-31T23:00:00) west of UTC: not a date here
            if fire > after:
                yield fire
            return
        if self.kind == "rate":
            period = self.rate_s
            anchor = (start or datetime(1970, 1, 1, tzinfo=UTC)).timestamp()
            n = max(0, int((after.timestamp() - anchor) // period) + 1)
            while True:
                try:
                    yield datetime.fromtimestamp(anchor + n * period, UTC)
                except (OverflowError, ValueError, OSError):
                    return  # past the last date Python represents (year 9999): no more
                n += 1
        from croniter import croniter

        # croniter walks the zone's wall clock (naive datetimes); each wall time
        # comes once, so a repeated hour fires once, at its first occurrence.
        wall = after.astimezone(zone).replace(tzinfo=None)
        nearest = _late_weekday(self)
        walker = croniter(self.croniter_fields(), wall, max_years_between_matches=200)
        while True:
            try:
                local = walker.get_next(datetime)
            except Exception:  # croniter: no further date (years exhausted)
                return
            if nearest and nearest > calendar.monthrange(local.year, local.month)[1]:
                continue  # 'nW' in a month without day n: no fire (croniter would clamp)
            aware = local.replace(tzinfo=zone)
            utc = aware.astimezone(UTC)
            if utc.astimezone(zone).replace(tzinfo=None) != local:
                continue  # skipped by a spring-forward change: Scheduler does not fire
            if utc > after:
                yield utc

    def next_fire_times(
        self, after: datetime, timezone: str = "UTC", count: int = 3, **window: datetime | None
    ) -> list[datetime]:
        """The next ``count`` fire times after ``after`` (see :meth:`fire_times`)."""
        times: list[datetime] = []
        for fire in self.fire_times(after, timezone, **window):
            times.append(fire)
            if len(times) == count:
                break
        return times


def _late_weekday(expression: Expression) -> int:
    """n of a Day-of-month ``nW`` with n over 28 (some months lack that day), else 0."""
    match = re.fullmatch(r"cron\(\S+ \S+ (\d+)W .*\)", expression.text)
    return int(match.group(1)) if match and int(match.group(1)) > 28 else 0


def zone_info(timezone: str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA time zone name.

    Raises:
        InvalidScheduleExpression: an unknown zone.
    """
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidScheduleExpression(
            f"unknown time zone {timezone!r}: ScheduleExpressionTimezone takes an IANA name "
            "such as 'UTC' or 'Europe/Paris'"
        ) from None


def parse(text: str) -> Expression:
    """Validate an EventBridge schedule expression.

    Args:
        text: ``rate(...)``, ``cron(...)`` or ``at(...)``.

    Raises:
        InvalidScheduleExpression: the expression breaks EventBridge's grammar, is
            over ``limits.SCHEDULER_MAX_EXPRESSION_CHARS`` (256), or is a ``rate()``
            over ``limits.SCHEDULER_MAX_RATE_DAYS``; the message names the field
            and the rule.
    """
    text = text.strip()
    if len(text) > limits.SCHEDULER_MAX_EXPRESSION_CHARS:
        raise InvalidScheduleExpression(
            f"{text[:40]!r}…: a ScheduleExpression is at most "
            f"{limits.SCHEDULER_MAX_EXPRESSION_CHARS} characters (CreateSchedule)"
        )
    if text.startswith("rate("):
        return _parse_rate(text)
    if text.startswith("at("):
        if not _AT.match(text):
            raise InvalidScheduleExpression(
                f"{text!r}: at() takes yyyy-mm-ddThh:mm:ss, e.g. at(2027-01-01T09:00:00)"
            )
        try:
            Expression(text, "at").at_time  # noqa: B018  (a real calendar date?)
        except ValueError as exc:
            raise InvalidScheduleExpression(f"{text!r}: at(): {exc}") from None
        return Expression(text, "at")
    match = _CRON.match(text)
    if match:
        _check_cron(text, match.group(1).split())
        return Expression(f"cron({' '.join(match.group(1).split())})", "cron")
    raise InvalidScheduleExpression(
        f"{text!r} is not an EventBridge schedule expression: use rate(5 minutes), "
        "cron(0 12 * * ? *) or at(2027-01-01T09:00:00)"
    )


def _parse_rate(text: str) -> Expression:
    match = _RATE.match(text)
    if not match:
        raise InvalidScheduleExpression(
            f"{text!r}: rate() takes 'value unit', e.g. rate(5 minutes) or rate(1 hour)"
        )
    value, unit = int(match.group(1)), match.group(2)
    if value < 1:
        raise InvalidScheduleExpression(f"{text!r}: rate() value must be a positive number")
    if unit.rstrip("s") not in _RATE_UNITS or unit.count("s") > (1 if unit.endswith("s") else 0):
        raise InvalidScheduleExpression(
            f"{text!r}: rate() unit must be minute(s), hour(s) or day(s), got {unit!r}"
        )
    plural = unit.endswith("s")
    if value == 1 and plural:
        raise InvalidScheduleExpression(
            f"{text!r}: rate() unit must be singular for a value of 1: rate(1 {unit[:-1]})"
        )
    if value > 1 and not plural:
        raise InvalidScheduleExpression(
            f"{text!r}: rate() unit must be plural for a value over 1: rate({value} {unit}s)"
        )
    if value * _RATE_UNITS[unit.rstrip("s")] > limits.SCHEDULER_MAX_RATE_DAYS * 86_400:
        raise InvalidScheduleExpression(
            f"{text!r}: rate() is at most {limits.SCHEDULER_MAX_RATE_DAYS} days "
            "(SCHEDULER_MAX_RATE_DAYS: the span of the years 1970-2199 that cron() "
            "may name), so that its fire times can be computed"
        )
    return Expression(f"rate({value} {unit})", "rate")


def _check_cron(text: str, fields: list[str]) -> None:
    if len(fields) != 6:
        raise InvalidScheduleExpression(
            f"{text!r}: cron() has 6 fields ({' '.join(CRON_FIELDS)}), got {len(fields)}"
        )
    for name, value in zip(CRON_FIELDS, fields, strict=True):
        rest = re.sub(_NAMES.get(name, "(?!)"), "", value.upper())
        bad = sorted({c for c in rest if not c.isdigit() and c not in _ALLOWED[name]})
        if bad:
            raise InvalidScheduleExpression(
                f"{text!r}: field {name} {value!r}: {''.join(bad)!r} not allowed "
                f"(allowed: digits and {' '.join(_ALLOWED[name])})"
            )
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        raise InvalidScheduleExpression(
            f"{text!r}: fields Day-of-month {dom!r} and Day-of-week {dow!r}: exactly one of "
            "them must be '?' (EventBridge cannot match both)"
        )
    for name, value in (("Day-of-month", dom), ("Day-of-week", dow)):
        if "?" in value and value != "?":
            raise InvalidScheduleExpression(f"{text!r}: field {name} {value!r}: '?' stands alone")
    if "#" in dow and "," in dow:
        raise InvalidScheduleExpression(
            f"{text!r}: field Day-of-week {dow!r}: with '#' the field holds one expression"
        )
    for token in dow.upper().split(","):
        day, _, nth = token.partition("#")
        for number in re.findall(r"\d+", day):
            if not 1 <= int(number) <= 7:
                raise InvalidScheduleExpression(
                    f"{text!r}: field Day-of-week {dow!r}: days are 1-7 (SUN = 1) or SUN-SAT"
                )
        if nth and not (nth.isdigit() and 1 <= int(nth) <= 5):
            raise InvalidScheduleExpression(
                f"{text!r}: field Day-of-week {dow!r}: '#n' takes n = 1-5 (the nth such day)"
            )
    for item in fields[5].split(","):
        for year in re.findall(r"\d+", item.partition("/")[0]):
            if not 1970 <= int(year) <= 2199:
                raise InvalidScheduleExpression(
                    f"{text!r}: field Year {fields[5]!r}: years are 1970-2199"
                )
            if int(year) > CRONITER_MAX_YEAR:
                raise InvalidScheduleExpression(
                    f"{text!r}: field Year {fields[5]!r}: sqsq computes fire times up to "
                    f"{CRONITER_MAX_YEAR} (croniter's range), EventBridge up to 2199"
                )
    # croniter parses each field on its own, so that its error names the field.
    from croniter import croniter

    blank = ["*"] * 6
    for index, name in enumerate(CRON_FIELDS):
        probe = list(blank)
        probe[2], probe[4] = "*", "?"
        probe[index] = fields[index]
        if index == 4:
            probe[2] = "?"
        try:
            croniter(_to_croniter(probe), datetime(2000, 1, 1))
        except (ValueError, KeyError, IndexError) as exc:
            raise InvalidScheduleExpression(
                f"{text!r}: field {name} {fields[index]!r}: {_reason(exc)}"
            ) from None


def _reason(exc: Exception) -> str:
    message = str(exc)
    if "out of range" in message or "out of bands" in message:
        return "a value is out of range"
    return "not a valid value, list, range or step"


def _dow(token: str) -> str:
    """One Day-of-week list item from EventBridge (SUN = 1) to croniter (SUN = 0)."""
    token = token.upper()

    def shift(match: re.Match[str]) -> str:
        return str(int(match.group(0)) - 1)

    def number(day: str) -> str:  # croniter takes only numbers with 'L' and '#'
        return str(int(day) - 1) if day.isdigit() else str(_WEEKDAYS.get(day, day))

    if token == "L":
        return "6"  # the last day of the week: Saturday
    last = re.fullmatch(r"(\d+|[A-Z]{3})L", token)
    if last:
        return "L" + number(last.group(1))
    if "#" in token:
        day, _, nth = token.partition("#")
        return f"{number(day)}#{nth}"
    return re.sub(r"\d+", shift, token)


def _to_croniter(fields: list[str]) -> str:
    minutes, hours, dom, month, dow, year = fields
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else ",".join(_dow(t) for t in dow.split(","))
    return f"{minutes} {hours} {dom} {month} {dow} 0 {year}"


# --- helpers that build expressions (every(); Celery's crontab is crontab.py) ------------


def every(
    *, days: int = 0, hours: int = 0, minutes: int = 0, period: timedelta | None = None
) -> str:
    """An EventBridge ``rate()`` expression, e.g. ``every(minutes=5)`` → ``'rate(5 minutes)'``.

    The period must be a whole number of minutes (EventBridge's smallest unit); the
    largest unit that divides it is used.

    Raises:
        InvalidScheduleExpression: zero, negative, or not whole minutes.
    """
    total = (period or timedelta(days=days, hours=hours, minutes=minutes)).total_seconds()
    if total <= 0 or total % 60:
        raise InvalidScheduleExpression(
            f"every(): the period must be a positive whole number of minutes, got {total:g} s"
        )
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if total % size == 0:
            value = int(total // size)
            return parse(f"rate({value} {unit}{'s' if value > 1 else ''})").text
    raise AssertionError("unreachable: minutes always divide")


def schedule_expression(schedule: str | timedelta) -> Expression:
    """Validate what ``@app.periodic_task(schedule)`` accepts: an expression, or a
    ``timedelta`` (as Celery's ``beat_schedule`` takes) turned into ``rate()``."""
    if isinstance(schedule, timedelta):
        return parse(every(period=schedule))
    if not isinstance(schedule, str):
        raise InvalidScheduleExpression(
            f"a schedule is an EventBridge expression string or a timedelta, got "
            f"{type(schedule).__name__} (solar schedules are not supported)"
        )
    return parse(schedule)
