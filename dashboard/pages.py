"""The dashboard's read-only pages: Overview (live), Jobs, Job and Review, and their JSON.

Every page is a bounded read of Redis (see `tasks.overview`, `worker.pool_series`, `worker.job_search`,
`tasks.job_view`, `worker.review.waiting`); nothing here writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from celery import Celery
from jinja2 import Environment
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from extendq.config.settings import Settings
from extendq.dashboard.auth import Auth
from extendq.dashboard.charts import Axes, line_with_limit, stacked_bars
from extendq.dashboard.live import LiveOverview
from extendq.errors import InvalidJobRequest
from extendq.tasks.job_view import job_view
from extendq.tasks.overview import gather, limiters_of
from extendq.worker.history import parse_age
from extendq.worker.job_search import (
    FINISHED_STATES,
    IN_FLIGHT_STATES,
    OUTCOMES,
    Cursor,
    JobFilter,
    View,
    search,
    with_view,
)
from extendq.worker.pool_series import PoolSeries
from extendq.worker.ratelimit import RateLimiter
from extendq.worker.review import waiting
from extendq.worker.store import RedisJobStore

FLASHES = {
    "cancel": "Cancel sent to the workers: the job ends CANCELLED once its run is cancelled on Extend.",
    "retry": "Retried: this is the new job.",
    "login": "Signed in: you can cancel and retry jobs.",
    "logout": "Signed out.",
}
RUN_LABELS = {
    "dashboardUrl": "On Extend",
    "createdAt": "Created",
    "startTime": "Started",
    "endTime": "Ended",
    "workflow": "Workflow name",
    "reviewedBy": "Reviewed by",
    "rejectionNote": "Rejection note",
}
_FILTER_FIELDS = ("view", "state", "outcome", "workflow", "tenant", "since", "until", "q")


@dataclass(kw_only=True)
class Dashboard:
    """What every page reads from: the pool's settings, its store and Celery app, the templates and the auth."""

    settings: Settings
    store: RedisJobStore
    celery: Celery
    templates: Environment
    auth: Auth
    live: LiveOverview | None = None
    # The pool's rate limiters by scope, built once: the overview reads them at every render.
    limiters: dict[str, RateLimiter] = field(init=False)

    def __post_init__(self) -> None:
        self.limiters = limiters_of(self.settings, self.store)

    # ---- Overview ----

    def overview_data(self) -> dict[str, Any]:
        report = gather(self.settings, self.celery, self.store, limiters=self.limiters)
        series = PoolSeries(store=self.store, limiters=self.limiters).read()
        return {
            "report": report,
            "series": series,
            "review_count": int(self.store.client.zcard(self.store.keys.review)),
        }

    def overview_fragment(self, root: str = "") -> str:
        return self.templates.get_template("_live.html").render(root=root, **self._overview_context())

    def overview(self, request: Request) -> Response:
        version = self.live.latest.version if self.live is not None and self.live.latest is not None else 0
        return self.page(request, "overview.html", "overview", version=version, **self._overview_context())

    def _overview_context(self) -> dict[str, Any]:
        """What the overview's templates show: the data and its charts."""
        data = self.overview_data()
        return {**data, **_charts(data["series"])}

    def overview_json(self, _: Request) -> Response:
        data = self.overview_data()
        return JSONResponse({**data["report"], "series": data["series"], "review": {"watching": data["review_count"]}})

    def stream(self, request: Request) -> Response:
        if self.live is None:
            return Response("live updates are off", status_code=404)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            self.live.listen(request.is_disconnected, root=root_of(request)),
            media_type="text/event-stream",
            headers=headers,
        )

    # ---- Jobs ----

    def jobs(self, request: Request) -> Response:
        params = request.query_params
        try:
            wanted = filter_from(params)
            cursor = Cursor.parse(params["cursor"]) if params.get("cursor") else None
        except InvalidJobRequest as exc:
            return self.message(request, "Bad filter", str(exc), status=400, back=f"{root_of(request)}/jobs")
        page = search(self.store, wanted, cursor=cursor)
        fields = {name: params.get(name, "") for name in _FILTER_FIELDS if params.get(name)}
        next_link = urlencode({**fields, "cursor": page.next.text()}) if page.next is not None else ""
        views = {view: urlencode(_view_fields(wanted, view, fields)) for view in ("in_flight", "finished")}
        return self.page(
            request,
            "jobs.html",
            "jobs",
            wanted=wanted,
            page=page,
            form={"since": params.get("since", ""), "until": params.get("until", "")},
            states=IN_FLIGHT_STATES if wanted.view == "in_flight" else FINISHED_STATES,
            outcomes=OUTCOMES,
            next_link=next_link,
            other_views=views,
            filter_fields={name: value for name, value in fields.items() if name != "view"},
            now=time.time(),
        )

    def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        view = job_view(self.store, self.celery, job_id)
        if view is None:
            return self.message(request, "Unknown job", f"No record of job {job_id} (or it expired).", status=404)
        if request.url.path.endswith(".json"):
            return JSONResponse(view)
        replayed = self.store.client.get(self.store.keys.replayed(job_id))
        return self.page(request, "job.html", "jobs", job=view, replayed_as=replayed, run_labels=RUN_LABELS)

    # ---- Review ----

    def review(self, request: Request) -> Response:
        total, rows = waiting(self.store)
        return self.page(request, "review.html", "review", total=total, rows=rows)

    # ---- Rendering ----

    def page(self, request: Request, template: str, name: str, *, status: int = 200, **context: Any) -> Response:
        identity = self.auth.identity(request)
        flash = FLASHES.get(request.query_params.get("done", ""), "")
        html = self.templates.get_template(template).render(
            root=root_of(request),
            current=name,
            auth=self.auth,
            identity=identity,
            csrf=self.auth.csrf_token(identity) if identity else "",
            flash=flash,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def message(
        self, request: Request, heading: str, message: str, *, status: int, back: str = "", error: bool = True
    ) -> Response:
        return self.page(
            request, "message.html", "", status=status, heading=heading, message=message, back=back, error=error
        )


def filter_from(params: Any) -> JobFilter:
    """The Jobs page's filter from its query (or a form); `InvalidJobRequest` names a bad value."""
    state = params.get("state", "").strip().upper()
    finished = params.get("view") == "finished" or params.get("outcome") or state in FINISHED_STATES
    view: View = "finished" if finished else "in_flight"
    return JobFilter(
        view=view,
        state=state,
        outcome=params.get("outcome", "").strip().upper(),
        workflow=params.get("workflow", "").strip(),
        tenant=params.get("tenant", "").strip(),  # an unknown tenant finds nothing: its index is empty
        since=_when(params.get("since", ""), "since"),
        until=_when(params.get("until", ""), "until"),
        text=params.get("q", "").strip(),
    )


def _when(value: str, name: str) -> float | None:
    """Unix seconds from `1h` (that long ago) or a UTC time (`2026-12-07T05:30`, `2026-12-07 05:30:00`)."""
    value = value.strip()
    if not value:
        return None
    try:
        return time.time() - parse_age(value)
    except InvalidJobRequest:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidJobRequest(
            f"{name} takes an age (30m, 2h, 1d) or a UTC time (2026-12-07T05:30), not {value!r}"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _view_fields(wanted: JobFilter, view: View, fields: dict[str, str]) -> dict[str, str]:
    other = with_view(wanted, view)
    kept = {name: value for name, value in fields.items() if name not in ("view", "state", "outcome")}
    extra = {"state": other.state} if other.state else {}
    return {"view": view, **kept, **extra, **({"outcome": other.outcome} if other.outcome else {})}


def _charts(series: dict[str, Any]) -> dict[str, Any]:
    per_minute = series["finished_per_minute"]
    finished = stacked_bars(
        Axes("Jobs finished per minute", "minute (UTC)", "jobs finished"),
        per_minute["minute_starts"],
        per_minute["outcomes"],
    )
    requests: dict[str, Markup | None] = {}
    for scope, counted in series["requests"].items():
        if counted["limit_per_s"] is None:
            requests[scope] = None  # no limit: nothing paces the requests, so nothing counts them
            continue
        requests[scope] = line_with_limit(
            Axes(f"Extend requests per second ({scope})", "time (UTC)", "requests / s"),
            counted["seconds"],
            counted["granted"],
            counted["limit_per_s"],
        )
    return {"finished_chart": finished, "request_charts": requests}


def root_of(request: Request) -> str:
    """The path the dashboard is mounted at ('' at the root): every link and redirect starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")
