"""One factory for boto3 and aiobotocore clients, shared by everything in an App.

Clients are created once and reused (a client holds a connection pool; creating
one costs milliseconds and memory). Every client gets botocore's ``standard`` (or
``adaptive``) retry mode, which retries throttling, 5xx and connection errors with
exponential backoff and jitter, and a :class:`RequestCounter` hook that counts each
HTTP request by API action — what the benchmarks and the worker summary report.

Bring your own: ``App(boto3_session=..., botocore_config=...)`` are used as given
(the config is merged over sqsq's defaults).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from .aws_errors import note_call
from .errors import ConfigurationError, MissingExtra

if TYPE_CHECKING:
    import asyncio

    import boto3
    from botocore.config import Config

    from .settings import Settings


#: The endpoint prefixes of the services sqsq's own clients call (``stepfunctions`` is
#: ``states``). Of botocore's endpoint data — every service in every partition, ~7 MiB
#: once parsed, a tenth of a worker's memory — only these services' entries are
#: kept; a client of another service still resolves from its partition's defaults
#: and its endpoint rule set.
ENDPOINT_SERVICES = frozenset(
    {"dynamodb", "iam", "s3", "scheduler", "secretsmanager", "sqs", "ssm", "states", "sts"}
)


def trim_endpoint_data(loader: Any) -> None:
    """Drop other services from the endpoint data ``loader`` (a botocore data loader)
    has cached; its sessions' endpoint resolvers read that cached copy."""
    endpoints, _ = loader.load_data_with_path("endpoints")
    for partition in endpoints.get("partitions", ()):
        services = partition.get("services", {})
        for name in [n for n in services if n not in ENDPOINT_SERVICES]:
            del services[name]


class RequestCounter:
    """Counts HTTP requests per ``service.Action`` (retries included).

    Registered on botocore's ``before-send`` event, which fires once per attempt.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(self, event_name: str = "", **kwargs: Any) -> None:
        # event_name is "before-send.<service>.<Operation>"
        key = event_name.partition(".")[2]
        with self._lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts, e.g. ``{"sqs.ReceiveMessage": 12}``."""
        with self._lock:
            return dict(sorted(self.counts.items()))

    def total(self, service: str) -> int:
        """All requests to one service (``"sqs"``, ``"dynamodb"``)."""
        with self._lock:
            return sum(n for k, n in self.counts.items() if k.startswith(service + "."))


class Clients:
    """Creates and caches the AWS clients of one App.

    Args:
        settings: the App's settings (region, endpoint, retry mode).
        boto3_session: a caller's ``boto3.Session`` for sync clients.
        botocore_config: a caller's ``botocore.config.Config``, merged over sqsq's.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        boto3_session: boto3.Session | None = None,
        botocore_config: Config | None = None,
    ) -> None:
        self.settings = settings
        self.counter = RequestCounter()
        self._session = boto3_session
        self._user_config = botocore_config
        self._lock = threading.Lock()
        self._sync: dict[str, Any] = {}
        self._botocore: Any = None  # botocore session when no boto3_session is given
        self._async: dict[tuple[int, str], tuple[asyncio.AbstractEventLoop, Any]] = {}
        self._stacks: dict[int, tuple[asyncio.AbstractEventLoop, AsyncExitStack]] = {}

    # --- shared configuration ---------------------------------------------------

    def config(self) -> Config:
        """botocore Config: retry mode/attempts from settings, pool sized for workers."""
        from botocore.config import Config

        base = Config(
            retries={"mode": self.settings.retry_mode, "max_attempts": self.settings.max_attempts},
            max_pool_connections=64,
            connect_timeout=5,
            read_timeout=max(60, int(self.settings.wait_time_s) + 30),
            tcp_keepalive=True,
        )
        return base.merge(self._user_config) if self._user_config else base

    def region(self) -> str:
        """The region: setting > boto3 chain > ``us-east-1`` for a local endpoint."""
        if self.settings.region_name:
            return self.settings.region_name
        region = self._session.region_name if self._session else None
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None:
            import botocore.session

            region = botocore.session.get_session().get_config_variable("region")
        if region:
            return str(region)
        if self.settings.endpoint_url or any(
            os.environ.get(f"AWS_ENDPOINT_URL{suffix}") for suffix in ("", "_SQS", "_DYNAMODB")
        ):
            return "us-east-1"
        raise ConfigurationError(
            "no AWS region configured: pass App(region_name=...), or set SQSQ_REGION_NAME "
            "or AWS_DEFAULT_REGION"
        )

    def endpoint_url(self, service: str) -> str | None:
        """The endpoint for ``service``: ``endpoint_url`` (SQSQ_ENDPOINT_URL) for every
        service, else botocore's ``AWS_ENDPOINT_URL_<SERVICE>`` / ``AWS_ENDPOINT_URL``
        (None: botocore reads them itself).

        STS (``resources create`` asks it for the account id) follows SQS: with only
        ``AWS_ENDPOINT_URL_SQS`` set, STS goes to that endpoint too, never to AWS
        while the queues are local.
        """
        if self.settings.endpoint_url:
            return self.settings.endpoint_url
        if service == "sts" and not (
            os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL")
        ):
            return os.environ.get("AWS_ENDPOINT_URL_SQS") or None
        return None

    def _kwargs(self, service: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"region_name": self.region(), "config": self.config()}
        endpoint = self.endpoint_url(service)
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        return kwargs

    # --- boto3 ------------------------------------------------------------------

    def sync(self, service: str) -> Any:
        """The cached boto3 client for ``service`` (``"sqs"``, ``"dynamodb"``, …).

        Built from the caller's ``boto3_session`` if given, else from a plain
        botocore session: the same client and credential chain, without importing
        boto3 (which imports s3transfer: about half of a cold producer's imports).
        """
        client = self._sync.get(service)
        if client is not None:
            return client
        with self._lock:
            client = self._sync.get(service)
            if client is None:
                if self._session is not None:
                    client = self._session.client(service, **self._kwargs(service))
                else:
                    client = self._botocore_session().create_client(
                        service, **self._kwargs(service)
                    )
                client.meta.events.register("before-send", self.counter)
                client.meta.events.register("after-call-error", note_call)
                self._sync[service] = client
        return client

    def _botocore_session(self) -> Any:
        """The botocore session of the sync clients (the caller's boto3 session's own,
        ``boto3.Session._session``, where it has one)."""
        inner = getattr(self._session, "_session", None)
        if inner is not None:
            return inner
        if self._botocore is None:
            import botocore.session

            self._botocore = botocore.session.get_session()
            trim_endpoint_data(self._botocore.get_component("data_loader"))
        return self._botocore

    # --- aiobotocore ------------------------------------------------------------

    async def aclient(self, service: str) -> Any:
        """The aiobotocore client for ``service``, cached per running event loop.

        Close them with :meth:`aclose` before the loop ends.

        Raises:
            MissingExtra: aiobotocore is not installed (``pip install 'sqsq[worker]'``).
        """
        import asyncio

        loop = asyncio.get_running_loop()
        key = (id(loop), service)
        cached = self._async.get(key)
        if cached is not None and cached[0] is loop:
            return cached[1]
        entry = self._stacks.get(id(loop))
        if entry is None or entry[0] is not loop:  # a new loop (ids of dead loops get reused)
            entry = (loop, AsyncExitStack())
            self._stacks[id(loop)] = entry
            for stale in [k for k in self._async if k[0] == id(loop)]:
                del self._async[stale]
        try:
            from aiobotocore.session import get_session
        except ImportError as exc:  # a core install: aiobotocore comes with sqsq[worker]
            raise MissingExtra("worker", "the async API (adelay, aget, the worker)", exc) from exc

        session = get_session()
        # One data loader for sync and async clients: the service models and endpoint
        # data are parsed once (~10 MiB less for a worker, whose leaser uses sync).
        with self._lock:
            loader = self._botocore_session().get_component("data_loader")
        session.register_component("data_loader", loader)
        if self._session is not None:
            creds = self._session.get_credentials()
            if creds is not None:
                frozen = creds.get_frozen_credentials()
                session.set_credentials(frozen.access_key, frozen.secret_key, frozen.token)
        client = await entry[1].enter_async_context(
            session.create_client(service, **self._kwargs(service))
        )
        client.meta.events.register("before-send", self.counter)
        client.meta.events.register("after-call-error", note_call)
        self._async[key] = (loop, client)
        return client

    async def aclose(self) -> None:
        """Close the aiobotocore clients of the running loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        entry = self._stacks.pop(id(loop), None)
        for key in [k for k in self._async if k[0] == id(loop)]:
            del self._async[key]
        if entry is not None:
            await entry[1].aclose()

    def close(self) -> None:
        """Close the boto3 clients (their connection pools)."""
        with self._lock:
            for client in self._sync.values():
                client.close()
            self._sync.clear()
