"""What every component must do over a kind of Redis connection (TLS, Sentinel), checked the same way for each: a
worker on it, one job end to end through the result backend, and beat's lock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from extendq.config.settings import Settings
from extendq.tasks.aio import result_async
from extendq.tasks.celery import create_app
from extendq.tasks.producer import build_request, enqueue
from extendq.tasks.waiting import waiting_in_broker
from extendq.worker.keys import Keys
from extendq.worker.models import JobState
from extendq.worker.store import RedisJobStore, open_store
from tests.e2e.test_pipeline import wait_for
from tests.support.beat import BeatProcess
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

BEAT_PREFIX = Keys("extendq:").beat


@contextmanager
def worker_on(
    env: dict[str, str], emulator: EmulatorProcess, profile: dict[str, Any], folder: Path
) -> Iterator[WorkerProcess]:
    """A worker of two processes on `env`, the emulator reset to `profile`."""
    emulator.set_profile(profile)
    emulator.reset()
    with WorkerProcess(env, log_path=folder / "worker.log", concurrency=2) as process:
        yield process


def one_job_end_to_end(
    settings: Settings, *, secrets_key: str, store: RedisJobStore | None = None
) -> tuple[str, dict[str, Any]]:
    """Send one job from a producer (recorded first in `store`, if given) and await it; check that its terminal run
    came back through the result backend and `result_async`'s own connections, and that its record says SUCCESS.
    The job id and its run."""
    with create_app(settings) as producer:
        request = build_request(secrets_key=secrets_key, workflow="workflow_processed", file={"text": "Invoice #: 1"})
        job = enqueue(producer, request, store=store)
        run: dict[str, Any] = job.get(timeout=90)
        assert run["status"] == "PROCESSED" and run["object"] == "workflow_run"
        again = asyncio.run(result_async(job.id, timeout=30, app=producer))
        assert again["id"] == run["id"]
        # The step's message is acknowledged when the task returns, just after the result it published: a moment later
        wait_for(lambda: waiting_in_broker(producer, job.id) is False, timeout_s=10)
    record = open_store(settings).load(job.id)
    assert record is not None and record.state is JobState.SUCCESS and record.run_id == run["id"]
    return job.id, run


def beat_keys_once_leading(env: dict[str, str], log_path: Path, client: redis.Redis) -> tuple[set[str], str]:
    """Start beat on `env` (a short loop and lock), wait (60 s at most) until it holds redbeat's lock, and read
    beat's keys through `client` (decoding); the keys and beat's log. Beat is stopped on the way out."""
    beat = BeatProcess(
        {**env, "EXTENDQ_BEAT_MAX_LOOP_INTERVAL_S": "0.5", "EXTENDQ_BEAT_LOCK_TIMEOUT_S": "3"}, log_path=log_path
    )
    try:
        beat.start(timeout_s=60)
        deadline = time.monotonic() + 60
        while not beat.leading:
            assert time.monotonic() < deadline, f"beat took no lock within 60 s:\n{beat.log_text()[-3000:]}"
            time.sleep(0.2)
        return {str(key) for key in client.scan_iter(f"{BEAT_PREFIX}*")}, beat.log_text()
    finally:
        beat.stop()
