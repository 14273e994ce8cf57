"""Bulk submission: one batch task per 1,000 files, one job id (and result) per file."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Unpack

from celery import Celery, shared_task
from celery.result import AsyncResult

from extendq.config.settings import get_settings
from extendq.config.tenants import known_tenants
from extendq.errors import InvalidJobRequest, RetryableError
from extendq.tasks.base import get_runner
from extendq.tasks.celery import get_app
from extendq.tasks.producer import JobOptions, build_request, job_id_for, secrets_key_of
from extendq.worker.batch import MAX_BATCH, BatchRunner, members_from
from extendq.worker.models import JobRequest

RUN_BATCH = "extendq.run_batch"
ADOPT_RUNS = "extendq.adopt_runs"


@shared_task(name=RUN_BATCH, bind=True, max_retries=20)
def run_batch(self: Any, /, jobs: list[dict[str, Any]]) -> None:
    """Record the jobs and post them to Extend as one batch (jobs: `[{"job_id", "request"}]`, one workflow)."""
    runner = get_runner()
    try:
        members = members_from(jobs, tenants=runner.tenants.names if runner.tenants is not None else ())
    except InvalidJobRequest as exc:
        for job in jobs:
            runner.publisher.failure(str(job.get("job_id")), exc)
        return
    try:
        BatchRunner(runner=runner).start(self.request.id, members)
    except RetryableError as exc:
        # Short waits only (a rate-limit token, a 5xx): the jobs are recorded, nothing is lost meanwhile.
        raise self.retry(countdown=min(exc.retry_after_s or 2.0**self.request.retries, 30.0)) from exc


@shared_task(name=ADOPT_RUNS, bind=True, max_retries=50)
def adopt_runs(self: Any, /, run_ids: list[str], tenant: str | None = None) -> None:
    """Fetch ended runs of our batches and finish the jobs they belong to (the sweeper of the runs' account,
    `tenant` or the default one, sends this)."""
    batch = BatchRunner(runner=get_runner())
    for index, run_id in enumerate(run_ids):
        try:
            batch.adopt(run_id, tenant)
        except RetryableError as exc:
            raise self.retry(args=[run_ids[index:], tenant], countdown=exc.retry_after_s or 1.0) from exc


def send_adoptions(run_ids: Sequence[str], tenant: str | None = None) -> None:
    """Hand ended batch runs of one account to `adopt_runs` tasks, a few per task."""
    for start in range(0, len(run_ids), 20):
        adopt_runs.apply_async(args=(list(run_ids[start : start + 20]), tenant))


def submit_many(
    *,
    workflow: str | dict[str, Any],
    files: Sequence[dict[str, Any]],
    app: Celery | None = None,
    metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    secrets_key: str | None = None,
    **options: Unpack[JobOptions],
) -> list[AsyncResult[Any]]:
    """Queue one job per file for one workflow, sent to Extend in batches of up to 1,000; a result per file.

    `metadata` is one dict for every file or a list with one per file; other keyword arguments (`priority`,
    `deadline_s`, `tenant`, ...) apply to every job: a batch goes to one account's batch endpoint. Every request
    is validated before anything is queued (an unknown tenant raises `InvalidJobRequest`). Secrets are sealed
    with `secrets_key`, by default EXTENDQ_SECRETS_KEY.
    """
    settings = get_settings()
    if secrets_key is None and options.get("secrets") is not None:
        secrets_key = secrets_key_of(settings)
    per_file = list(metadata) if isinstance(metadata, Sequence) else [metadata or {}] * len(files)
    if len(per_file) != len(files):
        raise InvalidJobRequest(f"{len(files)} files but {len(per_file)} metadata entries")
    requests = [
        build_request(
            workflow=workflow,
            file=file,
            metadata=meta,
            secrets_key=secrets_key,
            tenants=known_tenants(settings),
            **options,
        )
        for file, meta in zip(files, per_file, strict=True)
    ]
    return enqueue_many(app or get_app(), requests)


def enqueue_many(app: Celery, requests: Sequence[JobRequest]) -> list[AsyncResult[Any]]:
    """Queue validated single-file requests for one workflow as batch tasks of up to 1,000; a result each."""
    if any(request.package is not None for request in requests):
        raise InvalidJobRequest("batches take single files; send packages one by one")
    if len({request.workflow for request in requests}) > 1:
        raise InvalidJobRequest("a batch is for one workflow (and version)")
    if len({request.tenant for request in requests}) > 1:
        raise InvalidJobRequest("a batch is for one account: give every file the same tenant")
    ids = [job_id_for(r.job_key) if r.job_key else str(uuid.uuid4()) for r in requests]
    jobs = [{"job_id": job_id, "request": request.wire()} for job_id, request in zip(ids, requests, strict=True)]
    for start in range(0, len(jobs), MAX_BATCH):
        app.send_task(RUN_BATCH, kwargs={"jobs": jobs[start : start + MAX_BATCH]})
    return [app.AsyncResult(job_id) for job_id in ids]
