"""The dashboard's pages: Starlette routes rendering Jinja2 templates.

Every page is plain server-rendered HTML (no JavaScript at all): filters are GET
forms, so a page's URL holds its filters and can be shared or bookmarked. Each app
lives under ``/apps/<name>/``; ``/`` lists them (or opens the only one).

Routes of an app (see :mod:`.reads` for the AWS requests of each)::

    /apps/<app>/                 overview: queues, DLQs, workers, recent failures
    /apps/<app>/tasks            listed results: ?state=&task=&queue=&since=&until=&before=
    /apps/<app>/tasks/<id>       one task: arguments, outcome, traceback, attempts
    /apps/<app>/errors           failures grouped by (task, exception type): ?since=
    /apps/<app>/dead-letters     each DLQ's messages (``sqsq dlq ls``)
    /apps/<app>/schedules        periodic tasks and their next fires
    /apps/<app>/workers          live workers (heartbeats)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import listing
from ..errors import AWSError
from ..result import State
from . import reads

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent

#: Headers of every page: no framing, no sniffing, only our own stylesheet.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _age(value: float | datetime | None) -> str:
    if value is None:
        return "?"
    seconds = (datetime.now(UTC) - value).total_seconds() if isinstance(value, datetime) else value
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _when(value: datetime | float | None) -> str:
    if value is None:
        return ""
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = _age
    env.filters["when"] = _when
    env.filters["json"] = reads.plain
    return env


class Dashboard:
    """The pages of one or more apps (see the module docstring).

    Args:
        apps: the apps shown, by name (unique).
    """

    def __init__(self, apps: Sequence[App]) -> None:
        self.apps = {app.name: app for app in apps}
        self.templates = _environment()

    # --- plumbing -----------------------------------------------------------------

    def app_of(self, request: Request) -> App:
        name = request.path_params["app"]
        if name not in self.apps:
            raise HTTPException(404, f"no app {name!r} in this dashboard")
        return self.apps[name]

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        page = self.templates.get_template(template).render(
            apps=sorted(self.apps), request=request, states=list(State), **context
        )
        return HTMLResponse(page, status_code, headers=SECURITY_HEADERS)

    def routes(self) -> list[Route | Mount]:
        pages = [
            ("/", self.overview, "overview"),
            ("/tasks", self.tasks, "tasks"),
            ("/tasks/{task_id:path}", self.task, "task"),
            ("/errors", self.errors, "errors"),
            ("/dead-letters", self.dead_letters, "dead-letters"),
            ("/schedules", self.schedules, "schedules"),
            ("/workers", self.workers, "workers"),
        ]
        return [
            Route("/", self.index),
            *(Route("/apps/{app}" + path, fn, name=name) for path, fn, name in pages),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    def asgi(self) -> Starlette:
        """The ASGI application (Starlette)."""
        return Starlette(
            routes=self.routes(),
            exception_handlers={HTTPException: self.http_error, AWSError: self.aws_error},
        )

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.render(
            request, "error.html", exc.status_code, title="Error", message=exc.detail
        )

    async def aws_error(self, request: Request, exc: Exception) -> Response:
        logger.warning("dashboard page %s: %s", request.url.path, exc)
        return self.render(request, "error.html", 502, title="AWS error", message=str(exc))

    # --- pages (sync: Starlette runs them in its thread pool; boto3 is blocking) ----

    def index(self, request: Request) -> Response:
        if len(self.apps) == 1:
            return RedirectResponse(f"/apps/{next(iter(self.apps))}/", 307)
        return self.render(request, "index.html", title="Apps")

    def overview(self, request: Request) -> Response:
        app = self.app_of(request)
        status = reads.overview(app)
        return self.render(
            request, "overview.html", app=app, title=f"{app.name}: overview", status=status
        )

    def tasks(self, request: Request) -> Response:
        app = self.app_of(request)
        q = request.query_params
        task_id = q.get("id", "").strip()
        if task_id:
            return RedirectResponse(request.url_for("task", app=app.name, task_id=task_id), 303)
        try:
            states = tuple(State(s) for s in q.getlist("state") if s) or listing.LISTED_STATES
            wanted = listing.Filter(
                states=tuple(s for s in states if s in listing.LISTED_STATES),
                task=q.get("task") or None,
                queue=q.get("queue") or None,
                exc_type=q.get("error") or None,
                since=reads.parse_time(q.get("since")),
                until=reads.parse_time(q.get("until")),
            )
        except ValueError as exc:
            raise HTTPException(400, f"bad filter: {exc}") from None
        context: dict[str, Any] = {"wanted": wanted, "query": q, "page": None, "note": None}
        if not app.settings.listing_index:
            context["note"] = reads.NO_INDEX
        else:
            try:
                page = reads.tasks(app, wanted, q.get("before") or None)
            except reads.IndexMissing as exc:
                context["note"] = f"{reads.NO_INDEX} (The table said: {exc})"
            else:
                context["page"] = page
                if page.next_before:
                    older = [(k, v) for k, v in q.multi_items() if k != "before"]
                    context["older"] = "?" + urlencode([*older, ("before", page.next_before)])
        return self.render(
            request,
            "tasks.html",
            app=app,
            title=f"{app.name}: tasks",
            windows=list(reads.WINDOWS),
            listed=listing.LISTED_STATES,
            **context,
        )

    def task(self, request: Request) -> Response:
        app = self.app_of(request)
        task_id = request.path_params["task_id"]
        view = reads.task(app, task_id)
        status_code = 200 if view.record or view.attempts else 404
        return self.render(
            request,
            "task.html",
            status_code,
            app=app,
            title=f"{app.name}: task {task_id}",
            task_id=task_id,
            view=view,
        )

    def errors(self, request: Request) -> Response:
        app = self.app_of(request)
        since_text = request.query_params.get("since", "24h")
        try:
            since = reads.parse_time(since_text)
        except ValueError as exc:
            raise HTTPException(400, f"bad filter: {exc}") from None
        found = note = None
        if not app.settings.listing_index:
            note = reads.NO_INDEX
        else:
            try:
                found = reads.errors(app, since)
            except reads.IndexMissing as exc:
                note = f"{reads.NO_INDEX} (The table said: {exc})"
        return self.render(
            request,
            "errors.html",
            app=app,
            title=f"{app.name}: errors",
            found=found,
            note=note,
            since=since_text,
            windows=list(reads.WINDOWS),
        )

    def dead_letters(self, request: Request) -> Response:
        app = self.app_of(request)
        return self.render(
            request,
            "dead_letters.html",
            app=app,
            title=f"{app.name}: dead letters",
            queues=reads.dead_letters(app),
        )

    def schedules(self, request: Request) -> Response:
        app = self.app_of(request)
        return self.render(
            request,
            "schedules.html",
            app=app,
            title=f"{app.name}: schedules",
            rows=reads.schedules(app),
        )

    def workers(self, request: Request) -> Response:
        app = self.app_of(request)
        return self.render(
            request,
            "workers.html",
            app=app,
            title=f"{app.name}: workers",
            workers=reads.workers(app),
            now=time.time(),
        )
