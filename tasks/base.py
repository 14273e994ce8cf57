"""What every task shares: the job runner built once per process (after fork) and how results are published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery, states
from celery.backends.base import Backend

from config.settings import Settings, get_settings
from worker.errors import ConfigError, WorkerError
from worker.extend import ApiConfig, build_api
from worker.jobs import JobRunner
from worker.models import JobState
from worker.schedule import CheckSchedule, RetryPolicy
from worker.store import open_store

_runner: JobRunner | None = None


class BackendPublisher:
    """Publishes job outcomes to Celery's result backend under the job id, so `AsyncResult(job_id)` reads them."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def progress(self, job_id: str, state: JobState, info: dict[str, Any]) -> None:
        self._backend.store_result(job_id, info, state.value)

    def success(self, job_id: str, run: dict[str, Any]) -> None:
        self._backend.store_result(job_id, run, states.SUCCESS)

    def failure(self, job_id: str, error: WorkerError) -> None:
        self._backend.store_result(job_id, error, states.FAILURE)

    def copy(self, source_id: str, target_id: str) -> bool:
        meta = self._backend.get_task_meta(source_id)
        if meta.get("status") not in states.READY_STATES:
            return False
        self._backend.store_result(target_id, meta.get("result"), meta["status"])
        return True


store_for = open_store


def build_runner(settings: Settings, app: Celery) -> JobRunner:
    """Everything a job needs, wired from settings."""
    if settings.api_key is None:
        raise ConfigError("no Extend API key: set EXTEND_API_KEY (or EXTENDQ_API_KEY)")
    config = ApiConfig(
        base_url=settings.extend_base_url,
        api_key=settings.api_key.get_secret_value(),
        api_version=settings.api_version,
        timeout_s=settings.request_timeout_s,
        workspace_id=settings.workspace_id,
    )
    return JobRunner(
        api=build_api(config),
        store=store_for(settings),
        publisher=BackendPublisher(app.backend),
        checks=check_schedule(settings),
        retry=RetryPolicy(
            budget=settings.retry_budget, backoff_s=settings.retry_backoff_s, backoff_max_s=settings.retry_backoff_max_s
        ),
        secrets_key=settings.secrets_key.get_secret_value() if settings.secrets_key else None,
        files_root=Path(settings.files_root) if settings.files_root else None,
        default_deadline_s=settings.default_deadline_s,
        lease_s=settings.claim_lease_s,
        lock_ttl_s=settings.request_timeout_s * 3,
    )


def check_schedule(settings: Settings) -> CheckSchedule:
    """The check cadence from settings; with webhooks on, checks only catch missed deliveries."""
    if settings.webhooks_enabled:
        return CheckSchedule(
            fast_interval_s=settings.webhook_check_interval_s,
            fast_duration_s=0,
            backoff=settings.poll_backoff,
            max_interval_s=settings.webhook_check_max_interval_s,
            jitter=settings.poll_jitter,
        )
    return CheckSchedule(
        fast_interval_s=settings.fast_poll_interval_s,
        fast_duration_s=settings.fast_poll_duration_s,
        backoff=settings.poll_backoff,
        max_interval_s=settings.poll_max_interval_s,
        jitter=settings.poll_jitter,
    )


def get_runner() -> JobRunner:
    """This process's runner, built on first use (after Celery's prefork fork)."""
    global _runner
    if _runner is None:
        from config.celery import app

        _runner = build_runner(get_settings(), app)
    return _runner


def set_runner(runner: JobRunner | None) -> None:
    """Replace this process's runner (tests)."""
    global _runner
    _runner = runner
