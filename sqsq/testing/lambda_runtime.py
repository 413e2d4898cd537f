"""Where the simulated SQS event source mapping runs a handler (:mod:`.lambda_esm`):
execution environments as processes, or this process; and :func:`build_bundle`,
what ``sam build`` packs for a Python function.

A :class:`Subprocess` environment is one Python process initialised once (cold
start: the handler's module is imported, within :data:`INIT_TIMEOUT_S`), invoked
again and again (warm), and killed — with whatever it was doing — when an invocation
passes the function's timeout, as Lambda does ("Lambda execution environment
lifecycle"); the next invocation starts a new one. Responses come back on a pipe of
their own, so the handler's stdout (logs, EMF metrics) is kept apart, in
``take_logs()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Longest Init phase of an on-demand function, seconds ("Lambda execution environment
#: lifecycle": Init phase, 10 seconds).
INIT_TIMEOUT_S = 10.0
#: What ``sam build`` is told to leave out here (it copies CodeUri whole; these are
#: never part of an app and would make a test copy gigabytes).
BUNDLE_IGNORE = (".git", ".venv", ".cache", ".aws-sam", "__pycache__", "node_modules", "*.pyc")

# --- runtimes --------------------------------------------------------------------------

_BOOTSTRAP = r"""
import importlib, json, logging, os, sys, time, traceback
sys.path[:0] = json.loads(os.environ.pop("_SQSQ_ESM_PATHS"))
# as Lambda's Python runtime: a handler on the root logger, writing to the function's
# log; its level from the function's LoggingConfig (AWS_LAMBDA_LOG_LEVEL) when set
_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s\t%(message)s"))
logging.getLogger().addHandler(_handler)
logging.getLogger().setLevel(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "WARNING"))
out = os.fdopen(int(os.environ.pop("_SQSQ_ESM_FD")), "w")
def say(value):
    out.write(json.dumps(value) + "\n"); out.flush()
module, _, name = os.environ["_HANDLER"].rpartition(".")
try:
    handler = getattr(importlib.import_module(module), name)
except BaseException as exc:
    say({"init_error": {"errorType": "Runtime.ImportModuleError",
        "errorMessage": f"Unable to import module '{module}': {type(exc).__name__}: {exc}",
        "stackTrace": traceback.format_exc()}})
    sys.exit(1)
say({"ready": True})
class Context:
    def __init__(self, request):
        self._deadline = time.monotonic() + request["timeout_ms"] / 1000
        self.aws_request_id = request["request_id"]
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.invoked_function_arn = request["function_arn"]
        self.log_group_name = self.log_stream_name = ""
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))
for line in sys.stdin:
    request = json.loads(line)
    context = Context(request)
    print(f"START RequestId: {context.aws_request_id} Version: $LATEST", flush=True)
    try:
        response = handler(request["event"], context)
        answer = {"response": json.loads(json.dumps(response))}
    except BaseException as exc:
        answer = {"error": {"errorType": type(exc).__name__, "errorMessage": str(exc),
            "stackTrace": traceback.format_exc()}}
    sys.stderr.flush()
    print(f"END RequestId: {context.aws_request_id}", flush=True)
    say(answer)
"""


class Subprocess:
    """Execution environments as processes: ``python -I [-S]`` with ``paths`` first on
    ``sys.path``, the function's environment variables, and the handler imported once
    per environment.

    Args:
        handler: ``module.function``.
        paths: directories put first on the environment's ``sys.path`` (the code or
            bundle directory, like ``/var/task``).
        environ: the function's environment variables (the template's plus the
            endpoint's).
        isolated: leave out site-packages too (``-S``): only ``paths`` and the standard
            library — a bundle test.
        python: the interpreter (default: this one).
    """

    def __init__(
        self,
        handler: str,
        paths: list[Path],
        environ: dict[str, str],
        *,
        isolated: bool = False,
        python: str | None = None,
    ) -> None:
        self.handler = handler
        self.paths = [str(p) for p in paths]
        self.environ = environ
        self.isolated = isolated
        self.python = python or sys.executable
        self.logs: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._responses: Any = None
        self._lock = threading.Lock()

    def _start(self) -> dict[str, str] | None:
        read, write = os.pipe()
        env = {
            **self.environ,
            "_HANDLER": self.handler,
            "_SQSQ_ESM_PATHS": json.dumps(self.paths),
            "_SQSQ_ESM_FD": str(write),
            "PATH": os.environ.get("PATH", ""),
        }
        flags = ["-I", "-S"] if self.isolated else ["-I"]
        self._process = subprocess.Popen(
            [self.python, *flags, "-c", _BOOTSTRAP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            pass_fds=(write,),
        )
        os.close(write)
        self._responses = os.fdopen(read, "r")
        threading.Thread(target=self._pump, args=(self._process,), daemon=True).start()
        answer = self._read(INIT_TIMEOUT_S)
        if answer is None or "ready" not in answer:
            self.kill()
            error = (answer or {}).get("init_error") or {
                "errorType": "Runtime.InitTimeout" if answer is None else "Runtime.ExitError",
                "errorMessage": "the environment did not initialise",
            }
            return dict(error)
        return None

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                self.logs.append(line.rstrip("\n"))

    def _read(self, timeout_s: float) -> dict[str, Any] | None:
        ready, _, _ = select.select([self._responses], [], [], max(0.0, timeout_s))
        if not ready:
            return None
        line = self._responses.readline()
        return json.loads(line) if line else {"error": {"errorType": "Runtime.ExitError"}}

    def invoke(
        self, event: dict[str, Any], timeout_s: float, request_id: str, function_arn: str
    ) -> tuple[Any, dict[str, str] | None, bool, bool]:
        """``(response, error, timed_out, cold_start)`` of one invocation."""
        cold = self._process is None or self._process.poll() is not None
        if cold:
            init_error = self._start()
            if init_error:
                return None, init_error, False, True
        assert self._process is not None and self._process.stdin is not None
        request = {
            "event": event,
            "timeout_ms": int(timeout_s * 1000),
            "request_id": request_id,
            "function_arn": function_arn,
        }
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer = self._read(timeout_s)
        if answer is None:  # past the timeout: Lambda stops the environment
            self.kill()
            message = f"Task timed out after {timeout_s:.2f} seconds"
            return None, {"errorType": "Sandbox.Timedout", "errorMessage": message}, True, cold
        if "error" in answer:
            return None, dict(answer["error"]), False, cold
        return answer.get("response"), None, False, cold

    def kill(self) -> None:
        """Stop the environment at once (SIGKILL), as a timeout does."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGKILL)
                self._process.wait(timeout=10)
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._responses is not None:
            self._responses.close()
            self._responses = None

    def take_logs(self, request_id: str = "") -> list[str]:
        """The environment's output since the last call: up to the invocation's
        ``END RequestId`` line (waited for, briefly) when ``request_id`` is given."""
        deadline = time.monotonic() + 2.0
        end = f"END RequestId: {request_id}"
        while request_id and time.monotonic() < deadline:
            with self._lock:
                if end in self.logs:
                    break
            if self._process is None or self._process.poll() is not None:
                break
            time.sleep(0.01)
        with self._lock:
            logs, self.logs = self.logs, []
        return logs

    def copy(self) -> Subprocess:
        """Another environment of the same function (for concurrent invocations)."""
        return Subprocess(
            self.handler, [Path(p) for p in self.paths], self.environ, isolated=self.isolated
        )


class InProcess:
    """The handler called in this process, in a thread (fast; for tests whose
    invocations end within the timeout: a timed-out invocation is recorded as AWS
    would, but its thread cannot be killed and runs on)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self.handler = handler
        self.started = False

    def invoke(
        self, event: dict[str, Any], timeout_s: float, request_id: str, function_arn: str
    ) -> tuple[Any, dict[str, str] | None, bool, bool]:
        from . import LambdaContext

        cold, self.started = not self.started, True
        context = LambdaContext(int(timeout_s * 1000), request_id)
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["response"] = json.loads(json.dumps(self.handler(event, context)))
            except BaseException as exc:
                box["error"] = {"errorType": type(exc).__name__, "errorMessage": str(exc)}

        thread = threading.Thread(target=call, name=f"lambda-{request_id}", daemon=True)
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():
            message = f"Task timed out after {timeout_s:.2f} seconds"
            return None, {"errorType": "Sandbox.Timedout", "errorMessage": message}, True, cold
        return box.get("response"), box.get("error"), False, cold

    def kill(self) -> None:
        self.started = False

    def take_logs(self, request_id: str = "") -> list[str]:
        return []

    def copy(self) -> InProcess:
        return InProcess(self.handler)


Runtime = Subprocess | InProcess


# --- sam build ----------------------------------------------------------------------------


def build_bundle(code_dir: Path, dest: Path, *, python: str | None = None) -> Path:
    """What ``sam build`` packs for a Python function, in ``dest``: ``code_dir`` copied
    (less :data:`BUNDLE_IGNORE`) and its ``requirements.txt`` installed beside it with
    ``pip install --target`` ("Building Python Lambda functions with AWS SAM").

    Installs for this machine's platform and Python (Lambda's are Amazon Linux and the
    function's runtime): what it shows is that the requirements are complete.

    Returns:
        ``dest``, to put on the environment's path (``isolated=True``).

    Raises:
        FileNotFoundError: ``code_dir`` has no ``requirements.txt``.
        subprocess.CalledProcessError: pip failed (its output in the exception).
    """
    requirements = code_dir / "requirements.txt"
    if not requirements.is_file():
        raise FileNotFoundError(requirements)
    shutil.copytree(
        code_dir, dest, ignore=shutil.ignore_patterns(*BUNDLE_IGNORE), dirs_exist_ok=True
    )
    subprocess.run(
        [
            python or sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(dest),
            "-r",
            str(requirements),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return dest


__all__ = ["INIT_TIMEOUT_S", "InProcess", "Runtime", "Subprocess", "build_bundle"]
