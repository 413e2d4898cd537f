"""``Task`` is generic over a ParamSpec: ``delay`` is type-checked at the call site,
``bind=True`` tasks included (mypy --strict over tests/typing/api_usage.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "typing" / "api_usage.py"

pytest.importorskip("mypy", reason="mypy is in the test extra")


@pytest.mark.slow
def test_delay_is_type_checked_at_the_call_site(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), str(SAMPLE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    reported = {int(n) for n in re.findall(rf"{re.escape(SAMPLE.name)}:(\d+): error", done.stdout)}
    expected = {
        number
        for number, line in enumerate(SAMPLE.read_text().splitlines(), start=1)
        if line.rstrip().endswith("# error")
    }
    assert expected, "the sample marks no line"
    assert reported == expected, done.stdout
