"""The webhook receiver: `POST /webhooks/extend`, an ASGI app to serve alone or mount into your own.

An event is answered 200 only once it is durable, and only then is its id remembered in Redis, so that
re-deliveries are answered `duplicate`. A terminal event that carries its run is applied here at once: the job's
result is published by the same locked, atomic finishing step a worker's check takes (`EventApplier.apply_at_once`),
the shortest way from Extend's delivery to a readable result. Every other event (progress, a signed-URL payload,
to be fetched off the request path; a job unknown here or held by a step) is handed to the workers as an
`extendq.webhook_event` task. If applying or handing on fails (or the receiver dies first), nothing is
remembered: 503 (or no answer) makes Extend deliver it again, and that delivery is taken. Refused deliveries
(401, 400, 413) change nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extendq.config.metrics import multiprocess_dir
from extendq.config.settings import Settings, get_settings
from extendq.config.tenants import load_tenants
from extendq.tasks.base import receiver_runner
from extendq.tasks.celery import create_app as create_celery
from extendq.webhooks.accounts import SigningSecrets
from extendq.webhooks.verify import Refusal, verified_event
from extendq.worker import metrics
from extendq.worker.events import EventApplier, inline_terminal_run, metadata_job, run_id_of
from extendq.worker.store import RedisJobStore, open_store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("extendq.webhooks")
EVENT_TASK = "extendq.webhook_event"
EVENTS_QUEUE = "extendq.checks"


class Receiver:
    """Verifies and de-duplicates each delivery, then applies it (a terminal event that carries its run) or hands it
    on to the workers."""

    def __init__(
        self, *, settings: Settings, celery_app: Celery, store: RedisJobStore, applier: EventApplier | None = None
    ) -> None:
        self._settings = settings
        self._celery = celery_app
        self._store = store
        self._applier = applier
        self._lock_ttl_s = applier.runner.lock_ttl_s if applier is not None else 0.0
        self._secrets = SigningSecrets.from_settings(settings)

    async def receive(self, request: Request) -> JSONResponse:
        """Answer one delivery."""
        try:
            body = await self._read_body(request)
            secrets = await run_in_threadpool(self._secrets.for_delivery, body, self._store)
            event = verified_event(body, request.headers, secrets=secrets, max_age_s=self._settings.webhook_max_age_s)
            status = await run_in_threadpool(self._hand_on, event)
        except Refusal as refusal:
            log.warning("webhook refused (%d): %s", refusal.status, refusal.reason)
            outcome = "unavailable" if refusal.status == 503 else f"refused_{refusal.status}"
            metrics.webhook_delivery("", outcome)
            return JSONResponse({"error": refusal.reason}, status_code=refusal.status)
        metrics.webhook_delivery(str(event.get("eventType", "")), status)
        return JSONResponse({"status": status})

    async def _read_body(self, request: Request) -> bytes:
        limit = self._settings.webhook_max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refusal(413, f"body over {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise Refusal(413, f"body over {limit} bytes")
        return bytes(body)

    def _hand_on(self, event: dict[str, Any]) -> str:
        event_id = str(event["eventId"])
        run = inline_terminal_run(event) if self._applier is not None else None
        job_id = metadata_job(run) if run is not None else None
        if run is not None and job_id is not None:
            if (answer := self._apply_here(event, run, job_id)) is not None:
                return answer
        elif self._store.event_seen(event_id):
            self._store.count("webhook_redelivered")
            return "duplicate"
        try:
            self._celery.send_task(EVENT_TASK, args=[event], queue=EVENTS_QUEUE)
        except Exception as exc:  # the broker is down: let Extend deliver it again later
            raise Refusal(503, f"cannot queue the event: {type(exc).__name__}") from exc
        # Remembered only now that it is queued. Two deliveries of one event racing each other may both be
        # queued: the worker applies a terminal event once (the job finishes once), so that costs one no-op.
        self._store.note_event_seen(event_id, ttl_s=self._settings.webhook_dedupe_ttl_s)
        return "accepted"

    def _apply_here(self, event: dict[str, Any], run: dict[str, Any], job_id: str) -> str | None:
        """Answer a terminal event once its job's result is durable (published here, or before): `accepted`, or
        `duplicate` for a re-delivery; None (nothing changed) hands the event to the workers: its job is unknown
        here, a step holds it, another job owns the run, or Redis failed."""
        assert self._applier is not None
        event_id = str(event["eventId"])
        try:
            with self._store.event_look(event_id, run_id_of(run), job_id, ttl_s=self._lock_ttl_s) as look:
                if look.seen:
                    self._store.count("webhook_redelivered")
                    return "duplicate"
                if look.record is None or look.owner not in (None, job_id):
                    return None
                if self._applier.apply_at_once(str(event["eventType"]), run, look.record) is None:
                    return None
            self._store.note_event_seen(event_id, ttl_s=self._settings.webhook_dedupe_ttl_s)
        except redis.RedisError as exc:  # the workers' path answers 503 when the broker is down too
            log.warning("webhook %s not applied here: %s", event_id, exc)
            return None
        return "accepted"


async def _health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _metrics_route(registry: CollectorRegistry) -> Route:
    async def serve(_: Request) -> Response:
        # The pool's gauges are read from Redis: off the event loop.
        body, content_type = await run_in_threadpool(metrics.exposition, registry)
        return Response(body, media_type=content_type)

    return Route("/metrics", serve, methods=["GET"])


def create_app(
    settings: Settings | None = None, *, celery_app: Celery | None = None, store: RedisJobStore | None = None
) -> Starlette:
    """The receiver app; mount it (`app.mount("/", create_app())`) or serve it with uvicorn."""
    settings = settings or get_settings()
    store = store or open_store(settings)
    celery_app = celery_app or create_celery(settings)
    applier = EventApplier(runner=receiver_runner(settings, celery_app, store)) if settings.webhook_apply else None
    receiver = Receiver(settings=settings, celery_app=celery_app, store=store, applier=applier)
    routes = [Route("/webhooks/extend", receiver.receive, methods=["POST"]), Route("/health", _health)]
    if settings.webhook_metrics:
        if (samples := multiprocess_dir()) is not None:
            metrics.configure(multiprocess_dir=samples, tenants=load_tenants(settings))
        routes.append(_metrics_route(metrics.scrape_registry(metrics.pool_collector(settings, store))))
    return Starlette(routes=routes)
