"""A bare Celery app with one task that does nothing: what Celery itself costs per message on the broker.

Started as `celery -A bench.noop worker`, on EXTENDQ_REDIS_URL, with extendq's message settings (JSON,
late acknowledgement, one message prefetched per process) and no result stored, so a message costs only
its delivery, its execution and its acknowledgement.
"""

from __future__ import annotations

from celery import Celery

from extendq.config.settings import get_settings

QUEUE = "noop"

settings = get_settings()
app = Celery("noop", broker=settings.broker)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    task_ignore_result=True,
)


@app.task(name="noop.noop")
def noop() -> None:
    """Do nothing."""
