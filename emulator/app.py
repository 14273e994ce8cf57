"""`create_app()`: the Extend API emulator as a Starlette app (served by uvicorn, see emulator.server)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from extendq.emulator import admin, endpoints
from extendq.emulator.errors import ApiProblem, error_response
from extendq.emulator.gateway import ExtendGateway, RouteTable
from extendq.emulator.profiles import Profile, load_profile
from extendq.emulator.state import Emulator, Sleep

logger = logging.getLogger(__name__)

EXTEND_ROUTES = [
    Route("/files/upload", endpoints.upload_file, methods=["POST"]),
    Route("/files", endpoints.list_files, methods=["GET"]),
    Route("/files/{id}", endpoints.get_file, methods=["GET"]),
    Route("/files/{id}", endpoints.delete_file, methods=["DELETE"]),
    Route("/workflow_runs", endpoints.create_run, methods=["POST"]),
    Route("/workflow_runs", endpoints.list_runs, methods=["GET"]),
    Route("/workflow_runs/batch", endpoints.create_batch, methods=["POST"]),
    Route("/workflow_runs/{id}", endpoints.get_run, methods=["GET"]),
    Route("/workflow_runs/{id}", endpoints.update_run, methods=["POST"]),
    Route("/workflow_runs/{id}", endpoints.delete_run, methods=["DELETE"]),
    Route("/workflow_runs/{id}/cancel", endpoints.cancel_run, methods=["POST"]),
]


def create_app(
    profile: str | Profile = "default",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    api_keys: Iterable[str] = (),
    *,
    clock: Callable[[], float] = time.time,
    sleep: Sleep = asyncio.sleep,
    public_url: str | None = None,
) -> Starlette:
    """The emulator app.

    Args:
        profile: a built-in profile name (`default`, `fast`, `payg`), a YAML/JSON file path, or a Profile.
        webhook_url: where `workflow_run.*` events are posted; None sends none.
        webhook_secret: the `wss_...` signing secret; required with `webhook_url`.
        api_keys: accepted API keys; any non-empty key when empty.
        clock: unix time source (tests inject one).
        sleep: how injected waits (delays, slow answers) wait (tests may inject one that moves their clock).
        public_url: how clients reach the emulator (for signed URLs); learnt from `Host` when None.

    Raises:
        ProfileError: unknown or invalid profile.
        ValueError: `webhook_url` without `webhook_secret`.
    """
    if webhook_url and not webhook_secret:
        raise ValueError("webhook_secret (wss_...) is required with webhook_url")
    loaded = profile if isinstance(profile, Profile) else load_profile(profile)
    emulator = Emulator(
        loaded,
        clock=clock,
        sleep=sleep,
        webhook_url=webhook_url or None,
        webhook_secret=webhook_secret,
        api_keys=api_keys,
        public_url=public_url,
    )
    routes = RouteTable([(m, r.path, r.path_regex) for r in EXTEND_ROUTES for m in sorted(r.methods or ())])
    app = Starlette(
        routes=[*EXTEND_ROUTES, *admin.ROUTES],
        middleware=[Middleware(ExtendGateway, emulator=emulator, routes=routes)],
        exception_handlers={ApiProblem: _problem, HTTPException: _http_error, Exception: _crash},
        lifespan=_lifespan,
    )
    app.state.emulator = emulator
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """Run the webhook dispatcher for as long as the app is served."""
    emulator: Emulator = app.state.emulator
    task = asyncio.create_task(emulator.webhooks.run(), name="emulator-webhooks")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "No such route" if exc.status_code == 404 else exc.detail
    return error_response(exc.status_code, message, headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> Response:
    logger.error("Unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal error in the emulator")
