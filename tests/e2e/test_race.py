"""A check and a webhook racing for the same job publish one result, and whichever is second does nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from extendq.config.settings import Settings
from extendq.tasks.base import BackendPublisher, build_runner
from extendq.worker.events import EventApplier, Outcome
from extendq.worker.jobs import JobRunner
from extendq.worker.models import JobRequest
from tests.e2e.test_pipeline import wait_for
from tests.support.emulator import EmulatorProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def runner(e2e_settings: Settings, producer: Celery, clean: redis.Redis) -> Iterator[JobRunner]:
    built = build_runner(e2e_settings, producer)
    built.publisher = BackendPublisher(producer.backend)
    yield built
    built.api.close()


def started_job(runner: JobRunner, emulator: EmulatorProcess, name: str) -> tuple[str, dict[str, Any]]:
    """A submitted job whose run has ended on Extend but that nobody has looked at yet."""
    request = JobRequest.parse({"workflow": "workflow_processed", "file": {"text": "Total: 1.00"}})
    runner.start(name, request)
    record = runner.store.load(name)
    assert record is not None and record.run_id is not None
    run = wait_for(
        lambda: next((r for r in emulator.runs() if r["id"] == record.run_id and r["status"] == "PROCESSED"), None),
        timeout_s=10,
    )
    return name, run


def event_for(run: dict[str, Any]) -> dict[str, Any]:
    return {"eventId": f"event_{run['id']}", "eventType": "workflow_run.completed", "payload": run}


def terminal_events(client: redis.Redis, job_id: str) -> int:
    return sum(1 for _, f in client.xrange("extendq:events") if f["job_id"] == job_id and f["state"] == "SUCCESS")


def test_webhook_first_then_the_check_makes_no_call(
    runner: JobRunner, emulator: EmulatorProcess, clean: redis.Redis, producer: Celery
) -> None:
    job_id, run = started_job(runner, emulator, "race-webhook-first")
    assert EventApplier(runner=runner).apply(event_for(run)) is Outcome.APPLIED
    calls = emulator.stats()["requests_total"]
    runner.advance(job_id)
    assert emulator.stats()["requests_total"] == calls
    assert producer.AsyncResult(job_id).get(timeout=5)["id"] == run["id"]
    assert terminal_events(clean, job_id) == 1


def test_check_first_then_the_webhook_is_a_no_op(
    runner: JobRunner, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    job_id, run = started_job(runner, emulator, "race-check-first")
    runner.advance(job_id)
    assert EventApplier(runner=runner).apply(event_for(run)) is Outcome.ALREADY_FINISHED
    assert terminal_events(clean, job_id) == 1


def race(runner: JobRunner, job_id: str, event: dict[str, Any]) -> Outcome:
    """Start a check and a webhook for the same job at the same instant; what the webhook did."""
    applier = EventApplier(runner=runner)
    gate = threading.Barrier(2)
    outcomes: list[Outcome] = []

    def check() -> None:
        gate.wait()
        runner.advance(job_id)

    def webhook() -> None:
        gate.wait()
        while (outcome := applier.apply(event)) is Outcome.BUSY:
            time.sleep(0.005)  # the task retries a BUSY event the same way
        outcomes.append(outcome)

    threads = [threading.Thread(target=check), threading.Thread(target=webhook)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes[0]


def test_simultaneous_check_and_webhook_publish_once(
    runner: JobRunner, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    seen = set()
    for attempt in range(15):
        job_id, run = started_job(runner, emulator, f"race-both-{attempt}")
        seen.add(race(runner, job_id, event_for(run)))
        assert terminal_events(clean, job_id) == 1, attempt
    assert seen <= {Outcome.APPLIED, Outcome.ALREADY_FINISHED}
