"""The worker's metrics endpoint and its place in the pool's registry, both kept by its main process.

`worker_init` (main process, before the pool forks) points every process at one sample directory;
`serve_metrics` (called from `worker_ready`) serves it on EXTENDQ_METRICS_PORT; `worker_shutdown` stops the
endpoint and removes the directory. Without EXTENDQ_METRICS_PORT nothing is set up and metrics stay in memory.
`watch_pool` (also from `worker_ready`) records the worker's heartbeat and looks for extendq task messages in
queues no extendq worker consumes (`worker.misrouted`); the worker's entry is removed when it stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_init, worker_shutdown

from extendq.config.metrics import disable_multiprocess, enable_multiprocess
from extendq.config.settings import Settings, get_settings
from extendq.config.tenants import load_tenants
from extendq.tasks.base import store_for
from extendq.tasks.celery import get_app
from extendq.worker import metrics
from extendq.worker.misrouted import MisroutedCollector, PoolWatch, broker_client
from extendq.worker.pool import WorkerEntry, WorkerRegistry

log = logging.getLogger("extendq.pool")
_stop: Callable[[], None] | None = None
_entry: tuple[WorkerRegistry, WorkerEntry] | None = None


@worker_init.connect
def _prepare_metrics(**_: Any) -> None:
    settings = get_settings()
    if settings.metrics_port is not None:
        metrics.configure(multiprocess_dir=enable_multiprocess(), tenants=load_tenants(settings))


def serve_metrics(settings: Settings) -> None:
    """Serve this worker's metrics (and the pool's gauges) on EXTENDQ_METRICS_PORT, if set; best effort."""
    global _stop
    if settings.metrics_port is None:
        return
    store = store_for(settings)
    handed_over = metrics.HandedOver(store.client, keys=store.keys)
    registry = metrics.scrape_registry(metrics.pool_collector(settings, store), handed_over=handed_over)
    broker = broker_client(settings)
    if broker is not None:
        workers = WorkerRegistry(store.client, keys=store.keys)
        registry.register(MisroutedCollector(broker, registry=workers, task_names=task_names(get_app())))
    _stop = metrics.start_server(port=settings.metrics_port, host=settings.metrics_host, registry=registry)


def task_names(app: Celery) -> frozenset[str]:
    """The names of extendq's own tasks (the messages that no other worker can run)."""
    app.loader.import_default_modules()  # the task modules (a worker has them already; a command not yet)
    return frozenset(name for name in app.tasks if name.startswith("extendq."))


def watch_pool(settings: Settings, consumer: Any, stop: threading.Event) -> PoolWatch:
    """Record this worker in the pool's registry and look for misrouted messages every interval, in a thread.

    `consumer` is what Celery's `worker_ready` sends: the worker's name, pool and queues are read from it.
    """
    global _entry
    store = store_for(settings)
    registry = WorkerRegistry(store.client, keys=store.keys)
    started = time.time()

    def describe() -> WorkerEntry:
        return WorkerEntry(
            name=str(consumer.hostname),
            pid=os.getpid(),
            concurrency=_concurrency(consumer),
            queues=_queues(consumer),
            started_at=started,
            heartbeat_at=started,
            interval_s=settings.pool_watch_interval_s,
        )

    watch = PoolWatch(
        registry=registry,
        broker=broker_client(settings),
        describe=describe,
        task_names=task_names(consumer.app),
        interval_s=settings.pool_watch_interval_s,
    )
    _entry = (registry, describe())
    threading.Thread(target=watch.run, args=(stop.wait,), name="extendq-pool", daemon=True).start()
    return watch


def _concurrency(consumer: Any) -> int:
    processes = getattr(consumer.pool, "num_processes", None)  # follows --autoscale
    return int(processes if processes is not None else consumer.controller.concurrency)


def _queues(consumer: Any) -> tuple[str, ...]:
    if consumer.task_consumer is not None:  # follows add_consumer / cancel_consumer
        return tuple(sorted(queue.name for queue in consumer.task_consumer.queues))
    return tuple(sorted(consumer.app.amqp.queues.consume_from))


@worker_shutdown.connect
def _leave_pool(**_: Any) -> None:
    global _entry
    if _entry is not None:
        registry, entry = _entry
        _entry = None
        try:
            registry.remove(entry)
        except redis.RedisError as exc:  # best effort: an entry stops counting as alive three intervals later
            log.debug("worker entry not removed: %s", exc)


@worker_shutdown.connect
def _stop_metrics(**_: Any) -> None:
    global _stop
    if _stop is not None:
        _stop()
        _stop = None
    disable_multiprocess()
