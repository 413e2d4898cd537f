"""settle's RESEND of several bodies (a foreign message split by ``sqsq.events``):
the message may go only once every copy is sent. AWS's failure of one
SendMessageBatch call is injected with botocore's event hooks on a real endpoint."""

from __future__ import annotations

import json
from typing import Any

import sqsq
import sqsq.resources
from sqsq.delivery import Delivery
from sqsq.outcome import Outcome, OutcomeKind
from sqsq.settle import may_let_go, store


def test_a_split_is_let_go_only_once_all_its_copies_are_sent(local_aws: Any) -> None:
    app = sqsq.App("split", region_name="us-east-1")
    sqsq.resources.apply(app)
    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name("default"))
    bodies = tuple(json.dumps({"n": n}) for n in range(12))  # two SendMessageBatch calls
    outcome = Outcome(
        Delivery("m-1", "r-1", "{}", "default", queue_url=url),
        OutcomeKind.RESEND,
        "m-1",
        None,
        store=False,
        bodies=bodies,
    )
    calls: list[int] = []

    def fail_the_first(**kwargs: Any) -> None:
        calls.append(len(kwargs["params"]["Entries"]))
        if len(calls) == 1:
            raise ConnectionError("injected: the first SendMessageBatch fails")

    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", fail_the_first)
    try:
        kept = store(app, [outcome])
        assert calls == [10, 2]  # the second call succeeded after the first failed
        assert kept and kept[0] is outcome
        assert not outcome.copied and not may_let_go(outcome)
        kept = store(app, [outcome])  # the settler tries again: every copy is sent again
    finally:
        sqs.meta.events.unregister("provide-client-params.sqs.SendMessageBatch", fail_the_first)
    assert kept == [] and outcome.copied and may_let_go(outcome)
    assert calls == [10, 2, 10, 2]
