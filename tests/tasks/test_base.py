"""`BackendPublisher`, writing job results to a Celery result backend that is not the job store's Redis, and the
job runner wired from settings."""

from __future__ import annotations

import redis

from extendq.config.settings import Settings
from extendq.tasks.base import BackendPublisher, build_runner
from extendq.tasks.celery import create_app
from extendq.worker.models import JobState


def test_a_late_progress_write_never_replaces_a_terminal_result(redis_client: redis.Redis, redis_url: str) -> None:
    # Given a result backend of its own (here the test database) holding a job's terminal run
    app = create_app(Settings.from_env({"EXTENDQ_REDIS_URL": redis_url}))
    publisher = BackendPublisher(app.backend)
    publisher.success("job-1", {"id": "workflow_run_1", "status": "PROCESSED"})
    # When a step that outlived its lock writes its progress after the job finished
    publisher.progress("job-1", JobState.RUNNING, {"run_status": "PROCESSING"})
    # Then the terminal result stands; a job still in flight gets its progress
    assert (app.AsyncResult("job-1").state, app.AsyncResult("job-1").result["status"]) == ("SUCCESS", "PROCESSED")
    publisher.progress("job-2", JobState.RUNNING, {"run_status": "PROCESSING"})
    assert app.AsyncResult("job-2").state == "RUNNING"


def test_the_job_lock_lasts_three_request_timeouts_unless_set(redis_url: str) -> None:
    base = {"EXTENDQ_REDIS_URL": redis_url, "EXTEND_API_KEY": "k", "EXTENDQ_REQUEST_TIMEOUT_S": "5"}
    for env, lock_s in ((base, 15.0), ({**base, "EXTENDQ_JOB_LOCK_S": "2"}, 2.0)):
        settings = Settings.from_env(env)
        assert build_runner(settings, create_app(settings)).lock_ttl_s == lock_s
