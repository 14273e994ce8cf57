"""A pool's state put in place on a real Redis with no worker process, for what reads it (`extendq info`, the
dashboard): a worker entry, two jobs in flight (one overdue, one running) and a 429 pause."""

from __future__ import annotations

import time

from extendq.config.settings import Settings
from extendq.tasks.base import limiter_for
from extendq.tasks.producer import build_request
from extendq.worker.models import JobState
from extendq.worker.pool import WorkerEntry, WorkerRegistry
from extendq.worker.store import open_store


def record_pool(settings: Settings, *, worker_name: str) -> None:
    """Record the worker `worker_name` (8 slots on both extendq queues), `job-old` (locked, its lease 60 s overdue)
    and `job-new` (running), and a 429 pause of 10 ms."""
    store = open_store(settings)
    now = time.time()
    WorkerRegistry(store.client, keys=store.keys).beat(
        WorkerEntry(
            name=worker_name,
            pid=4242,
            concurrency=8,
            queues=("extendq", "extendq.checks"),
            started_at=now - 60,
            heartbeat_at=now,
            interval_s=15.0,
        )
    )
    request = build_request(workflow="workflow_invoice", file={"text": "Invoice #: 1"})
    store.create_locked("job-old", request, now=now - 100, lease_s=40, secrets=None, lock_ttl_s=5)
    store.create("job-new", request, now=now, lease_s=60, secrets=None)
    store.update("job-new", state=JobState.RUNNING)
    limiter_for(settings, store).pause(0.01)
