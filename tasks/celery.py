"""The Celery app, made on first use; `celery -A extendq.tasks worker` and `extendq worker` both start it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery
from celery.app.log import Logging
from celery.apps.worker import Worker
from kombu import Exchange, Queue

from extendq.config.celery_redis import broker_sentinel_options, celery_redis_config
from extendq.config.logging import configure_logging
from extendq.config.settings import Settings, get_settings
from extendq.errors import ConfigError
from extendq.tasks.startup import EXIT_CONFIG, CheckedWorker, refuse
from extendq.worker.keys import CHECKS_QUEUE, QUEUE, Keys

__all__ = ["CHECKS_QUEUE", "QUEUE", "ExtendqApp", "celery_config", "create_app", "get_app"]


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
        # Broker, result backend and redbeat on the settings' Redis: URLs in each one's form, the same TLS options and
        # passwords, Sentinel (config/celery_redis.py).
        **celery_redis_config(settings),
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
            **broker_sentinel_options(settings),
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
        # Celery's consumer, surviving a broker restart that Celery 5.7 would end the worker on.
        "worker_consumer": "extendq.tasks.consumer:Consumer",
        # Beat: celery-redbeat keeps the schedule in Redis, and only the beat holding its lock fires.
        "beat_scheduler": "extendq.config.beat:Scheduler",
        "beat_max_loop_interval": settings.beat_max_loop_interval_s,
        "redbeat_key_prefix": Keys(settings.key_prefix).beat,
        "redbeat_lock_timeout": settings.beat_lock_timeout_s,
    }


_TASK_MODULES = ["extendq.tasks.runs", "extendq.tasks.beat", "extendq.tasks.bulk"]


class _ConfiguredLogging(Logging):
    """Logging for the processes this app starts (worker, beat): our format, set up once, for this app only.

    A class of the app rather than a receiver of Celery's process-wide `setup_logging` signal: a producer's own
    Celery worker in the same process keeps its logging.
    """

    app: ExtendqApp
    _configured = False

    def setup_logging_subsystem(self, *args: Any, **kwargs: Any) -> None:
        if self._configured:
            return
        self._configured = True
        configure_logging(self.app.settings)


class ExtendqApp(Celery):
    """A Celery app that knows the settings it was wired from (its logging, worker and tasks read them)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("extendq", include=_TASK_MODULES, log=_ConfiguredLogging)
        self.settings = settings
        # Set by the worker's start checks: no API key, and the base URL is the emulator (tasks/startup.py).
        self.keyless_emulator = False
        self.config_from_object(celery_config(settings))
        self._worker: type[Worker] | None = None

    @property
    def Worker(self) -> type[Worker]:
        """The worker program: Celery's, checked before it takes any message (a class of this app, not a signal)."""
        if self._worker is None:
            self._worker = self.subclass_with_self(CheckedWorker)
        return self._worker


def create_app(settings: Settings) -> ExtendqApp:
    """A Celery app wired to `settings` (tests and producers with their own settings use this)."""
    return ExtendqApp(settings)


@lru_cache(maxsize=1)
def get_app() -> ExtendqApp:
    """The app of this process, wired from the environment's settings on first use (never at import)."""
    return create_app(get_settings())


def __getattr__(name: str) -> Any:
    # `celery -A extendq.tasks` looks for an `app` attribute: it is made when first asked for. Celery's command
    # prints a traceback for any error while loading it: a bad setting is one line and exit status 2 instead.
    if name == "app":
        try:
            return get_app()
        except ConfigError as exc:
            refuse(f"extendq: {exc}", EXIT_CONFIG)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
