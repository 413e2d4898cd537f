"""GroupResult: the results of a group's members, read with BatchGetItem."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import limits
from ..aws_errors import aws_boundary
from ..calls import run
from ..dynamodb import record_from_item, result_key, with_value
from ..errors import ResultTimeout
from ..result import READY_STATES, AsyncResult, ResultRecord, State

if TYPE_CHECKING:
    from ..app import App


class GroupResult:
    """The results of a group, in the group's order (Celery's ``GroupResult``).

    Args:
        id: the group id.
        results: the members' results (an :class:`~sqsq.AsyncResult` each, or a
            nested GroupResult / chain result).
        app: the App whose table holds them.

    Each poll reads the members not yet final with BatchGetItem (100 keys a call,
    ``limits.DYNAMODB_MAX_BATCH_GET_ITEMS``, consistent reads): a group of 100 costs
    one request per poll.
    """

    def __init__(self, id: str, results: Sequence[Any], app: App) -> None:
        self.id = id
        self.results: list[Any] = list(results)
        self.app = app
        self.parent: Any = None
        self._records: dict[str, ResultRecord] = {}

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} [{len(self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    # --- reading ---------------------------------------------------------------------

    def _ids(self) -> list[str]:
        return [r.id for r in self.results if isinstance(r, AsyncResult)]

    @aws_boundary(lambda group, *_: group.app.table_name)
    def refresh(self) -> None:
        """Read every member not yet final: BatchGetItem, 100 keys per call."""
        wanted = [i for i in self._ids() if i not in self._records]
        client = self.app.clients.sync("dynamodb")
        table = self.app.table_name
        step = limits.DYNAMODB_MAX_BATCH_GET_ITEMS
        for start in range(0, len(wanted), step):
            request: dict[str, Any] = {
                table: {
                    "Keys": [result_key(i) for i in wanted[start : start + step]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(table, []):
                    record = record_from_item(item)
                    if record is not None and record.state in READY_STATES:
                        record = run(with_value(record), self.app.clients)  # an S3 value
                        self._records[record.task_id] = record
                request = response.get("UnprocessedKeys") or {}
        for r in self.results:
            if isinstance(r, AsyncResult) and r.id in self._records:
                r._record = self._records[r.id]
        for r in self.results:
            if isinstance(r, GroupResult):
                r.refresh()

    def _states(self) -> list[State]:
        self.refresh()
        states = []
        for r in self.results:
            if isinstance(r, GroupResult):
                states.append(State.SUCCESS if r.successful() else
                              State.FAILURE if r.failed() else State.PENDING)  # fmt: skip
            else:
                record = self._records.get(r.id)
                states.append(record.state if record else State.PENDING)
        return states

    def ready(self) -> bool:
        """True once every member is SUCCESS, FAILURE or REVOKED."""
        return all(s in READY_STATES for s in self._states())

    def successful(self) -> bool:
        """True once every member is SUCCESS."""
        return all(s is State.SUCCESS for s in self._states())

    def failed(self) -> bool:
        """True if any member is FAILURE."""
        return any(s is State.FAILURE for s in self._states())

    def completed_count(self) -> int:
        """How many members are SUCCESS."""
        return sum(s is State.SUCCESS for s in self._states())

    def waiting(self) -> bool:
        """True while some member is not ready."""
        return not self.ready()

    def get(
        self, timeout: float | None = None, interval: float = 0.5, propagate: bool = True
    ) -> list[Any]:
        """Wait for every member and return their values in order.

        Args:
            timeout: seconds to wait in all; None waits forever.
            interval: seconds between polls (one BatchGetItem per 100 members not final).
            propagate: raise the first failed member's error (default) or return it
                in its place.

        Raises:
            TaskFailed: a member failed (``propagate``).
            ResultTimeout: not all ready within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready():
            if deadline is not None and time.monotonic() >= deadline:
                left = len(self.results) - sum(
                    1
                    for r in self.results
                    if not isinstance(r, AsyncResult) or r.id in self._records
                )
                raise ResultTimeout(
                    f"group {self.id}: {left} of {len(self.results)} results not ready "
                    f"after {timeout} s"
                )
            wait = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(wait, 0))
        values = []
        for r in self.results:
            if isinstance(r, GroupResult):
                values.append(r.get(timeout=timeout, interval=interval, propagate=propagate))
            else:
                values.append(r.get(propagate=propagate))
        return values

    join = get
