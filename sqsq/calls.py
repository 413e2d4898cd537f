"""AWS call sequences written once, run by boto3 or by aiobotocore (sans-IO).

A sequence of AWS calls whose order matters — settle's store-then-let-go, a
BatchWriteItem with its retries of unprocessed items, a conditional write that
reads the old item only on conflict — is a plain generator: it yields the
request it needs and receives the answer, and never does I/O itself. Two small
drivers carry the requests out: :func:`run` with boto3 (Lambda, the producer's
sync calls) and :func:`arun` with aiobotocore (the worker, asyncio producers).
The sync and async public functions are then one-line shells over the same
generator (h11 / httpcore's pattern)::

    def claim(...):         return run(_claim(...), clients)
    async def aclaim(...):  return await arun(_claim(...), clients)

Requests a generator may yield, and what it receives back:

==================  ==================================================================
request             answer
==================  ==================================================================
:class:`Call`       the response dict (a streaming ``Body``, S3 GetObject's, read
                    to bytes); an exception of the call (a botocore
                    ``ClientError``, a connection error, a missing queue's URL lookup)
                    is *thrown into* the generator at the ``yield``, so the logic
                    that decides on error codes stays in the generator
:class:`Gather`     one entry per call, in order: its response, or the
                    ``Exception`` it raised (returned, not thrown). aiobotocore
                    runs them concurrently, boto3 one after another
:class:`Sleep`      None, after ``delay_s`` seconds (``asyncio.sleep`` / ``time.sleep``)
:class:`QueueUrl`   the queue's URL (``directory.url`` / ``directory.aurl``); its
                    error (a missing queue: ``ConfigurationError``) is thrown in
==================  ==================================================================

A generator's ``return`` value is what the driver returns.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One AWS call: ``getattr(client(service), method)(**kwargs)``.

    Attributes:
        service: the botocore service name (``"sqs"``, ``"dynamodb"``, ``"stepfunctions"``).
        method: the client method (``"send_message_batch"``, ``"update_item"``).
        kwargs: the call's parameters.
        queue: an SQS queue *name* whose URL the driver looks up (the directory
            caches it) and passes as ``QueueUrl``; None: ``kwargs`` is complete.
    """

    service: str
    method: str
    kwargs: dict[str, Any]
    queue: str | None = None


@dataclass(frozen=True)
class Gather:
    """Several calls at once; answered by a list of responses or exceptions.

    Attributes:
        calls: the calls, answered in this order.
        concurrency: at most this many in flight at once with aiobotocore
            (None: all of them).
    """

    calls: tuple[Call, ...]
    concurrency: int | None = None


@dataclass(frozen=True)
class Sleep:
    """A pause (backoff between retries), ``delay_s`` seconds (≤ 0: none)."""

    delay_s: float


@dataclass(frozen=True)
class QueueUrl:
    """The URL of SQS queue ``queue`` (the directory's cached GetQueueUrl)."""

    queue: str


Request = Call | Gather | Sleep | QueueUrl
#: A sans-IO call sequence returning ``T``.
Steps = Generator[Request, Any, T]


def _kwargs(call: Call, url: str | None) -> dict[str, Any]:
    return call.kwargs if url is None else {**call.kwargs, "QueueUrl": url}


def _one(call: Call, clients: Any, directory: Any) -> Any:
    url = directory.url(call.queue) if call.queue is not None else None
    response = getattr(clients.sync(call.service), call.method)(**_kwargs(call, url))
    if isinstance(response, dict) and hasattr(response.get("Body"), "read"):
        with response["Body"] as stream:  # S3 GetObject: the generator gets bytes
            response["Body"] = stream.read()
    return response


def _answer(request: Request, clients: Any, directory: Any) -> Any:
    if isinstance(request, Sleep):
        if request.delay_s > 0:
            time.sleep(request.delay_s)
        return None
    if isinstance(request, QueueUrl):
        return directory.url(request.queue)
    if isinstance(request, Gather):
        answers: list[Any] = []
        for call in request.calls:
            try:
                answers.append(_one(call, clients, directory))
            except Exception as exc:
                answers.append(exc)
        return answers
    return _one(request, clients, directory)


def run(steps: Steps[T], clients: Any, directory: Any = None) -> T:
    """Carry out ``steps`` with boto3; returns the generator's value.

    Args:
        steps: the call sequence.
        clients: the client factory (``sqsq.clients.Clients``: ``.sync(service)``).
        directory: the queue-URL directory (``sqsq.sqs.QueueDirectory``), needed
            only for a :class:`Call` that names a ``queue`` and for :class:`QueueUrl`.

    Raises:
        Whatever the generator raises (including a call's exception it does not catch).
    """
    try:
        request = next(steps)
        while True:
            try:
                answer = _answer(request, clients, directory)
            except Exception as exc:
                request = steps.throw(exc)
            else:
                request = steps.send(answer)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _aone(call: Call, clients: Any, directory: Any) -> Any:
    url = await directory.aurl(call.queue) if call.queue is not None else None
    client = await clients.aclient(call.service)
    response = await getattr(client, call.method)(**_kwargs(call, url))
    if isinstance(response, dict) and hasattr(response.get("Body"), "read"):
        async with response["Body"] as stream:  # S3 GetObject: the generator gets bytes
            response["Body"] = await stream.read()
    return response


async def _aanswer(request: Request, clients: Any, directory: Any) -> Any:
    import asyncio  # not at import time: ``import sqsq`` stays without asyncio

    if isinstance(request, Sleep):
        await asyncio.sleep(max(request.delay_s, 0))
        return None
    if isinstance(request, QueueUrl):
        return await directory.aurl(request.queue)
    if isinstance(request, Gather):
        gate = asyncio.Semaphore(request.concurrency or max(len(request.calls), 1))

        async def one(call: Call) -> Any:
            async with gate:
                try:
                    return await _aone(call, clients, directory)
                except Exception as exc:
                    return exc

        return list(await asyncio.gather(*(one(call) for call in request.calls)))
    return await _aone(request, clients, directory)


async def arun(steps: Steps[T], clients: Any, directory: Any = None) -> T:
    """Asyncio twin of :func:`run`: the same ``steps`` with aiobotocore
    (``await clients.aclient(service)``, ``await directory.aurl(name)``,
    ``asyncio.sleep``), a :class:`Gather`'s calls run concurrently."""
    try:
        request = next(steps)
        while True:
            try:
                answer = await _aanswer(request, clients, directory)
            except Exception as exc:
                request = steps.throw(exc)
            else:
                request = steps.send(answer)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
