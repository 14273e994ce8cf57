"""What Celery runs, and the producer helpers: `submit`, `cancel`, `result`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.result import AsyncResult

from tasks.aio import result_async, submit_async
from tasks.producer import CANCEL, RUN_WORKFLOW, build_request, enqueue, job_id_for
from tasks.replay import replay
from tasks.results import ExtractionMismatch, ResultMismatch, extraction, typed_run
from worker.callbacks import callback_id

__all__ = [
    "CANCEL",
    "RUN_WORKFLOW",
    "ExtractionMismatch",
    "ResultMismatch",
    "callback_id",
    "cancel",
    "extraction",
    "job_id_for",
    "replay",
    "result_async",
    "seal_secrets",
    "submit",
    "submit_async",
    "submit_many",
    "typed_run",
]


def _default_app() -> Celery:
    from config.celery import app

    return app


def submit(*, app: Celery | None = None, **request: Any) -> AsyncResult[Any]:
    """Validate a job request and queue it; `AsyncResult(job_id)` at once.

    Keyword arguments are those of `extendq.run_workflow`: `workflow`, `file` or `package`, and optionally
    `metadata`, `priority`, `job_key`, `deadline_s`, `secrets` (a dict, sealed here with EXTENDQ_SECRETS_KEY),
    `needs_review` (`"watch"`: follow a NEEDS_REVIEW run until reviewed; see the README's "Scheduled work"),
    `tenant` (the Extend account, by name), `on_success` / `on_failure` / `callback_queue` (your own Celery
    tasks, sent by name once the job finished; see the README's "Callbacks").
    Raises `worker.errors.InvalidJobRequest` when the request is malformed; nothing is queued then.
    """
    from config.settings import get_settings
    from config.tenants import known_tenants
    from worker.store import open_store

    settings = get_settings()
    key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    built = build_request(secrets_key=key, tenants=known_tenants(settings), **request)
    return enqueue(app or _default_app(), built, store=open_store(settings), lease_s=settings.claim_lease_s)


def submit_many(*, app: Celery | None = None, **request: Any) -> list[AsyncResult[Any]]:
    """Queue one job per file of `files` for one workflow, sent in batches of up to 1,000 (see `tasks.bulk`)."""
    from config.settings import get_settings
    from tasks.bulk import submit_many as _submit_many

    settings = get_settings()
    key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    return _submit_many(app=app, secrets_key=key, **request)


def cancel(job_id: str, *, app: Celery | None = None) -> AsyncResult[Any]:
    """Ask the workers to cancel a job (its Extend run, or the job itself if not submitted yet)."""
    return (app or _default_app()).send_task(CANCEL, args=[job_id])


def seal_secrets(secrets: dict[str, Any]) -> str:
    """Seal per-run secrets for a producer that enqueues by name (`secrets` kwarg of `extendq.run_workflow`)."""
    from config.settings import get_settings
    from worker.secrets import seal

    key = get_settings().secrets_key
    return seal(secrets, key.get_secret_value() if key else None)
