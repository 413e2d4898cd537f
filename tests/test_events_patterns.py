"""EventBridge event-pattern matching (sqsq/events/patterns.py), table-tested against
the examples of AWS's "Amazon EventBridge event patterns", "Arrays in …", "Matching
null values and empty strings in …" and "Content filtering in Amazon EventBridge event
patterns" pages (awsdocs/amazon-eventbridge-user-guide, doc_source/eb-event-patterns*.md),
plus a few properties with hypothesis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqsq.errors import ConfigurationError
from sqsq.events.patterns import Steps, check, matches, wildcard_match

#: eb-event-patterns.md: the EC2 event.
EC2 = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"},
}
#: eb-event-patterns.md / eb-event-patterns-null-values.md: the Auto Scaling event.
AUTOSCALING = {
    "version": "0",
    "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
    "detail-type": "EC2 Instance Launch Successful",
    "source": "aws.autoscaling",
    "account": "123456789012",
    "time": "2015-11-11T21:31:47Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"eventVersion": "", "responseElements": None},
}
#: eb-event-patterns.md: the Macie event (truncated there; its fields used here).
MACIE = {
    "source": "aws.macie",
    "detail-type": "Macie Alert",
    "resources": [
        "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id/alert/alert_id",
        "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id",
    ],
    "detail": {
        "notification-type": "ALERT_CREATED",
        "tags": ["Custom_Alert", "Insider"],
        "risk-score": 80,
        "trigger": {"alert-type": "basic", "risk": 8},
    },
}
#: eb-event-patterns-content-based-filtering.md: the events shown for exists matching.
EXISTS_EVENT_1 = {
    "detail-type": ["EC2 Instance State-change Notification"],
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341"],
    "detail": {"state": ["initializing", "running"]},
}
EXISTS_EVENT_2 = {
    **EXISTS_EVENT_1,
    "detail": {"state": ["initializing", "running"], "c-count": {"c1": 100}},
}

ROWS: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # eb-event-patterns.md
    (
        "ec2 termination",
        {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": ["terminated"]},
        },
        EC2,
        True,
    ),
    ("source is one of", {"source": ["aws.ec2", "aws.fargate"]}, EC2, True),
    ("source is none of", {"source": ["aws.fargate"]}, EC2, False),
    (
        "null value",
        {
            "source": ["aws.autoscaling"],
            "detail-type": ["EC2 Instance Launch Successful"],
            "detail": {"responseElements": [None]},
        },
        AUTOSCALING,
        True,
    ),
    (
        "numbers",
        {
            "source": ["aws.macie"],
            "detail-type": ["Macie Alert"],
            "detail": {"risk-score": [80], "trigger": {"risk": [8]}},
        },
        MACIE,
        True,
    ),
    ("a number is not its string", {"detail": {"risk-score": ["80"]}}, MACIE, False),
    ("300 is not 300.0 (exact matching)", {"detail": {"risk-score": [80.0]}}, MACIE, False),
    (
        "field names must all be there",
        {"detail": {"state": ["terminated"], "x": ["y"]}},
        EC2,
        False,
    ),
    ("same nesting", {"state": ["terminated"]}, EC2, False),
    ("strings are case-sensitive", {"detail": {"state": ["Terminated"]}}, EC2, False),
    # eb-event-patterns-null-values.md
    ("empty string", {"detail": {"eventVersion": [""]}}, AUTOSCALING, True),
    ("null is not the empty string", {"detail": {"responseElements": [""]}}, AUTOSCALING, False),
    ("the empty string is not null", {"detail": {"eventVersion": [None]}}, AUTOSCALING, False),
    # eb-event-patterns-arrays.md
    (
        "arrays intersect",
        {
            "resources": [
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f",
            ]
        },
        {
            "resources": [
                "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate",
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            ]
        },
        True,
    ),
    ("arrays do not intersect", {"resources": ["arn:x"]}, EC2, False),
    ("an element of an event array", {"detail": {"tags": ["Insider"]}}, MACIE, True),
    # eb-event-patterns-content-based-filtering.md
    ("prefix", {"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-02T18:43:48Z"}, True),
    ("prefix, other day", {"time": [{"prefix": "2017-10-02"}]}, EC2, False),
    ("anything-but string", {"detail": {"state": [{"anything-but": "initializing"}]}}, EC2, True),
    (
        "anything-but string, equal",
        {"detail": {"state": [{"anything-but": "terminated"}]}},
        EC2,
        False,
    ),
    (
        "anything-but number",
        {"detail": {"x-limit": [{"anything-but": 123}]}},
        {"detail": {"x-limit": 124}},
        True,
    ),
    (
        "anything-but number, equal",
        {"detail": {"x-limit": [{"anything-but": 123}]}},
        {"detail": {"x-limit": 123}},
        False,
    ),
    (
        "anything-but list of strings",
        {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}},
        EC2,
        True,
    ),
    (
        "anything-but list of strings, in it",
        {"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}},
        EC2,
        False,
    ),
    (
        "anything-but list of numbers",
        {"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}},
        {"detail": {"x-limit": 200}},
        False,
    ),
    (
        "anything-but prefix",
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        EC2,
        True,
    ),
    (
        "anything-but prefix, has it",
        {"detail": {"state": [{"anything-but": {"prefix": "term"}}]}},
        EC2,
        False,
    ),
    ("anything-but needs the field", {"detail": {"nope": [{"anything-but": "x"}]}}, EC2, False),
    (
        "numeric ranges, all true",
        {
            "detail": {
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"numeric": ["=", 3.018e2]}],
            }
        },
        {"detail": {"c-count": 5, "d-count": 9.5, "x-limit": 301.8}},
        True,
    ),
    (
        "numeric range, out",
        {"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}},
        {"detail": {"c-count": 0}},
        False,
    ),
    (
        "numeric is for numbers",
        {"detail": {"c-count": [{"numeric": [">", 0]}]}},
        {"detail": {"c-count": "3"}},
        False,
    ),
    ("exists false: absent", {"detail": {"c-count": [{"exists": False}]}}, EXISTS_EVENT_1, True),
    (
        "exists false: not a leaf",
        {"detail": {"c-count": [{"exists": False}]}},
        EXISTS_EVENT_2,
        True,
    ),
    ("exists true: absent", {"detail": {"c-count": [{"exists": True}]}}, EXISTS_EVENT_1, False),
    ("exists true: present", {"detail": {"state": [{"exists": True}]}}, EC2, True),
    ("exists false: present", {"detail": {"state": [{"exists": False}]}}, EC2, False),
    (
        "complex example",
        {
            "time": [{"prefix": "2017-10-02"}],
            "detail": {
                "state": [{"anything-but": "initializing"}],
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"anything-but": [100, 200, 300]}],
            },
        },
        {
            "time": "2017-10-02T18:43:48Z",
            "detail": {"state": "running", "c-count": 3, "d-count": 1, "x-limit": 150},
        },
        True,
    ),
    # eb-create-pattern-operators.md (the operator table)
    ("suffix", {"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.png"}, True),
    (
        "suffix ignoring case",
        {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]},
        {"FileName": "cat.PNG"},
        True,
    ),
    (
        "prefix ignoring case",
        {"service": [{"prefix": {"equals-ignore-case": "eventb"}}]},
        {"service": "EventBridge"},
        True,
    ),
    ("equals-ignore-case", {"name": [{"equals-ignore-case": "alice"}]}, {"name": "ALICE"}, True),
    (
        "anything-but suffix",
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.png"},
        False,
    ),
    (
        "anything-but ignoring case",
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "INITIALIZING"},
        False,
    ),
    (
        "wildcard",
        {"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]},
        {"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/orders"},
        True,
    ),
    (
        "wildcard, other region",
        {"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]},
        {"EventBusArn": "arn:aws:events:eu-west-1:123456789012:event-bus/orders"},
        False,
    ),
    (
        "anything-but wildcard",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/lib/x"},
        False,
    ),
    (
        "$or",
        {"$or": [{"detail": {"state": ["running"]}}, {"source": ["aws.ec2"]}]},
        EC2,
        True,
    ),
    ("$or, neither", {"$or": [{"detail": {"state": ["running"]}}, {"source": ["x"]}]}, EC2, False),
]


@pytest.mark.parametrize(
    ("pattern", "event", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_the_documentations_examples(
    pattern: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    assert matches(check(pattern), event) is expected


def test_arrays_of_objects_match_within_one_element() -> None:
    pattern = check({"items": {"kind": ["a"], "n": [1]}})
    assert matches(pattern, {"items": [{"kind": "a", "n": 1}, {"kind": "b", "n": 2}]})
    assert not matches(pattern, {"items": [{"kind": "a", "n": 2}, {"kind": "b", "n": 1}]})


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ({}, "non-empty"),
        ({"source": "aws.ec2"}, "list of matchers"),
        ({"source": []}, "empty list"),
        ({"ip": [{"cidr": "10.0.0.0/24"}]}, "not supported"),
        ({"n": [{"numeric": [">", "zero"]}]}, "numeric"),
        ({"n": [{"numeric": ["~", 1]}]}, "numeric"),
        ({"s": [{"prefix": 1}]}, "prefix"),
        ({"s": [{"exists": "yes"}]}, "exists"),
        ({"s": [{"prefix": "a", "suffix": "b"}]}, "exactly one key"),
        ({"s": [{"anything-but": {"cidr": "x"}}]}, "anything-but"),
        ({"$or": [{"a": ["b"]}]}, "two or more"),
    ],
)
def test_invalid_or_unsupported_patterns_are_refused_at_declaration(
    pattern: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check(pattern)


_VALUES = st.one_of(st.text(max_size=8), st.integers(-1000, 1000), st.booleans(), st.none())


@given(value=_VALUES)
def test_a_value_matches_itself_and_anything_but_itself_never(value: Any) -> None:
    event = {"detail": {"f": value}}
    assert matches(check({"detail": {"f": [value]}}), event)
    if isinstance(value, str | int) and not isinstance(value, bool):
        assert not matches(check({"detail": {"f": [{"anything-but": value}]}}), event)


@given(text=st.text(max_size=12), cut=st.integers(0, 12))
def test_prefix_suffix_and_wildcard_agree_with_str_methods(text: str, cut: int) -> None:
    head, tail = text[:cut], text[cut:]
    event = {"f": text}
    assert matches(check({"f": [{"prefix": head}]}), event)
    assert matches(check({"f": [{"suffix": tail}]}), event)
    escaped = head.replace("\\", "\\\\").replace("*", "\\*")
    assert matches(check({"f": [{"wildcard": escaped + "*"}]}), event)
    assert matches(check({"f": [{"prefix": head + "\x00"}]}), event) is text.startswith(
        head + "\x00"
    )


# --- wildcard: linear work, checked against a reference that cannot backtrack -----------


def _wildcard_tokens(text: str) -> list[str | None]:
    """A wildcard as tokens: a character, or None for a star (``\\*`` is a literal
    star and ``\\\\`` a backslash, as EventBridge reads them)."""
    tokens: list[str | None] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "*\\":
            tokens.append(text[i + 1])
            i += 2
        else:
            tokens.append(None if text[i] == "*" else text[i])
            i += 1
    return tokens


def _reference(text: str, value: str) -> bool:
    """Wildcard matching by dynamic programming over (token, character): the classic
    table, filled once (no ``re``, no ``fnmatch``, nothing that backtracks)."""
    tokens = _wildcard_tokens(text)
    # row[j]: the tokens so far match value[:j]
    row = [True] + [False] * len(value)
    for token in tokens:
        nxt = [False] * (len(value) + 1)
        if token is None:
            nxt[0] = row[0]
            for j in range(1, len(value) + 1):
                nxt[j] = nxt[j - 1] or row[j]
        else:
            for j in range(1, len(value) + 1):
                nxt[j] = row[j - 1] and value[j - 1] == token
        row = nxt
    return row[len(value)]


_ALPHABET = st.sampled_from("ab-.*\\")
_WILDCARDS = st.text(_ALPHABET, max_size=12)
_SUBJECTS = st.text(st.sampled_from("ab-.*\\"), max_size=40)


@given(text=_WILDCARDS, value=_SUBJECTS)
def test_wildcard_agrees_with_the_reference_within_one_step_per_character(
    text: str, value: str
) -> None:
    steps = Steps()
    assert wildcard_match(text, value, steps) is _reference(text, value)
    assert steps.count <= len(value)  # each character of the value examined at most once


@given(text=_WILDCARDS, data=st.data())
def test_values_built_from_the_wildcard_match_it(text: str, data: st.DataObject) -> None:
    # fill each star with random characters: the value must match (and the reference agrees)
    value = "".join(
        data.draw(st.text(_ALPHABET, max_size=5)) if token is None else token
        for token in _wildcard_tokens(text)
    )
    steps = Steps()
    assert wildcard_match(text, value, steps)
    assert _reference(text, value)
    assert steps.count <= len(value)


@pytest.mark.parametrize(
    "wildcard",
    ["*-*-*.log", "*a*a*a*a*a*a*b", "a*" * 20 + "b", "*" + "-*" * 30 + ".log", "**-**-**"],
)
@pytest.mark.parametrize(
    "value", ["-" * 10_000, "a" * 10_000, ("a-" * 5_000)[:-1] + ".lo", "-" * 10_000 + ".log"]
)
def test_adversarial_wildcards_do_bounded_work_on_a_10_kb_value(wildcard: str, value: str) -> None:
    pattern = check(
        {"detail": {"file": [{"wildcard": wildcard}, {"anything-but": {"wildcard": wildcard}}]}}
    )
    event = {"detail": {"file": value}}
    steps = Steps()
    matches(pattern, event, steps)
    # two matchers read the value: at most its length each
    assert steps.count <= 2 * len(value)
    assert wildcard_match(wildcard, value) is _reference(wildcard, value)


@given(
    text=st.text(max_size=30),
    head=st.text(max_size=6),
    value=st.lists(st.text(max_size=30), max_size=6),
)
def test_every_string_matcher_examines_each_value_once(
    text: str, head: str, value: list[str]
) -> None:
    pattern = check(
        {
            "f": [
                {"prefix": head},
                {"suffix": {"equals-ignore-case": head}},
                {"equals-ignore-case": text},
                {"anything-but": {"prefix": head}},
                {"wildcard": head + "*" + head},
                text,
            ]
        }
    )
    steps = Steps()
    matches(pattern, {"f": value}, steps)
    assert steps.count <= 6 * sum(len(v) for v in value)
