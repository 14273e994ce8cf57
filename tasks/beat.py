"""The periodic jobs beat sends (schedule: config/beat.py). Thin: the work is in `worker.reconcile`,
`worker.review`, `worker.ingest` and `worker.usage`; each run holds a Redis lock so two never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery import shared_task, states

from extendq.config.beat import FOLLOW_REVIEWS, INGEST, RECONCILE, ROLL_UP_USAGE
from extendq.config.settings import get_settings
from extendq.tasks.base import get_runner
from extendq.tasks.celery import get_app
from extendq.tasks.producer import enqueue
from extendq.tasks.runs import advance
from extendq.worker.ingest import Finished, Ingester
from extendq.worker.models import JobRequest
from extendq.worker.periodic import exclusive
from extendq.worker.reconcile import Reconciler
from extendq.worker.review import ReviewFollower
from extendq.worker.usage import UsageLedger


def _lock_ttl_s() -> float:
    # Longer than the task's hard time limit, so a run that was killed never blocks the next for long.
    return get_settings().request_timeout_s * 4 + 60


@shared_task(name=RECONCILE)
def reconcile() -> dict[str, int]:
    """Drive jobs nobody is driving; expire or remove what finished jobs left behind."""
    settings, store = get_settings(), get_runner().store
    with exclusive(store.client, store.keys.periodic("reconcile"), ttl_s=_lock_ttl_s()) as held:
        if not held:
            return {}
        reconciler = Reconciler(
            store=store,
            drive=_drive,
            result_ttl_s=settings.result_ttl_s,
            grace_s=settings.reconcile_grace_s,
            batch=settings.reconcile_batch,
        )
        return reconciler.run()


@shared_task(name=FOLLOW_REVIEWS)
def follow_reviews() -> dict[str, int]:
    """Look again at watched NEEDS_REVIEW runs that are due; publish the ones reviewed since."""
    settings, runner = get_settings(), get_runner()
    with exclusive(runner.store.client, runner.store.keys.periodic("review"), ttl_s=_lock_ttl_s()) as held:
        if not held:
            return {}
        follower = ReviewFollower(
            api=runner.api,
            store=runner.store,
            limiter=runner.limiter,
            tenants=runner.tenants,
            interval_s=settings.review_interval_s,
            outcome_ttl_s=settings.result_ttl_s,
        )
        return follower.follow_due()


@shared_task(name=INGEST)
def ingest() -> dict[str, int]:
    """Scan the ingest folder: submit settled files, file away those whose job ended."""
    settings, store = get_settings(), get_runner().store
    if not settings.ingest_dir or not settings.ingest_workflow:
        return {}
    with exclusive(store.client, store.keys.periodic("ingest"), ttl_s=_lock_ttl_s()) as held:
        if not held:
            return {}
        ingester = Ingester(
            folder=Path(settings.ingest_dir),
            workflow=settings.ingest_workflow,
            client=store.client,
            keys=store.keys,
            submit=_submit,
            outcome=_outcome,
            settle_s=settings.ingest_settle_s,
            batch=settings.ingest_batch,
        )
        return ingester.scan()


@shared_task(name=ROLL_UP_USAGE)
def roll_up_usage() -> int:
    """Add the usage of runs finished since the last roll-up to the per-day totals."""
    settings, store = get_settings(), get_runner().store
    with exclusive(store.client, store.keys.periodic("usage"), ttl_s=_lock_ttl_s()) as held:
        if not held:
            return 0
        return UsageLedger(client=store.client, keys=store.keys, retention_days=settings.usage_retention_days).roll_up()


def _drive(job_ids: Sequence[str]) -> None:
    """Send each job an `advance` without a lease: it takes its next step whatever its schedule says."""
    with get_app().producer_or_acquire() as producer:
        for job_id in job_ids:
            advance.apply_async(args=(job_id, None), producer=producer)


def _submit(request: JobRequest) -> str:
    return str(enqueue(get_app(), request).id)


def _outcome(job_id: str) -> Finished | None:
    """How the job ended, from its result in the backend; None while it is in flight."""
    result = get_app().AsyncResult(job_id)
    if result.state not in states.READY_STATES:
        return None
    value: Any = result.result
    if result.state == states.SUCCESS and isinstance(value, dict):
        return Finished(status=str(value.get("status")), run=value)
    error = {"error": getattr(value, "kind", type(value).__name__), "message": str(value)}
    return Finished(status="FAILURE", error={**error, "run_id": getattr(value, "run_id", None)})
