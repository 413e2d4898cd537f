"""AWS requests per member of a group and of a chord, against plain tasks.

Three runs on one local endpoint, each drained by one ``sqsq worker --burst``:

1. ``noop.delay_many`` of N tasks (the baseline: what any N tasks cost);
2. ``group(noop.s(i) for i in range(N))``;
3. ``chord((noop.s(i) for i in range(N)), total.s())``.

Producer requests come from ``app.clients.counter``, the worker's from its
``worker.stopped`` log record; the report gives requests per member by API
action and the difference to the baseline (what the canvas adds). Run from the
repository root::

    python -m benchmarks.workflows --members 200 [--json]

Exit status 0 when every run's result is right, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

from benchmarks.throughput import ROOT, diff, start_endpoint, stop_endpoint, stopped_record

APP = "benchmarks.canvas_app:app"


def drain(env: dict[str, str], timeout_s: float = 1800.0) -> dict[str, int]:
    """Run one burst worker; returns its requests by API action."""
    worker_env = {**os.environ, **env}
    worker_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, "-m", "sqsq", "worker", APP, "--burst", "-c", "20"]
    done = subprocess.run(
        [*command, "--log-format", "json"],
        cwd=ROOT,
        env=worker_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout_s,
    )
    record = stopped_record(done.stderr)
    if record is None:
        sys.stderr.write(done.stderr[-4000:])
        return {}
    return dict(record.get("requests", {}))


def run(members: int) -> dict[str, Any]:
    """The three runs; requests per member by API action (producer + worker)."""
    endpoint, url = start_endpoint()
    try:
        from sqsq.local import LOCAL_ENVIRONMENT

        env = {**LOCAL_ENVIRONMENT, "SQSQ_ENDPOINT_URL": url}
        os.environ.update(env)
        import sqsq
        from benchmarks.canvas_app import app, noop, total
        from sqsq.resources import apply

        apply(app)
        runs: dict[str, Any] = {}
        ok = True
        for name in ("tasks", "group", "chord"):
            before = app.clients.counter.snapshot()
            if name == "tasks":
                results: Any = noop.delay_many((i,) for i in range(members))
            elif name == "group":
                results = sqsq.group(noop.s(i) for i in range(members)).delay()
            else:
                results = sqsq.chord((noop.s(i) for i in range(members)), total.s()).delay()
            producer = diff(app.clients.counter.snapshot(), before)
            worker = drain(env)
            if name == "tasks":
                ok &= [r.get(timeout=10) for r in results] == list(range(members))
            elif name == "group":
                ok &= results.get(timeout=10) == list(range(members))
            else:
                ok &= results.get(timeout=10) == sum(range(members))
            both = Counter(producer)
            both.update(worker)
            runs[name] = {
                "producer": producer,
                "worker": worker,
                "per_member": {k: round(n / members, 3) for k, n in sorted(both.items())},
                "sqs_per_member": round(
                    sum(n for k, n in both.items() if k.startswith("sqs.")) / members, 3
                ),
                "dynamodb_per_member": round(
                    sum(n for k, n in both.items() if k.startswith("dynamodb.")) / members, 3
                ),
            }
        app.close()
        return {"members": members, "ok": ok, "runs": runs}
    finally:
        stop_endpoint(endpoint)


def render(report: dict[str, Any]) -> str:
    runs = report["runs"]
    keys = sorted({k for r in runs.values() for k in r["per_member"]})
    lines = [f"requests per member, {report['members']} members (producer + worker)", ""]
    lines.append(f"{'action':36}" + "".join(f"{n:>10}" for n in runs))
    for key in keys:
        lines.append(
            f"{key:36}" + "".join(f"{r['per_member'].get(key, 0):>10}" for r in runs.values())
        )
    lines.append("")
    for kind in ("sqs", "dynamodb"):
        field = f"{kind}_per_member"
        base = runs["tasks"][field]
        cells = "".join(f"{r[field]:>10}" for r in runs.values())
        added = ", ".join(
            f"{n} +{round(r[field] - base, 3)}" for n, r in runs.items() if n != "tasks"
        )
        lines.append(f"{kind + ' total':36}{cells}   (canvas adds: {added})")
    lines.append("")
    lines.append("results right: " + ("yes" if report["ok"] else "NO"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    report = run(options.members)
    print(json.dumps(report, indent=2) if options.json else render(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
