"""``Task`` is generic over a ParamSpec: ``delay`` is type-checked at the call site,
``bind=True`` tasks included (mypy --strict over tests/typing/api_usage.py).

mypy checks this checkout's ``sqsq/`` beside the sample, both strictly: given only the
sample, mypy would resolve ``import sqsq`` to the installed copy (an editable install
may point at another checkout) and silence every error in it as a third-party package.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "typing" / "api_usage.py"
#: ``path:line: error: …`` as mypy prints it.
_ERROR = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): error", re.MULTILINE)


@pytest.mark.slow
def test_delay_is_type_checked_at_the_call_site(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path),
            "sqsq",
            str(SAMPLE.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 2: mypy itself failed
    checked = re.search(r"\(checked (\d+) source files?\)", done.stdout)
    assert checked and int(checked.group(1)) > 1, done.stdout  # sqsq's modules and the sample
    reported = {(Path(m["path"]), int(m["line"])) for m in _ERROR.finditer(done.stdout)}
    expected = {
        (SAMPLE.relative_to(ROOT), number)
        for number, line in enumerate(SAMPLE.read_text().splitlines(), start=1)
        if line.rstrip().endswith("# error")
    }
    assert expected, "the sample marks no line"
    assert reported == expected, done.stdout  # no error in sqsq/, none elsewhere in the sample
