"""The dashboard's ASGI app: `GET /` (the overview page), `GET /api/overview` (its data as JSON), `GET /health`.

Read-only: every page is built from `tasks.overview.gather`, the same read `extendq info` prints, and nothing is
written to Redis. Serve it alone (`extendq dashboard`) or mount it into your own ASGI app.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

from extendq.config.settings import Settings, get_settings
from extendq.tasks.base import store_for
from extendq.tasks.celery import create_app as create_celery
from extendq.tasks.overview import gather

TEMPLATES = Path(__file__).parent / "templates"


def templates() -> Environment:
    """The page templates, every value HTML-escaped."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["age"] = _age
    env.filters["stamp"] = lambda at: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
    return env


def create_app(settings: Settings | None = None) -> Starlette:
    """The dashboard for the pool `settings` (from the environment when omitted) name."""
    settings = settings or get_settings()
    celery_app = create_celery(settings)
    store = store_for(settings)
    page = templates().get_template("overview.html")

    def overview_json(_: Request) -> JSONResponse:
        return JSONResponse(gather(settings, celery_app, store))

    def overview_page(_: Request) -> HTMLResponse:
        return HTMLResponse(page.render(report=gather(settings, celery_app, store)))

    def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            celery_app.close()

    routes = [
        Route("/", overview_page, methods=["GET"]),
        Route("/api/overview", overview_json, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _age(seconds: Any) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
