"""Queue priorities of ``sqsq worker``: weighted polling (``-Q high:5,low:1``) shares the
worker's receives by weight under saturation without starving the low queue; strict
mode (``--priority strict``) runs all of the high queue first; bad input is a CLI error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import sqsq
import sqsq.resources
from sqsq.worker.priorities import Priorities, parse_queues
from tests.apps import prio

PRIO = "tests.apps.prio:app"
BACKLOG = 60  # messages per queue


@pytest.fixture
def prio_app(local_aws: Any) -> sqsq.App:
    """The test app ``tests.apps.prio`` with its queues and table created."""
    sqsq.resources.apply(prio.app)
    return prio.app


def backlog(path: Path, n: int = BACKLOG) -> None:
    """``n`` tasks in each of the queues ``high`` and ``low``, sent before any worker."""
    prio.started_high.delay_many([(str(path), 0.01)] * n)
    prio.started_low.delay_many([(str(path), 0.01)] * n)


def start_order(path: Path) -> list[str]:
    return path.read_text().split()


# --- weighted -------------------------------------------------------------------------------


def test_weighted_shares_follow_the_weights_and_the_low_queue_does_not_starve(
    prio_app: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    path = tmp_path / "started"
    backlog(path)

    done = worker.run(PRIO, "-Q", "high:5,low:1", "-c", "2", "--prefetch", "4")

    assert done.returncode == 0, done.stderr
    order = start_order(path)
    assert sorted(set(order)) == ["high", "low"] and len(order) == 2 * BACKLOG
    # while both queues had work: every start up to the high queue's last one
    both = order[: len(order) - order[::-1].index("high")]
    high, low = both.count("high"), both.count("low")
    assert high == BACKLOG
    assert low > 0  # no starvation: the low queue ran before the high one drained
    assert 2.5 <= high / low <= 10, both  # 5:1, generous: receives come in batches


def test_smooth_weighted_round_robin_spreads_the_turns() -> None:
    priorities = Priorities(["low", "high"], {"high": 5})
    both = {"low", "high"}
    turns = []
    for _ in range(12):
        turn = priorities.pick(both, set(), set())
        assert turn is not None
        priorities.granted(turn, 1, both, set())
        turns.append(turn)

    assert turns.count("high") == 10 and turns.count("low") == 2
    assert "low" in turns[:6] and "low" in turns[6:]  # once in every round of 6
    # the high queue's receive is open and it is backlogged: its turn is kept for it
    assert priorities.pick({"low"}, {"high"}, set()) is None
    # open for longer than the hold: a long poll on a drained queue; the low queue goes on
    assert priorities.pick({"low"}, set(), {"high"}) == "low"
    priorities.received("high", full=False)  # drained: the low queue gets the room
    assert priorities.pick({"low"}, {"high"}, set()) == "low"
    # drained beside a backlog: its long poll asks for one message, not a batch
    assert priorities.size("high", 10) == 1 and priorities.size("low", 10) == 10
    priorities.received("low", full=False)
    assert priorities.size("high", 10) == 10  # nothing backlogged: full batches again


# --- strict ---------------------------------------------------------------------------------


def test_strict_runs_all_of_the_high_queue_first(
    prio_app: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    path = tmp_path / "started"
    backlog(path, 30)

    done = worker.run(PRIO, "-Q", "low,high:2", "--priority", "strict", "-c", "2")

    assert done.returncode == 0, done.stderr
    assert start_order(path) == ["high"] * 30 + ["low"] * 30


def test_strict_takes_a_lower_queue_only_while_every_higher_one_is_drained() -> None:
    priorities = Priorities(["high", "mid", "low"], {}, "strict")
    everyone = {"high", "mid", "low"}

    assert priorities.pick({"mid", "low"}, {"high"}, set()) is None  # high's first receive
    assert priorities.pick(everyone, set(), set()) == "high"
    priorities.received("high", full=False)
    assert priorities.pick({"mid", "low"}, {"high"}, set()) == "mid"
    priorities.received("mid", full=True)
    assert priorities.pick({"low"}, {"mid"}, set()) is None
    assert priorities.pick({"low"}, set(), {"mid"}) == "low"  # mid long-polls: drained
    # a drained higher queue keeps a one-message poll open above the backlog
    assert priorities.pick({"high", "low"}, set(), set()) == "high"
    assert priorities.size("high", 10) == 1
    priorities.received("mid", full=False)
    priorities.received("low", full=False)
    turns = []
    for _ in range(6):  # nothing backlogged: the long polls take turns
        turn = priorities.pick(everyone, set(), set())
        assert turn is not None
        priorities.granted(turn, 1, everyone, set())
        turns.append(turn)
    assert turns == ["high", "mid", "low"] * 2


# --- configuration --------------------------------------------------------------------------


def test_weights_and_mode_from_the_settings(
    prio_app: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    done = worker.run(
        PRIO,
        "--log-format",
        "json",
        SQSQ_QUEUE_WEIGHTS=json.dumps({"high": 3}),
        SQSQ_QUEUE_PRIORITY="strict",
    )

    assert done.returncode == 0, done.stderr
    assert "priority strict high:3, default:1, low:1" in done.stderr


def test_parse_queues() -> None:
    assert parse_queues("high:5, default") == (["high", "default"], {"high": 5})
    assert parse_queues("a,b") == (["a", "b"], {})


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ("high:0,low", "weight of queue 'high' must be a whole number >= 1"),
        ("high:x,low", "weight of queue 'high' must be a whole number >= 1"),
        ("high:1.5", "weight of queue 'high' must be a whole number >= 1"),
        ("high,high:2", "listed twice"),
        ("hihg:5,low", "hihg, which no task of the app uses"),
        ("high:5,bad name", "invalid SQS queue name"),
    ],
)
def test_bad_queue_weights_are_a_clear_cli_error(
    prio_app: sqsq.App, worker: Any, queues: str, message: str
) -> None:
    done = worker.run(PRIO, "-Q", queues)

    assert done.returncode == 2, done.stderr
    assert "Error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_weights_in_the_settings_are_a_configuration_error() -> None:
    with pytest.raises(sqsq.ConfigurationError, match="whole number >= 1"):
        sqsq.App("prio-bad", queue_weights={"high": 0})
