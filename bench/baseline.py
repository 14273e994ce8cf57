"""The blocking baseline: a Celery task that calls the SDK's `create_and_poll` and holds its slot until the run ends.

Started as `celery -A bench.baseline worker`; configured from the same EXTENDQ_* environment as extendq.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from extend_ai import Extend

from extendq.config.settings import get_settings

settings = get_settings()
app = Celery("baseline", broker=settings.broker, backend=settings.result_backend)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="baseline",
)
_client: Extend | None = None


def _extend() -> Extend:
    global _client
    if _client is None:
        key = settings.api_key.get_secret_value() if settings.api_key else None
        _client = Extend(token=key, base_url=settings.extend_base_url, timeout=settings.request_timeout_s)
    return _client


@app.task(name="baseline.create_and_poll")
def create_and_poll(workflow: str, text: str) -> dict[str, Any]:
    """Create a run and poll it to the end inside this task, as the SDK's helper does."""
    run = _extend().workflow_runs.create_and_poll(workflow={"id": workflow}, file={"text": text})
    return {"id": run.id, "status": run.status}
