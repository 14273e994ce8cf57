"""Webhooks first: the emulator signs and delivers, the receiver hands on, the worker finishes jobs at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from extendq.config.settings import Settings
from extendq.tasks.celery import create_app as create_celery
from extendq.tasks.producer import build_request, enqueue
from extendq.webhooks import create_app as create_receiver
from extendq.worker.store import open_store
from tests.conftest import clean_keys
from tests.e2e.conftest import API_KEY, PROFILE
from tests.e2e.test_pipeline import wait_for
from tests.support.asgi import served
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

pytestmark = pytest.mark.e2e
SECRET = "wss_e2e_webhook_secret"
# Longer than the event task's old retry budget (200 retries 0.05 s apart, 10-15 s), after which it gave up.
BUSY_HOLD_S = 25


class Stack:
    """A worker in webhook mode, its receiver and a producer, on a Redis database of their own."""

    def __init__(self, settings: Settings, worker: WorkerProcess, emulator: EmulatorProcess) -> None:
        self.settings = settings
        self.worker = worker
        self.emulator = emulator
        self.producer: Celery = create_celery(settings)
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    def submit(self, **request: Any) -> Any:
        request.setdefault("file", {"text": "Invoice #: 9\nTotal: 99.00"})
        return enqueue(self.producer, build_request(**request))

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.redis.hgetall("extendq:counters").items()}


def counted(stack: Stack, name: str, *, timeout_s: float) -> int:
    """The counter `name` once it is above 0; fails with every counter when it stays at 0 past `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (count := stack.counters().get(name, 0)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count, f"{name} not counted within {timeout_s} s; counters: {stack.counters()}"
    return count


@pytest.fixture(scope="module")
def stack(
    redis_server_url: str, emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    db = claim_database(f"{redis_server_url}/0", owner=f"webhooks-{time.time()}")
    env = {
        "EXTENDQ_REDIS_URL": f"{redis_server_url}/{db}",
        "EXTENDQ_BASE_URL": emulator.url,
        "EXTEND_API_KEY": API_KEY,
        "EXTENDQ_WEBHOOKS_ENABLED": "true",
        "EXTENDQ_WEBHOOK_SECRETS": SECRET,
        # No safety-net check, and no check of a run a sweep found ended, within a test's life, however slow a
        # loaded machine makes it: these tests count the checks, and expect none.
        "EXTENDQ_WEBHOOK_CHECK_INTERVAL_S": "600",
        "EXTENDQ_WEBHOOK_GRACE_S": "600",
    }
    settings = Settings.from_env(env)
    log = tmp_path_factory.mktemp("webhooks") / "worker.log"
    with served(create_receiver(settings)) as url, WorkerProcess(env, log_path=Path(log), concurrency=2) as worker:
        emulator.set_webhook(f"{url}/webhooks/extend", SECRET)
        try:
            yield Stack(settings, worker, emulator)
        finally:
            emulator.set_webhook(None)
    release_database(f"{redis_server_url}/0", db)


@pytest.fixture
def hooked(stack: Stack) -> Stack:
    stack.emulator.set_profile(PROFILE)
    stack.emulator.reset()
    clean_keys(stack.redis)
    return stack


@pytest.mark.parametrize(
    ("workflow", "status"),
    [("workflow_processed", "PROCESSED"), ("workflow_failed", "FAILED"), ("workflow_review", "NEEDS_REVIEW")],
)
def test_webhook_finishes_the_job_with_no_check(workflow: str, status: str, hooked: Stack) -> None:
    # Given a worker whose first check is a minute away
    job = hooked.submit(workflow=workflow)
    # When Extend signals the end of the run
    run = job.get(timeout=15)
    # Then the result is the run from the webhook, and the only API call was the create
    assert run["status"] == status and run["metadata"]["extendq:job_id"] == job.id
    assert hooked.emulator.stats()["requests_total"] == 1
    assert wait_for(lambda: hooked.counters().get("webhook_applied", 0) == 1, timeout_s=5)


@pytest.mark.timeout(180)
def test_event_for_a_job_busy_past_the_old_retry_budget_is_applied_once_the_lock_frees(hooked: Stack) -> None:
    # Given a job whose run is on Extend, its first check a minute away
    job = hooked.submit(workflow="workflow_slow")
    store = open_store(hooked.settings)
    wait_for(lambda: (record := store.load(job.id)) is not None and record.run_id is not None, timeout_s=15)
    # When its lock is held (as a long step holds it) while the run ends and its webhook is taken, and longer
    with store.lock(job.id, ttl_s=BUSY_HOLD_S * 4) as held:
        assert held
        taken = wait_for(lambda: [d for d in hooked.emulator.webhooks() if d["statusCode"] == 200], timeout_s=15)
        time.sleep(BUSY_HOLD_S)
        busy = (job.state, hooked.counters().get("webhook_applied", 0))
    # Then nothing was applied while the job was busy, and the event is applied once the lock frees
    assert busy == ("RUNNING", 0)
    applied = counted(hooked, "webhook_applied", timeout_s=30)
    run = job.get(timeout=10)
    # ... from the webhook's run, once, with no check made
    assert (applied, run["status"], [d["eventType"] for d in taken]) == (1, "PROCESSED", ["workflow_run.completed"])
    assert hooked.emulator.stats()["requests_total"] == 1
    terminal = [f for _, f in hooked.redis.xrange("extendq:events") if f["state"] == "SUCCESS"]
    assert [f["job_id"] for f in terminal] == [job.id]
    store.client.close()


def test_signed_url_payload_is_fetched_and_applied(hooked: Stack) -> None:
    hooked.emulator.set_profile({**PROFILE, "webhooks": {"url_threshold_bytes": 0}})
    run = hooked.submit(workflow="workflow_processed").get(timeout=15)
    assert run["status"] == "PROCESSED"
    assert run["object"] == "workflow_run" and "stepRuns" in run
    deliveries = hooked.emulator.webhooks()
    assert deliveries and all(d["signedUrl"] for d in deliveries)
    assert hooked.emulator.stats()["requests_total"] == 1


def test_many_jobs_one_result_each_and_no_polling(hooked: Stack) -> None:
    jobs = [hooked.submit(workflow="workflow_processed") for _ in range(40)]
    runs = [job.get(timeout=30) for job in jobs]
    assert {run["status"] for run in runs} == {"PROCESSED"}
    stats = hooked.emulator.stats()
    assert stats["requests"].get("GET /workflow_runs/{id}", {}) == {}
    terminal = [f for _, f in hooked.redis.xrange("extendq:events") if f["state"] == "SUCCESS"]
    assert len(terminal) == 40 and len({f["job_id"] for f in terminal}) == 40


def test_event_for_an_unknown_run_is_counted_not_failed(hooked: Stack) -> None:
    # A run created outside extendq (no job record, no job id in its metadata)
    import httpx

    headers = {"Authorization": f"Bearer {API_KEY}", "x-extend-api-version": "2026-02-09"}
    httpx.post(
        f"{hooked.emulator.url}/workflow_runs",
        headers=headers,
        json={"workflow": {"id": "workflow_processed"}, "file": {"text": "x"}},
    ).raise_for_status()
    assert wait_for(lambda: hooked.counters().get("webhook_unknown_run", 0) == 1, timeout_s=30)
    # The emulator notes a delivery once it has read the answer, which may come after the worker applied it
    deliveries = wait_for(hooked.emulator.webhooks, timeout_s=10)
    assert [d["statusCode"] for d in deliveries] == [200]
