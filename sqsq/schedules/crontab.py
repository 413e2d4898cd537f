"""Celery's ``crontab()``, written as the EventBridge ``cron()`` expression that fires at
the same times.

Celery's meaning is taken field by field (``celery.schedules.crontab`` and its
``crontab_parser``): each argument is an int, a set or list of ints, or a string
of comma-separated parts, each ``*``, ``n``, ``a-b`` (wrapping past the end when
``b < a``: ``"fri-mon"``), ``*/s`` or ``a-b/s`` (every s-th value of the expanded
range, counted from its first), with names for days and months. Each field
becomes the *set* of values it stands for, and the set is written out in
EventBridge's dialect (``sqsq.schedules.expressions``)::

    Celery                      set                 EventBridge
    minute="*/15"               {0, 15, 30, 45}     0/15
    minute="5-59/15"            {5, 20, 35, 50}     5/15
    hour="22-2"                 {22, 23, 0, 1, 2}   0-2,22,23
    day_of_week="mon-fri"       {1, …, 5}           MON-FRI     (Celery: SUN = 0,
    day_of_week="*/2"           {0, 2, 4, 6}        SUN,TUE,THU,SAT   EventBridge: SUN = 1)
    day_of_week=1, day_of_month="1-7"  (Celery ANDs the two day fields)  2#1

so a step EventBridge does not have (Day-of-week takes no ``/``; a wrapped range)
is an explicit list that means the same thing. What has no exact EventBridge form
is refused when declared, naming the field: both day fields restricted (Celery
matches days that satisfy both; EventBridge needs ``?`` in one) unless they are
one weekday and one week of the month (``d#n``); a value out of the field's
range; a day of the month that no month of ``month_of_year`` has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .. import limits
from ..errors import InvalidScheduleExpression
from .expressions import parse

#: What a crontab argument accepts (Celery's ``Cronspec``).
Cronspec = int | str | Iterable[int]

_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
#: Days of the month in each month, as Celery counts them (February 29 exists).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: EventBridge's Day-of-month forms that Celery has no equivalent of, passed through.
_DOM_EXTRAS = re.compile(r"L|LW|\d{1,2}W")


@dataclass(frozen=True)
class _Field:
    """One crontab argument: Celery's range (``low`` … ``low + size - 1``) and how
    EventBridge writes it."""

    arg: str  #: Celery's argument name
    low: int
    size: int
    names: dict[str, int] = field(default_factory=dict)
    #: EventBridge allows ``start/step`` in this field (not in Day-of-week).
    steps: bool = True
    #: the largest number accepted (Day-of-week: 7, Sunday as in cron(5)).
    top: int = -1

    @property
    def high(self) -> int:
        return self.top if self.top >= 0 else self.low + self.size - 1

    def label(self) -> str:
        sunday = ", or 7 for Sunday" if self.top >= 0 else ""
        return f"{self.arg} takes {self.low}-{self.low + self.size - 1}{sunday}"


def _named(names: tuple[str, ...], first: int) -> dict[str, int]:
    table = {name: i for i, name in enumerate(names, first)}
    table.update({name[:3]: i for i, name in enumerate(names, first)})
    return table


_MINUTE = _Field("minute", 0, 60)
_HOUR = _Field("hour", 0, 24)
_DOW = _Field("day_of_week", 0, 7, _named(_DAYS, 0), steps=False, top=7)
_DOM = _Field("day_of_month", 1, 31)
_MONTH = _Field("month_of_year", 1, 12, _named(_MONTHS, 1))

_PART = re.compile(r"(?:(\*)|(\w+)(?:-(\w+))?)(?:/(\w*))?")


def crontab(
    minute: Cronspec = "*",
    hour: Cronspec = "*",
    day_of_week: Cronspec = "*",
    day_of_month: Cronspec = "*",
    month_of_year: Cronspec = "*",
    year: str | int = "*",
) -> str:
    """The EventBridge ``cron()`` expression that fires when Celery's ``crontab()`` with
    the same arguments is due.

    The arguments mean what they mean in Celery (``celery.schedules.crontab``): an
    int, a set or list of ints, or a string of comma-separated parts — ``*``, ``n``,
    ``a-b`` (``b < a`` wraps: ``"fri-mon"``), ``*/s``, ``a-b/s`` — and names.

    **Numbering is Celery's**: ``day_of_week`` 0 (or 7, as in cron) is Sunday,
    1 Monday … 6 Saturday; names ``"mon"``/``"monday"`` … (any case). The
    expression written uses EventBridge's names (``MON-FRI``; EventBridge numbers
    SUN = 1), so ``crontab(day_of_week=1)`` fires on Mondays. Months are 1-12 or
    ``"jan"``/``"january"`` …; minutes 0-59, hours 0-23, days of the month 1-31.

    A step EventBridge lacks is written as the list it stands for
    (``day_of_week="*/2"`` → ``SUN,TUE,THU,SAT``). Celery matches a day when *both*
    day fields allow it; EventBridge takes one of them (the other is ``?``), so both
    restricted is refused, except one weekday with one week of the month
    (``day_of_week="mon", day_of_month="1-7"`` → ``2#1``, the first Monday; weeks are
    1-7, 8-14, 15-21, 22-28, 29-31). Not in Celery, kept from EventBridge:
    ``day_of_month`` ``"L"`` (the last day), ``"LW"``, ``"15W"`` (nearest weekday),
    and ``year`` (1970-2099, EventBridge's Year field; default every year).

    Example::

        sqsq.crontab(minute=0, hour=12)                         # 'cron(0 12 * * ? *)'
        sqsq.crontab(minute=30, hour=7, day_of_week="1-5")      # 'cron(30 7 ? * MON-FRI *)'
        sqsq.crontab(minute="*/15", day_of_week=0)              # 'cron(0/15 * ? * SUN *)'

    Returns:
        The expression, e.g. ``"cron(30 7 ? * MON-FRI *)"``, at most
        ``limits.SCHEDULER_MAX_EXPRESSION_CHARS`` (256) characters.

    Raises:
        InvalidScheduleExpression: naming the argument — a value out of its range, a
            part Celery's grammar does not have (``"5/15"``: write ``"5-59/15"``), a
            name of the wrong kind, both day fields restricted, a ``day_of_month``
            that no month of ``month_of_year`` has (February 30), or an expression
            over 256 characters.
    """
    minutes = _expand(_MINUTE, minute)
    hours = _expand(_HOUR, hour)
    weekdays = frozenset(day % 7 for day in _expand(_DOW, day_of_week))
    months = _expand(_MONTH, month_of_year)
    if isinstance(day_of_month, str) and _DOM_EXTRAS.fullmatch(day_of_month.strip().upper()):
        dom = day_of_month.strip().upper()  # EventBridge's own; checked by parse() below
        days = frozenset(range(1, 32))
    else:
        days = _expand(_DOM, day_of_month)
        if not any(day <= _MONTH_DAYS[month - 1] for month in months for day in days):
            raise InvalidScheduleExpression(
                f"crontab(day_of_month={day_of_month!r}, month_of_year={month_of_year!r}): "
                "no month of month_of_year has such a day, so it would never fire"
            )
        dom = _render(_DOM, days)
    dow = _render(_DOW, weekdays)
    if dom != "*" and dow != "*":
        dom, dow = "?", _nth_weekday(weekdays, days, day_of_week, day_of_month)
    elif dow == "*":
        dow = "?"
    else:
        dom = "?"
    fields = {
        "minute": _render(_MINUTE, minutes),
        "hour": _render(_HOUR, hours),
        "day_of_month": dom,
        "month_of_year": _render(_MONTH, months),
        "day_of_week": dow,
        "year": str(year).strip(),
    }
    text = "cron({minute} {hour} {day_of_month} {month_of_year} {day_of_week} {year})"
    text = text.format(**fields)
    if len(text) > limits.SCHEDULER_MAX_EXPRESSION_CHARS:
        longest = max(fields, key=lambda name: len(fields[name]))
        raise InvalidScheduleExpression(
            f"crontab({longest}=…): the expression written is {len(text)} characters, "
            f"EventBridge takes at most {limits.SCHEDULER_MAX_EXPRESSION_CHARS} "
            f"(CreateSchedule); {longest} is {fields[longest]!r}"
        )
    return parse(text).text


def _expand(spec_field: _Field, spec: object) -> frozenset[int]:
    """The set of values a Celery cronspec stands for (``crontab._expand_cronspec``)."""
    where = f"crontab({spec_field.arg}={spec!r})"
    if isinstance(spec, bool):
        raise InvalidScheduleExpression(f"{where}: takes an int, a set of ints or a string")
    if isinstance(spec, int):
        values = {spec}
    elif isinstance(spec, str):
        values = set()
        for part in spec.split(","):
            values.update(_parse_part(spec_field, part.strip(), where))
    elif isinstance(spec, Iterable):
        values = set()
        for value in spec:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidScheduleExpression(f"{where}: {value!r} is not an int")
            values.add(value)
    else:
        raise InvalidScheduleExpression(
            f"{where}: takes an int, a set of ints or a string, got {type(spec).__name__}"
        )
    if not values:
        raise InvalidScheduleExpression(f"{where}: empty, so it would never fire")
    for value in values:
        if not spec_field.low <= value <= spec_field.high:
            raise InvalidScheduleExpression(
                f"{where}: {value} is out of range; {spec_field.label()}"
            )
    return frozenset(values)


def _parse_part(spec_field: _Field, part: str, where: str) -> list[int]:
    """One comma-separated part, as ``crontab_parser`` expands it."""
    match = _PART.fullmatch(part)
    if not match:
        raise InvalidScheduleExpression(
            f"{where}: {part!r} is not '*', 'n', 'a-b', '*/s' or 'a-b/s' "
            "(Celery's grammar; EventBridge's 'n/s' is 'n-<last>/s' here)"
        )
    star, first, last, step = match.groups()
    end = spec_field.low + spec_field.size  # Celery's range, without Day-of-week's 7
    if star:
        values = list(range(spec_field.low, end))
    else:
        if step is not None and last is None:
            raise InvalidScheduleExpression(
                f"{where}: {part!r}: Celery takes a step after '*' or a range only; "
                f"write {first}-{spec_field.low + spec_field.size - 1}/{step}"
            )
        start = _number(spec_field, first, where)
        stop = start if last is None else _number(spec_field, last, where)
        if stop < start:  # wraps past the end of the field
            values = list(range(start, end)) + list(range(spec_field.low, stop + 1))
        else:
            values = list(range(start, stop + 1))
    if step is None:
        return values
    if not step.isdigit() or int(step) < 1:
        raise InvalidScheduleExpression(f"{where}: {part!r}: a step is a whole number, 1 or more")
    return values[:: int(step)]


def _number(spec_field: _Field, token: str, where: str) -> int:
    if token.isdigit():
        value = int(token)
    elif token.lower() in spec_field.names:
        value = spec_field.names[token.lower()]
    else:
        kind = {"day_of_week": "a day name", "month_of_year": "a month name"}
        raise InvalidScheduleExpression(
            f"{where}: {token!r} is not a number"
            + (f" or {kind[spec_field.arg]}" if spec_field.arg in kind else "")
        )
    if not spec_field.low <= value <= spec_field.high:
        raise InvalidScheduleExpression(f"{where}: {value} is out of range; {spec_field.label()}")
    return value


def _render(spec_field: _Field, values: frozenset[int]) -> str:
    """A set of values in EventBridge's dialect: ``*``, ``start/step`` or a list of
    values and ranges (Day-of-week by name, as EventBridge numbers SUN = 1)."""
    ordered = sorted(values)
    if len(ordered) == spec_field.size:
        return "*"
    if spec_field.steps and len(ordered) >= 3:
        step = ordered[1] - ordered[0]
        every = list(range(ordered[0], spec_field.low + spec_field.size, step))
        if ordered == every:  # 'start/step', the form "Cron expressions reference" shows
            return f"{ordered[0]}/{step}"
    day = _DAYS if spec_field is _DOW else None
    parts: list[str] = []
    for start, stop in _runs(ordered):
        first, last = (
            (day[start][:3].upper(), day[stop][:3].upper()) if day else (str(start), str(stop))
        )
        if stop - start >= 2:
            parts.append(f"{first}-{last}")
        else:
            parts.extend([first] if start == stop else [first, last])
    return ",".join(parts)


def _runs(ordered: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in ordered:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _nth_weekday(
    weekdays: frozenset[int], days: frozenset[int], day_of_week: object, day_of_month: object
) -> str:
    """``d#n`` for one weekday within week n of the month (days 7n-6 … 7n), which is
    what Celery's AND of the two day fields means then; otherwise refused."""
    weeks = {n: frozenset(range(7 * n - 6, min(7 * n, 31) + 1)) for n in range(1, 6)}
    nth = next((n for n, week in weeks.items() if week == days), None)
    if len(weekdays) == 1 and nth is not None:
        return f"{min(weekdays) + 1}#{nth}"  # EventBridge numbers SUN = 1
    raise InvalidScheduleExpression(
        f"crontab(day_of_week={day_of_week!r}, day_of_month={day_of_month!r}): Celery fires "
        "on days that match both, EventBridge matches one of Day-of-month and Day-of-week "
        "(the other is '?'); only one weekday in one week of the month (day_of_month "
        "'1-7', '8-14', '15-21', '22-28' or '29-31') can be written ('d#n'): restrict one "
        "of the two"
    )
