"""The job pipeline end to end: real Redis, the served emulator and a real Celery worker."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from extendq.config.settings import Settings
from extendq.errors import DeadlineExceeded, InputNotFound, JobCancelled, RunRejected
from extendq.tasks.producer import build_request, enqueue
from tests.e2e.conftest import SECRETS_KEY
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.e2e


def submit(producer: Celery, **request: Any) -> AsyncResult[Any]:
    request.setdefault("file", {"text": "Invoice #: 1\nTotal: 10.00"})
    return enqueue(producer, build_request(secrets_key=SECRETS_KEY, **request))


def wait_for(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


def creates(emulator: EmulatorProcess) -> int:
    return sum(emulator.stats()["requests"].get("POST /workflow_runs", {}).values())


@pytest.mark.parametrize(
    ("workflow", "status"),
    [("workflow_processed", "PROCESSED"), ("workflow_failed", "FAILED"), ("workflow_review", "NEEDS_REVIEW")],
)
def test_terminal_run_is_the_result(
    workflow: str,
    status: str,
    producer: Celery,
    worker: WorkerProcess,
    emulator: EmulatorProcess,
    clean: redis.Redis,
) -> None:
    # Given a job for a workflow with a known outcome
    job = submit(producer, workflow=workflow, metadata={"customer": "acme"})
    # When the worker has driven it to the end
    run = job.get(timeout=20)
    # Then the result is the terminal run with the API's wire names, exactly as Extend returned it
    assert run["status"] == status
    assert run["object"] == "workflow_run"
    assert run["metadata"]["customer"] == "acme"
    assert run["metadata"]["extendq:job_id"] == job.id
    served = {r["id"]: r for r in emulator.runs()}
    assert served[run["id"]]["status"] == status
    assert creates(emulator) == 1


def test_progress_is_visible_while_in_flight(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    job = submit(producer, workflow="workflow_slow")
    info = wait_for(lambda: job.state == "RUNNING" and job.info)
    assert info["run_id"].startswith("workflow_run")
    assert info["run_status"] in {"PENDING", "PROCESSING"}
    assert info["submitted_at"] > 0
    wait_for(lambda: job.state == "RUNNING" and job.info["checks"] >= 1)
    assert job.get(timeout=20)["status"] == "PROCESSED"


def test_unknown_workflow_fails_typed_after_one_call(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    job = submit(producer, workflow="workflow_does_not_exist")
    with pytest.raises(RunRejected) as caught:
        job.get(timeout=20)
    assert caught.value.status_code == 404
    assert "404" in str(caught.value)
    assert emulator.stats()["requests_total"] == 1


def test_unknown_file_id_fails_typed_after_one_call(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    job = submit(producer, workflow="workflow_processed", file={"id": "file_nope"})
    with pytest.raises(RunRejected):
        job.get(timeout=20)
    assert emulator.stats()["requests_total"] == 1


def test_missing_local_path_fails_without_calling_extend(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    job = producer.send_task(
        "extendq.run_workflow", kwargs={"workflow": "workflow_processed", "file": {"path": "/nonexistent/x.pdf"}}
    )
    with pytest.raises(InputNotFound) as caught:
        job.get(timeout=20)
    assert "/nonexistent/x.pdf" in str(caught.value)
    assert emulator.stats()["requests_total"] == 0


def test_local_path_is_uploaded_then_run_by_file_id(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis, tmp_path: Any
) -> None:
    document = tmp_path / "invoice-77.txt"
    document.write_text("ACME Corp\nInvoice Number: INV-77\nDate: 2026-10-03\nTotal: $120.50\n")
    run = submit(producer, workflow="workflow_processed", file={"path": str(document)}).get(timeout=20)
    assert run["status"] == "PROCESSED"
    assert run["files"][0]["name"] == "invoice-77.txt"
    assert sum(emulator.stats()["requests"].get("POST /files/upload", {}).values()) == 1


def test_same_job_key_twice_is_one_job_and_one_run(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    first = submit(producer, workflow="workflow_processed", job_key="order-42")
    second = submit(producer, workflow="workflow_processed", job_key="order-42")
    assert first.id == second.id
    by_name = producer.send_task(
        "extendq.run_workflow", kwargs={"workflow": "workflow_processed", "file": {"text": "x"}, "job_key": "order-42"}
    )
    assert first.get(timeout=20)["id"] == by_name.get(timeout=20)["id"]
    assert creates(emulator) == 1


def test_cancel_before_submission_stops_the_job(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis, e2e_settings: Settings
) -> None:
    # A job whose record exists but was never submitted (as if its submit task were still queued)
    from extendq.tasks.base import store_for
    from extendq.worker.models import JobRequest

    store = store_for(e2e_settings)
    request = JobRequest.parse({"workflow": "workflow_processed", "file": {"text": "x"}})
    store.create("job-never-submitted", request, now=time.time(), lease_s=30, secrets=None)
    assert producer.send_task("extendq.cancel", args=["job-never-submitted"]).get(timeout=10) is True
    with pytest.raises(JobCancelled):
        AsyncResult("job-never-submitted", app=producer).get(timeout=20)
    assert emulator.stats()["requests_total"] == 0


def test_cancel_cancels_the_extend_run(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    job = submit(producer, workflow="workflow_long")
    wait_for(lambda: job.state == "RUNNING")
    producer.send_task("extendq.cancel", args=[job.id])
    run = job.get(timeout=20)
    assert run["status"] == "CANCELLED"
    assert [r["status"] for r in emulator.runs()] == ["CANCELLED"]


def test_deadline_cancels_the_run_and_fails_the_job(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    job = submit(producer, workflow="workflow_long", deadline_s=2)
    with pytest.raises(DeadlineExceeded) as caught:
        job.get(timeout=20)
    assert caught.value.run_id is not None
    wait_for(lambda: [r["status"] for r in emulator.runs()] == ["CANCELLED"], timeout_s=5)


def test_events_stream_gets_one_terminal_event_per_job(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    jobs = [submit(producer, workflow="workflow_processed") for _ in range(5)]
    for job in jobs:
        job.get(timeout=20)

    def terminal_events() -> list[dict[str, str]]:
        return [fields for _, fields in clean.xrange("extendq:events") if fields["state"] in {"SUCCESS", "FAILURE"}]

    # The result is published first, the event right after it
    terminal = wait_for(lambda: len(terminal_events()) >= 5 and terminal_events(), timeout_s=5)
    assert sorted(event["job_id"] for event in terminal) == sorted(job.id for job in jobs)
    assert {event["status"] for event in terminal} == {"PROCESSED"}
