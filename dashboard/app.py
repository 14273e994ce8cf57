"""The dashboard's ASGI app: the pages, their JSON, the live overview's event stream and the actions.

Serve it alone (`extendq dashboard`) or mount it into your own ASGI app, e.g. with Starlette's
`Mount("/extendq", app=create_app())` or FastAPI's `app.mount("/extendq", create_app())`: links follow the
mount path, and the live overview starts with its first listener, so no lifespan hook is needed.

Routes: `GET /` (overview), `/jobs` (filters, paginated), `/jobs/{id}` (and `.json`), `/review`, `/api/overview`,
`/api/stream` (server-sent events), `/health`, `/static/*`; `GET|POST /login`, `POST /logout`,
`POST /jobs/{id}/cancel`, `/jobs/{id}/retry`, `/jobs/retry-failed`. Every response carries `Server-Timing:
app;dur=<ms>`, the time the server spent on it (the bench reads it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from extendq.config.settings import Settings, get_settings
from extendq.dashboard import forms
from extendq.dashboard.actions import Actions
from extendq.dashboard.auth import Auth
from extendq.dashboard.live import LiveOverview
from extendq.dashboard.pages import Dashboard
from extendq.tasks.base import store_for
from extendq.tasks.celery import create_app as create_celery

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def templates() -> Environment:
    """The page templates, every value HTML-escaped."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["age"] = _age
    env.filters["stamp"] = lambda at: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(at)))
    return env


def create_app(settings: Settings | None = None, *, live: bool = True) -> Starlette:
    """The dashboard for the pool `settings` (from the environment when omitted) name."""
    settings = settings or get_settings()
    store = store_for(settings)
    dashboard = Dashboard(
        settings=settings,
        store=store,
        celery=create_celery(settings),
        templates=templates(),
        auth=Auth.from_settings(settings),
    )
    if live:
        dashboard.live = LiveOverview(client=store.client, stream=store.keys.events, render=dashboard.overview_fragment)
    actions = Actions(store=store, app=dashboard.celery, lease_s=settings.claim_lease_s)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            dashboard.celery.close()

    app = Starlette(routes=_routes(dashboard, actions), lifespan=lifespan)
    app.add_middleware(ServerTiming)
    app.state.dashboard = dashboard
    return app


def _routes(dashboard: Dashboard, actions: Actions) -> list[Any]:
    def sync(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            return await anyio.to_thread.run_sync(handler, request)

        return run

    return [
        Route("/", sync(dashboard.overview), methods=["GET"]),
        Route("/api/overview", sync(dashboard.overview_json), methods=["GET"]),
        Route("/api/stream", dashboard.stream, methods=["GET"]),
        Route("/jobs", sync(dashboard.jobs), methods=["GET"]),
        Route("/jobs/retry-failed", forms.retry_failed(dashboard, actions), methods=["POST"]),
        Route("/jobs/{job_id}.json", sync(dashboard.job), methods=["GET"]),
        Route("/jobs/{job_id}", sync(dashboard.job), methods=["GET"]),
        Route("/jobs/{job_id}/cancel", forms.cancel(dashboard, actions), methods=["POST"]),
        Route("/jobs/{job_id}/retry", forms.retry(dashboard, actions), methods=["POST"]),
        Route("/review", sync(dashboard.review), methods=["GET"]),
        Route("/login", forms.login_form(dashboard), methods=["GET"]),
        Route("/login", forms.login(dashboard), methods=["POST"]),
        Route("/logout", forms.logout(dashboard), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


async def health(_: Request) -> Response:
    return PlainTextResponse("ok")


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>`: from the request's arrival to its response's start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - started) * 1000
                message.setdefault("headers", []).append((b"server-timing", f"app;dur={elapsed:.1f}".encode()))
            await send(message)

        await self.app(scope, receive, timed)


def _age(seconds: Any) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"
