"""Replays: a finished job that did not end PROCESSED runs again as a new job (see `worker.history`)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.result import AsyncResult

from extendq.config.settings import get_settings
from extendq.tasks.celery import get_app
from extendq.tasks.producer import enqueue, secrets_key_of
from extendq.worker.history import replay_request
from extendq.worker.secrets import seal
from extendq.worker.store import RedisJobStore, open_store


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
    settings = get_settings()
    store = store or open_store(settings)
    request = replay_request(store, job_id, job_key=job_key)
    if secrets is not None:
        request = request.model_copy(update={"secrets": seal(secrets, secrets_key_of(settings))})
    # Recorded before its message is sent, as `submit` does: the new job is known from the start.
    return enqueue(app or get_app(), request, store=store, lease_s=settings.claim_lease_s)
