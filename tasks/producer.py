"""The producer's side: validate a job request, queue it, and get its `AsyncResult` back at once.

`submit`, `cancel` and `seal_secrets` read the settings from the environment (`EXTENDQ_*`) the first time they
are called, never at import; pass `app=` to use a Celery app of your own settings.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

from celery import Celery
from celery.result import AsyncResult

from extendq.config.settings import Settings, get_settings
from extendq.config.tenants import known_tenants
from extendq.errors import InvalidJobRequest
from extendq.tasks.celery import get_app
from extendq.worker.models import JobRequest, PathFile
from extendq.worker.secrets import seal
from extendq.worker.store import RedisJobStore, open_store

RUN_WORKFLOW = "extendq.run_workflow"
CANCEL = "extendq.cancel"
_JOB_KEY_NAMESPACE = uuid.UUID("6f1c2b8e-4d0a-4c55-9a43-1b7a7f0e9d21")


class JobOptions(TypedDict, total=False):
    """What every job of a request may set; the keywords of `submit_many` besides its files."""

    priority: int | None
    deadline_s: float | None
    secrets: dict[str, Any] | None  # sealed with EXTENDQ_SECRETS_KEY before anything leaves the process
    needs_review: Literal["result", "watch"] | None  # "watch": follow a NEEDS_REVIEW run until it is reviewed
    tenant: str | None  # the Extend account, by name (EXTENDQ_TENANTS)
    on_success: str | None  # your Celery task, sent by name with the run once the job ended PROCESSED
    on_failure: str | None  # ... and this one with the error otherwise
    callback_queue: str | None


class _Workflow(TypedDict):
    workflow: str | dict[str, Any]  # a workflow id, or {"id": ..., "version": ...}


class JobSpec(_Workflow, JobOptions, total=False):
    """The keyword arguments of one job request: those of `submit`, `submit_async` and `extendq.run_workflow`."""

    file: dict[str, Any] | None  # one of {"url"}, {"id"}, {"text"} or {"path"} (uploaded by the worker)
    package: dict[str, Any] | None  # several files processed as one run, instead of `file`
    metadata: dict[str, Any] | None
    job_key: str | None  # the same key always gives the same job: a second submit returns the first


def job_id_for(job_key: str) -> str:
    """The job id a job key maps to: the same key always gives the same job."""
    return str(uuid.uuid5(_JOB_KEY_NAMESPACE, job_key))


def build_request(
    *,
    secrets_key: str | None = None,
    check_paths: bool = True,
    tenants: Collection[str] | None = None,
    replay_of: str | None = None,
    **spec: Unpack[JobSpec],
) -> JobRequest:
    """A validated job request; raises `InvalidJobRequest` naming every problem before anything is queued.

    `tenants`: the tenant names this producer knows (`config.tenants.known_tenants`); a `tenant` outside them
    is refused here. None skips that check (the workers still refuse a tenant they do not know).
    """
    tenant = spec.get("tenant")
    if tenant is not None and tenants is not None and tenant not in tenants:
        known = ", ".join(sorted(tenants)) or "none (set EXTENDQ_TENANT_NAMES)"
        raise InvalidJobRequest(f"unknown tenant {tenant!r}: the known tenants are {known}")
    data: dict[str, Any] = {**spec, "metadata": spec.get("metadata") or {}, "replay_of": replay_of}
    secrets = spec.get("secrets")
    if secrets is not None:
        data["secrets"] = seal(secrets, secrets_key)
    request = JobRequest.parse({key: value for key, value in data.items() if value is not None})
    if check_paths:
        _check_paths(request)
    return request


def enqueue(
    app: Celery, request: JobRequest, *, store: RedisJobStore | None = None, lease_s: float = 120.0
) -> AsyncResult[Any]:
    """Queue a validated request; the `AsyncResult` whose id is the job id.

    With a `store` (producers that share the workers' Redis), the job is recorded before its message is
    sent, due at `lease_s` as a safety net: a message lost with a killed worker cannot lose the job, the
    dispatcher drives it when the lease ends.
    """
    job_id = job_id_for(request.job_key) if request.job_key else str(uuid.uuid4())
    if store is not None:
        store.create(job_id, request, now=time.time(), lease_s=lease_s, secrets=request.secrets)
    return app.send_task(RUN_WORKFLOW, kwargs=request.wire(), task_id=job_id)


def submit(*, app: Celery | None = None, **spec: Unpack[JobSpec]) -> AsyncResult[Any]:
    """Validate a job request and queue it; its `AsyncResult` (the id is the job id) at once.

    `AsyncResult.get()` gives the terminal workflow run, or raises the job's error (`extendq.errors`).
    Raises `InvalidJobRequest` when the request is malformed; nothing is queued then.
    """
    settings = get_settings()
    built = build_request(secrets_key=secrets_key_of(settings), tenants=known_tenants(settings), **spec)
    return enqueue(app or get_app(), built, store=_producer_store(settings), lease_s=settings.claim_lease_s)


def cancel(job_id: str, *, app: Celery | None = None) -> AsyncResult[Any]:
    """Ask the workers to cancel a job (its Extend run, or the job itself if not submitted yet).

    The returned result's `get()` is True when the job was cancelled, False when it was unknown or finished.
    """
    return (app or get_app()).send_task(CANCEL, args=[job_id])


def seal_secrets(secrets: dict[str, Any]) -> str:
    """Seal per-run secrets for a producer that enqueues by name (`secrets` kwarg of `extendq.run_workflow`)."""
    return seal(secrets, secrets_key_of(get_settings()))


def secrets_key_of(settings: Settings) -> str | None:
    """The key per-run secrets are sealed with (`EXTENDQ_SECRETS_KEY`), if one is set."""
    return settings.secrets_key.get_secret_value() if settings.secrets_key else None


@lru_cache(maxsize=4)
def _producer_store(settings: Settings) -> RedisJobStore:
    # One connection pool per settings for the life of the producer process, not one per submit.
    return open_store(settings)


def _check_paths(request: JobRequest) -> None:
    files = [request.file] if request.file is not None else list(request.package.files if request.package else [])
    for item in files:
        if isinstance(item, PathFile) and not Path(item.path).expanduser().is_file():
            raise InvalidJobRequest(f"input path {item.path!r} does not exist or is not a file")
