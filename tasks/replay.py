"""Replays: a finished job that did not end PROCESSED runs again as a new job (see `worker.history`)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.result import AsyncResult

from tasks.producer import enqueue
from worker.history import replay_request
from worker.secrets import seal
from worker.store import RedisJobStore


def replay(
    job_id: str,
    *,
    job_key: str | None = None,
    secrets: dict[str, Any] | None = None,
    app: Celery | None = None,
    store: RedisJobStore | None = None,
) -> AsyncResult[Any]:
    """Start job `job_id` again as a new job with the same request; its `AsyncResult` (`replay_of` links the two).

    The new job has no job key unless `job_key` gives one. `secrets` (sealed here) replace the per-run
    secrets, which are not kept once a job finished. Raises `InvalidJobRequest` when the job is unknown,
    still in flight, or ended PROCESSED.
    """
    from config.settings import get_settings

    settings = get_settings()
    if store is None:
        from tasks.base import store_for

        store = store_for(settings)
    request = replay_request(store, job_id, job_key=job_key)
    if secrets is not None:
        key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
        request = request.model_copy(update={"secrets": seal(secrets, key)})
    if app is None:
        from config.celery import app as default_app

        app = default_app
    return enqueue(app, request)
