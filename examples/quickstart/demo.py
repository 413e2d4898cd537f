"""The quick-start demo: real tasks through SQS and DynamoDB, no AWS account.

Run from the repository root::

    python -m examples.quickstart.demo

It starts the embedded local AWS endpoint (a moto server on a free loopback
port), creates the app's queues, dead-letter queues and table, starts a real
``sqsq worker`` process, sends tasks the ways a user would — ``delay``,
``delay_many``, a message written by hand with plain boto3 as an AWS service
would, a message that cannot be run, a periodic task fired by the local
scheduler — reads the results back and stops the worker with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    from sqsq.local import LocalEndpoint

    endpoint = LocalEndpoint().start()
    os.environ.update(endpoint.environ())
    sys.path.insert(0, str(ROOT))

    from examples.quickstart.app import (
        Order,
        app,
        build_report,
        charge,
        price_quote,
        refund,
        render_email,
    )
    from sqsq import TaskFailed
    from sqsq.resources import apply

    print(f"local AWS endpoint: {endpoint.url}\n")
    print("1. sqsq resources create examples.quickstart.app:app")
    for change in apply(app):
        print(f"   {change.action:>7} {change.kind:<18} {change.name}")

    out_dir = tempfile.mkdtemp(prefix="sqsq-demo-")
    print("\n2. sqsq worker examples.quickstart.app:app  (a real process)")
    worker = subprocess.Popen(
        # --wait-time 2: at SIGTERM the worker lets its open long poll return (SQS
        # cannot withdraw one), so a short poll keeps the demo's shutdown quick.
        [
            sys.executable,
            "-m",
            "sqsq",
            "worker",
            "examples.quickstart.app:app",
            "-c",
            "8",
            "--wait-time",
            "2",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )

    print("\n3. sending tasks")
    results = {
        "charge.delay(Order(o-1, 500))": charge.delay(Order(order_id="o-1", cents=500)),
        "build_report.delay(1000, 2.0)": build_report.delay(1000, seconds=2.0),
        "price_quote.delay('sku-1', 3, Decimal('9.99'))  [async def]": price_quote.delay(
            "sku-1", 3, Decimal("9.99")
        ),
        "refund.delay('o-9')  [raises]": refund.delay("o-9"),
    }
    emails = render_email.delay_many(
        [(f"customer{i}@example.com", f"Order o-{i} confirmed", out_dir) for i in range(1, 6)]
    )
    for i, result in enumerate(emails, 1):
        results[f"render_email #{i}  [delay_many, SendMessageBatch]"] = result

    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name("default"))
    body = {"task": "examples.quickstart.app.charge", "args": [{"order_id": "o-2", "cents": 250}]}
    sent = sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    results["boto3 send_message, hand-written JSON"] = app.AsyncResult(sent["MessageId"])
    bad = sqs.send_message(QueueUrl=url, MessageBody='{"task": "no.such.task"}')
    results["boto3 send_message, unknown task"] = app.AsyncResult(bad["MessageId"])
    print(f"   {len(results)} tasks sent")

    print("\n4. sqsq schedule sync examples.quickstart.app:app  (periodic tasks, no beat)")
    from datetime import UTC, datetime, timedelta

    from sqsq.schedules import scheduler
    from sqsq.schedules.local import LocalScheduler

    for change in scheduler.apply(app).pending:
        print(f"   {change.action:>7} {change.kind:<18} {change.name}")
    # The local endpoint stores schedules but never fires them; the local scheduler
    # (`sqsq schedule serve`, `sqsq dev`) does. A fake clock jumps to the next fire.
    report = app.periodic_tasks["daily-sales-report"]
    fire_at = report.next_fire_times(datetime.now(UTC), count=1)[0]
    clock = [fire_at - timedelta(seconds=1)]
    local = LocalScheduler(app, clock=lambda: clock[0])
    local.tick()
    clock[0] = fire_at + timedelta(seconds=1)
    for fire in local.tick():
        results[f"{fire.schedule}, fired for {fire.scheduled_at:%Y-%m-%d %H:%M} UTC"] = (
            app.AsyncResult(fire.task_id)
        )

    print("\n5. results read back from DynamoDB")
    for label, result in results.items():
        try:
            value = result.get(timeout=60)
            shown = json.dumps(value)
        except TaskFailed as exc:
            reason = result.record.dead_letter_reason if result.record else None
            shown = f"{exc.remote_type}: {exc.remote_message}"
            if reason:
                shown = f"dead-lettered ({reason}): {exc.remote_message}"
        print(f"   {result.state.value:<8} {label}\n            -> {shown[:110]}")

    dlq_url = app.directory.url(app.queue_name("default") + "-dlq")
    moved = sqs.receive_message(
        QueueUrl=dlq_url, MessageAttributeNames=["All"], MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages", [])
    print(f"\n6. dead-letter queue {app.queue_name('default')}-dlq holds {len(moved)} message(s)")
    for message in moved:
        reason = message["MessageAttributes"]["sqsq-dead-letter-reason"]["StringValue"]
        print(f"   reason={reason:<20} {message['Body'][:90]}")

    print(f"\n7. emails rendered into {out_dir}: {sorted(os.listdir(out_dir))}")

    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)
    summary = [line for line in stderr.splitlines() if "stopped after" in line]
    print(f"\n8. SIGTERM -> worker exited with code {worker.returncode}")
    if summary:
        print("   " + summary[-1].split(": ", 1)[-1])
    endpoint.stop()
    ok = worker.returncode == 0 and results["refund.delay('o-9')  [raises]"].failed()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
