"""A producer's own Celery app, for end-to-end tests of callbacks: each task call is recorded in Redis.

Started as `celery -A tests.support.callback_app worker -Q fit-callbacks` with `EXTENDQ_REDIS_URL` set.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery

QUEUE = "fit-callbacks"
CALLS = "fit:callbacks"

app = Celery("producer", broker=os.environ.get("EXTENDQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
)
_redis = redis.Redis.from_url(app.conf.broker_url, decode_responses=True)


def _record(task: Any, job_id: str, payload: dict[str, Any]) -> None:
    call = {"task": task.name, "task_id": task.request.id, "job_id": job_id, "retries": task.request.retries}
    _redis.rpush(CALLS, json.dumps({**call, "payload": payload}))


@app.task(name="fit.record_success", bind=True)
def record_success(self: Any, job_id: str, run: dict[str, Any]) -> None:
    _record(self, job_id, {"status": run.get("status"), "run_id": run.get("id")})


@app.task(name="fit.record_failure", bind=True)
def record_failure(self: Any, job_id: str, error: dict[str, Any]) -> None:
    _record(self, job_id, error)


@app.task(name="fit.flaky", bind=True, max_retries=3)
def flaky(self: Any, job_id: str, run: dict[str, Any]) -> None:
    """Fails its first attempt: Celery retries it (the producer's own rule)."""
    _record(self, job_id, {"status": run.get("status")})
    if self.request.retries == 0:
        raise self.retry(countdown=0.1)
