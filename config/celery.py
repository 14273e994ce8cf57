"""The Celery app; `celery -A config worker` and `extendq worker` both start it."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging
from kombu import Exchange, Queue

from config.logging import configure_logging
from config.settings import Settings, get_settings
from worker.keys import Keys

QUEUE = "extendq"
CHECKS_QUEUE = "extendq.checks"


_STEP_TASKS = (
    "extendq.advance",
    "extendq.advance_many",
    "extendq.cancel",
    "extendq.webhook_event",
    "extendq.adopt_runs",
)
# Periodic jobs that only touch Redis (or make a few checks) run with the steps; ingestion submits new jobs.
_PERIODIC_STEP_TASKS = ("extendq.reconcile", "extendq.follow_reviews", "extendq.roll_up_usage")


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for `settings`, one per line, each with its reason."""
    return {
        "broker_url": settings.broker,
        "result_backend": settings.result_backend,
        # JSON only: no pickle on the wire, and producers in any language can enqueue by name.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A task is acknowledged after it ran, and requeued if its process dies mid-task.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message at a time per process: waits live in Redis, never in prefetched messages.
        "worker_prefetch_multiplier": 1,
        # Unacked messages of a worker that vanished come back after this long (no task runs this long);
        # queues are served in the order listed (steps of jobs in flight first), not round robin.
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "queue_order_strategy": "priority",
        },
        "result_expires": settings.result_ttl_s,
        "task_default_queue": QUEUE,
        # New submissions and the steps of jobs in flight (checks, webhook events, cancels) wait in separate
        # queues, steps first: a backlog of new files never delays the results of runs already in flight.
        "task_queues": [Queue(name, Exchange(name), routing_key=name) for name in (CHECKS_QUEUE, QUEUE)],
        "task_routes": {name: {"queue": CHECKS_QUEUE} for name in (*_STEP_TASKS, *_PERIODIC_STEP_TASKS)},
        # A step is one or two HTTP calls; an upload may take longer, never minutes.
        "task_soft_time_limit": settings.request_timeout_s * 4,
        "task_time_limit": settings.request_timeout_s * 4 + 30,
        # Results are published by the job itself; the tasks' own return values are not.
        "task_ignore_result": True,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Beat: celery-redbeat keeps the schedule in Redis, and only the beat holding its lock fires.
        "beat_scheduler": "config.beat:Scheduler",
        "beat_max_loop_interval": settings.beat_max_loop_interval_s,
        "redbeat_redis_url": settings.redis_url,
        "redbeat_redis_options": {},
        "redbeat_key_prefix": Keys(settings.key_prefix).beat,
        "redbeat_lock_timeout": settings.beat_lock_timeout_s,
    }


def create_app(settings: Settings) -> Celery:
    """A Celery app wired to `settings` (tests and producers with their own settings use this)."""
    celery_app = Celery("extendq", include=["tasks.runs", "tasks.beat", "tasks.bulk"])
    celery_app.config_from_object(celery_config(settings))
    return celery_app


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Connecting this signal makes Celery leave logging to us: same format in workers, beat and the CLI.
    configure_logging(get_settings())


app = create_app(get_settings())
