"""The producer's side: validate a job request, queue it, and get its `AsyncResult` back at once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from worker.errors import InvalidJobRequest
from worker.models import JobRequest, PathFile
from worker.secrets import seal
from worker.store import RedisJobStore

RUN_WORKFLOW = "extendq.run_workflow"
CANCEL = "extendq.cancel"
_JOB_KEY_NAMESPACE = uuid.UUID("6f1c2b8e-4d0a-4c55-9a43-1b7a7f0e9d21")


def job_id_for(job_key: str) -> str:
    """The job id a job key maps to: the same key always gives the same job."""
    return str(uuid.uuid5(_JOB_KEY_NAMESPACE, job_key))


def build_request(
    *,
    workflow: str | dict[str, Any],
    file: dict[str, Any] | None = None,
    package: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    priority: int | None = None,
    job_key: str | None = None,
    deadline_s: float | None = None,
    secrets: dict[str, Any] | None = None,
    secrets_key: str | None = None,
    check_paths: bool = True,
    needs_review: str | None = None,
    tenant: str | None = None,
    tenants: Collection[str] | None = None,
    on_success: str | None = None,
    on_failure: str | None = None,
    callback_queue: str | None = None,
    replay_of: str | None = None,
) -> JobRequest:
    """A validated job request; raises `InvalidJobRequest` naming every problem before anything is queued.

    `tenants`: the tenant names this producer knows (`config.tenants.known_tenants`); a `tenant` outside them
    is refused here. None skips that check (the workers still refuse a tenant they do not know).
    """
    if tenant is not None and tenants is not None and tenant not in tenants:
        known = ", ".join(sorted(tenants)) or "none (set EXTENDQ_TENANT_NAMES)"
        raise InvalidJobRequest(f"unknown tenant {tenant!r}: the known tenants are {known}")
    data: dict[str, Any] = {
        "workflow": workflow,
        "file": file,
        "package": package,
        "metadata": metadata or {},
        "priority": priority,
        "job_key": job_key,
        "deadline_s": deadline_s,
        "needs_review": needs_review,
        "tenant": tenant,
        "on_success": on_success,
        "on_failure": on_failure,
        "callback_queue": callback_queue,
        "replay_of": replay_of,
    }
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


def _check_paths(request: JobRequest) -> None:
    files = [request.file] if request.file is not None else list(request.package.files if request.package else [])
    for item in files:
        if isinstance(item, PathFile) and not Path(item.path).expanduser().is_file():
            raise InvalidJobRequest(f"input path {item.path!r} does not exist or is not a file")
