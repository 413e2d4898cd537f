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
    /apps/<app>/audit            the actions taken (audit items)
    /apps/<app>/replay           a replay's dry run: ?task=&error=&queue=&since=&until=
    POST /apps/<app>/actions/<retry|revoke|replay|redrive>   (``--allow-actions``)

With ``allow_actions`` every page needs a user (:func:`.actions.user_of`; else 401
asking for HTTP basic) and every POST the user's CSRF token; without it every POST
is refused (403) and no page shows a button.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import listing
from ..aws_errors import from_botocore, is_botocore
from ..errors import AWSError
from ..result import State
from . import actions, reads

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)

T = TypeVar("T")

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


def _indexed(app: App, read: Callable[..., T], *args: Any) -> tuple[T | None, str | None]:
    """``(read(*args), None)``, or ``(None, why not)`` when the app has no listing index."""
    if not app.settings.listing_index:
        return None, reads.NO_INDEX
    try:
        return read(*args), None
    except reads.IndexMissing as exc:
        return None, f"{reads.NO_INDEX} (The table said: {exc})"


class Dashboard:
    """The pages of one or more apps (see the module docstring).

    Args:
        apps: the apps shown, by name (unique).
        allow_actions: serve the actions (else every POST is refused, 403).
        rate: messages per second an action moves at most.
    """

    def __init__(
        self,
        apps: Sequence[App],
        allow_actions: bool = False,
        rate: float = actions.DEFAULT_RATE,
    ) -> None:
        self.apps = {app.name: app for app in apps}
        self.templates = _environment()
        self.allow_actions = allow_actions
        self.rate = rate
        #: Keys the CSRF tokens; drawn at start, so a restart invalidates open forms.
        self.secret = os.urandom(32)

    # --- plumbing -----------------------------------------------------------------

    def app_of(self, request: Request) -> App:
        name = request.path_params["app"]
        if name not in self.apps:
            raise HTTPException(404, f"no app {name!r} in this dashboard")
        return self.apps[name]

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        user = getattr(request.state, "user", None)
        app = context.get("app")
        csrf = actions.csrf_token(self.secret, app.name, user) if app and user else None
        page = self.templates.get_template(template).render(
            apps=sorted(self.apps),
            request=request,
            states=list(State),
            actions=self.allow_actions and user is not None,
            user=user,
            csrf=csrf,
            **context,
        )
        return HTMLResponse(page, status_code, headers=SECURITY_HEADERS)

    def page(
        self,
        request: Request,
        app: App,
        template: str,
        label: str,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """Render one of ``app``'s pages, titled ``<app>: <label>``."""
        return self.render(
            request, template, status_code, app=app, title=f"{app.name}: {label}", **context
        )

    def routes(self) -> list[Route | Mount]:
        pages = [
            ("/", self.overview, "overview"),
            ("/tasks", self.tasks, "tasks"),
            ("/tasks/{task_id:path}", self.task, "task"),
            ("/errors", self.errors, "errors"),
            (
                "/dead-letters",
                self.simple("dead_letters.html", "dead letters", queues=reads.dead_letters),
                "dead-letters",
            ),
            (
                "/schedules",
                self.simple("schedules.html", "schedules", rows=reads.schedules),
                "schedules",
            ),
            (
                "/workers",
                self.simple(
                    "workers.html", "workers", workers=reads.workers, now=lambda _: time.time()
                ),
                "workers",
            ),
            ("/audit", self.simple("audit.html", "audit", rows=actions.audit_log), "audit"),
            ("/replay", self.replay_plan, "replay"),
        ]
        return [
            Route("/", self.index),
            *(Route("/apps/{app}" + path, fn, name=name) for path, fn, name in pages),
            Route("/apps/{app}/actions/{action}", self.act, methods=["POST"], name="act"),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    def asgi(self) -> Starlette:
        """The ASGI application (Starlette)."""
        middleware = [Middleware(BaseHTTPMiddleware, dispatch=self.authenticate)]
        return Starlette(
            routes=self.routes(),
            middleware=middleware if self.allow_actions else [],
            exception_handlers={
                HTTPException: self.http_error,
                AWSError: self.aws_error,
                Exception: self.aws_error,
            },
        )

    async def authenticate(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """With actions on: who is there, for the app of the path (any app for ``/``)."""
        if request.url.path.startswith("/static/"):
            return await call_next(request)
        parts = request.url.path.split("/")
        named = parts[2] if len(parts) > 2 and parts[1] == "apps" else None
        apps = [self.apps[named]] if named in self.apps else list(self.apps.values())
        headers = {k.lower(): v for k, v in request.headers.items()}
        user = next((u for u in (actions.user_of(a, headers) for a in apps) if u), None)
        if user is None:
            return Response(
                "who are you? (HTTP basic: the app's dashboard_users)",
                401,
                headers={**SECURITY_HEADERS, "WWW-Authenticate": 'Basic realm="sqsq"'},
            )
        request.state.user = user
        return await call_next(request)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.render(
            request, "error.html", exc.status_code, title="Error", message=exc.detail
        )

    async def aws_error(self, request: Request, exc: Exception) -> Response:
        """A failed AWS call: a 502 page naming it (botocore's errors translated); any
        other exception: a 500 page, logged with its traceback."""
        if is_botocore(exc):
            exc = from_botocore(exc)
        if not isinstance(exc, AWSError):
            logger.exception("dashboard page %s failed", request.url.path, exc_info=exc)
            return self.render(request, "error.html", 500, title="Error", message="internal error")
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
        return self.page(request, app, "overview.html", "overview", status=status)

    def tasks(self, request: Request) -> Response:
        app = self.app_of(request)
        q = request.query_params
        task_id = q.get("id", "").strip()
        if task_id:
            return RedirectResponse(request.url_for("task", app=app.name, task_id=task_id), 303)
        try:
            states = tuple(State(s) for s in q.getlist("state") if s) or listing.LISTED_STATES
        except ValueError as exc:
            raise HTTPException(400, f"bad filter: {exc}") from None
        wanted = self._filter(q, tuple(s for s in states if s in listing.LISTED_STATES))
        context: dict[str, Any] = {"wanted": wanted, "query": q}
        page, context["note"] = _indexed(app, reads.tasks, app, wanted, q.get("before") or None)
        context["page"] = page
        if page is not None and page.next_before:
            older = [(k, v) for k, v in q.multi_items() if k != "before"]
            context["older"] = "?" + urlencode([*older, ("before", page.next_before)])
        return self.page(
            request,
            app,
            "tasks.html",
            "tasks",
            windows=list(reads.WINDOWS),
            listed=listing.LISTED_STATES,
            **context,
        )

    def task(self, request: Request) -> Response:
        app = self.app_of(request)
        task_id = request.path_params["task_id"]
        view = reads.task(app, task_id)
        status_code = 200 if view.record or view.attempts else 404
        return self.page(
            request,
            app,
            "task.html",
            f"task {task_id}",
            status_code,
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
        found, note = _indexed(app, reads.errors, app, since)
        return self.page(
            request,
            app,
            "errors.html",
            "errors",
            found=found,
            note=note,
            since=since_text,
            windows=list(reads.WINDOWS),
        )

    def simple(
        self, template: str, label: str, **reading: Callable[[App], Any]
    ) -> Callable[[Request], Response]:
        """A page that renders what ``reading`` reads for its app (name -> reader)."""

        def handler(request: Request) -> Response:
            app = self.app_of(request)
            context = {name: read(app) for name, read in reading.items()}
            return self.page(request, app, template, label, **context)

        return handler

    # --- actions ----------------------------------------------------------------------

    def _filter(self, q: Any, states: tuple[State, ...] = (State.FAILURE,)) -> listing.Filter:
        """The listing filter of a query string or form (``task``, ``queue``, ``error``,
        ``since``, ``until``); a bad value is a 400."""
        try:
            return listing.Filter(
                states=states,
                task=q.get("task") or None,
                queue=q.get("queue") or None,
                exc_type=q.get("error") or None,
                since=reads.parse_time(q.get("since")),
                until=reads.parse_time(q.get("until")),
            )
        except ValueError as exc:
            raise HTTPException(400, f"bad filter: {exc}") from None

    def replay_plan(self, request: Request) -> Response:
        """The dry run of a replay: what it would move; the form that does it."""
        app = self.app_of(request)
        if not app.settings.listing_index:
            raise HTTPException(409, reads.NO_INDEX)
        wanted = self._filter(request.query_params)
        plan = actions.plan_replay(app, wanted)
        fields = {k: v for k, v in request.query_params.items() if k != "state"}
        return self.page(
            request,
            app,
            "replay.html",
            "replay failures",
            plan=plan,
            fields=fields,
            rate=self.rate,
        )

    async def act(self, request: Request) -> Response:
        app = self.app_of(request)
        user = getattr(request.state, "user", None)
        if not self.allow_actions or user is None:
            raise HTTPException(403, "actions are off: start the dashboard with --allow-actions")
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        if not actions.csrf_ok(self.secret, app.name, user, form.get("csrf")):
            raise HTTPException(403, "the form's CSRF token is missing or not yours: reload")
        action = request.path_params["action"]
        detail, count = await run_in_threadpool(self._carry_out, app, action, form)
        await run_in_threadpool(actions.audit, app, user, action, detail, count)
        return self.page(
            request,
            app,
            "done.html",
            f"{action}",
            action=action,
            detail=detail,
            count=count,
        )

    def _carry_out(self, app: App, action: str, form: dict[str, str]) -> tuple[dict[str, Any], int]:
        """Run one action; ``(what it was given, how many it affected)``."""
        if action == "retry":
            task_id = form.get("task_id") or ""
            return {"task_id": task_id}, actions.replay(app, [task_id], self.rate)
        if action == "revoke":
            task_id = form.get("task_id") or ""
            app.AsyncResult(task_id).revoke()
            return {"task_id": task_id}, 1
        if action == "replay":
            wanted = self._filter(form)
            plan = actions.plan_replay(app, wanted)
            detail: dict[str, Any] = {k: v for k, v in form.items() if k != "csrf" and v}
            detail["tasks"] = len(plan.task_ids)
            return detail, actions.replay(app, plan.task_ids, self.rate)
        if action == "redrive":
            queue = form.get("queue") or app.settings.default_queue
            if queue not in app.queues():
                raise HTTPException(400, f"no queue {queue!r} in {app.name}")
            task, error = form.get("task") or None, form.get("error") or None
            moved = actions.redrive_filter(app, queue, task, error, self.rate)
            return {"queue": queue, "task": task, "error": error}, moved
        raise HTTPException(404, f"no action {action!r}")
