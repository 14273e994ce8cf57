"""The receiver applies terminal events itself: one result however a check races it, the same result a worker
would publish, re-deliveries still answered `duplicate`, and the job's metrics counted on a worker's endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from extendq.config.settings import Settings
from extendq.tasks.base import build_runner
from extendq.tasks.celery import create_app as create_celery
from extendq.tasks.producer import build_request
from extendq.webhooks import create_app as create_receiver
from extendq.worker import metrics
from extendq.worker.events import EventApplier
from extendq.worker.jobs import JobRunner
from extendq.worker.store import open_store
from tests.e2e.conftest import API_KEY, PROFILE
from tests.e2e.test_pipeline import wait_for
from tests.support.asgi import served
from tests.support.emulator import EmulatorProcess
from tests.support.worker import claim_database, release_database

pytestmark = pytest.mark.e2e
SECRET = "wss_e2e_apply_secret"
RACES = 12


@dataclass
class Pool:
    """A runner (a worker's, in this process), a receiver served over HTTP, and what they share."""

    settings: Settings
    celery: Celery
    runner: JobRunner
    url: str
    emulator: EmulatorProcess
    redis: redis.Redis
    http: httpx.Client

    def start(self, workflow: str = "workflow_processed") -> str:
        job_id = str(uuid.uuid4())
        self.runner.start(job_id, build_request(workflow=workflow, file={"text": "Invoice #: 4\nTotal: 4.00"}))
        return job_id

    def ended_run(self, job_id: str) -> dict[str, Any]:
        """The job's run once it ended on the emulator, as Extend's webhook carries it."""

        def ended() -> dict[str, Any] | None:
            runs = [r for r in self.emulator.runs() if r["metadata"].get("extendq:job_id") == job_id]
            return runs[0] if runs and runs[0]["status"] == "PROCESSED" else None

        run = wait_for(ended, timeout_s=30)
        assert isinstance(run, dict)
        return run

    def deliver(self, run: dict[str, Any], event_id: str | None = None) -> httpx.Response:
        """POST the run's terminal event, signed, as Extend delivers it."""
        event = {"eventId": event_id or f"event_{uuid.uuid4().hex}", "eventType": "workflow_run.completed"}
        body = json.dumps({**event, "payload": run}).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {"x-extend-request-timestamp": stamp, "x-extend-request-signature": signature}
        return self.http.post(f"{self.url}/webhooks/extend", content=body, headers=headers)

    def result(self, job_id: str) -> dict[str, Any]:
        raw = self.redis.get(f"celery-task-meta-{job_id}")
        assert raw is not None, f"no result for job {job_id}"
        return dict(json.loads(raw))

    def terminal_events(self) -> Counter[str]:
        """Terminal entries in the events stream, by job id."""
        entries = self.redis.xrange("extendq:events")
        return Counter(fields["job_id"] for _, fields in entries if fields.get("state") == "SUCCESS")


@pytest.fixture
def pool(redis_server_url: str, emulator: EmulatorProcess) -> Iterator[Pool]:
    db = claim_database(f"{redis_server_url}/0", owner=f"webhook-apply-{time.time()}")
    env = {
        "EXTENDQ_REDIS_URL": f"{redis_server_url}/{db}",
        "EXTENDQ_BASE_URL": emulator.url,
        "EXTEND_API_KEY": API_KEY,
        "EXTENDQ_WEBHOOKS_ENABLED": "true",
        "EXTENDQ_WEBHOOK_SECRETS": SECRET,
    }
    settings = Settings.from_env(env)
    emulator.set_profile(PROFILE)
    emulator.reset()
    celery = create_celery(settings)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    runner, receiver_store = build_runner(settings, celery), open_store(settings)
    try:
        with (
            served(create_receiver(settings, celery_app=celery, store=receiver_store)) as url,
            httpx.Client(timeout=30) as http,
        ):
            yield Pool(settings, celery, runner, url, emulator, client, http)
    finally:
        runner.api.close()
        runner.store.client.close()
        receiver_store.client.close()
        client.flushdb()
        client.close()
        release_database(f"{redis_server_url}/0", db)


class Publications:
    """Every SUCCESS result published on the backend, counted by job id.

    Redis channels are the server's, not a database's: other tests' results arrive too, so read only your jobs'.
    """

    def __init__(self, redis_url: str) -> None:
        self.counts: Counter[str] = Counter()
        self._pubsub = redis.Redis.from_url(redis_url, decode_responses=True).pubsub()
        self._pubsub.psubscribe("celery-task-meta-*")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage" and json.loads(message["data"])["status"] == "SUCCESS":
                self.counts[message["channel"].removeprefix("celery-task-meta-")] += 1

    def of(self, jobs: Iterable[str]) -> dict[str, int]:
        """How many times each of `jobs` was published, for those published at all."""
        return {job: self.counts[job] for job in jobs if self.counts[job]}

    def close(self) -> None:
        time.sleep(0.5)  # publications still on their way arrive
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


def _race(pool: Pool, job: str, run: dict[str, Any], *, check_after_s: float, deliver_after_s: float) -> int:
    """Start a delivery of the run's event and a check of the job together, each after its delay; the answer."""
    start, answer = threading.Barrier(2), []

    def deliver() -> None:
        start.wait()
        time.sleep(deliver_after_s)
        answer.append(pool.deliver(run).status_code)

    def check() -> None:
        start.wait()
        time.sleep(check_after_s)
        pool.runner.advance(job)

    threads = [threading.Thread(target=deliver), threading.Thread(target=check)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answer[0]


def queued_events(pool: Pool) -> list[dict[str, Any]]:
    """The events the receiver handed to the workers (a step held their job), as a worker receives them."""
    raw = pool.redis.lrange("extendq.checks", 0, -1)
    return [json.loads(base64.b64decode(json.loads(message)["body"]))[0][0] for message in raw]


def test_a_webhook_racing_a_check_publishes_exactly_one_result(pool: Pool) -> None:
    # Given jobs whose runs ended on Extend, with no result yet
    jobs = [pool.start() for _ in range(RACES)]
    runs = {job: pool.ended_run(job) for job in jobs}
    published = Publications(pool.settings.redis_url)
    # When, for each, the webhook reaches the receiver about when a worker's check of the job runs (a few ms apart,
    # either first, so that each finds the other before, during or after its own step)
    answers = {}
    for i, job in enumerate(jobs):
        offset = (i // 2) * 0.005
        delays = (
            {"check_after_s": offset, "deliver_after_s": 0.0}
            if i % 2
            else {"check_after_s": 0.0, "deliver_after_s": offset}
        )
        answers[job] = _race(pool, job, runs[job], **delays)
    # And the events the receiver handed on (their job was held) are then applied by a worker
    applier = EventApplier(runner=pool.runner)
    late = [applier.apply(event).value for event in queued_events(pool)]
    published.close()
    # Then every delivery was answered 200, and each job has one result, published once, and one terminal event
    assert answers == dict.fromkeys(jobs, 200)
    assert set(late) <= {"already_finished"}
    assert published.of(jobs) == dict.fromkeys(jobs, 1)
    assert pool.terminal_events() == dict.fromkeys(jobs, 1)
    # (a check publishes the run as its GET returns it, a webhook as the event carries it)
    assert {job: pool.result(job)["result"]["id"] for job in jobs} == {job: runs[job]["id"] for job in jobs}


def test_the_receiver_publishes_what_a_worker_applying_the_event_would(pool: Pool) -> None:
    # Given two jobs of the same request whose runs ended
    here, there = pool.start(), pool.start()
    here_run, there_run = pool.ended_run(here), pool.ended_run(there)
    # When one's event is applied by the receiver, the other's by a worker (what `extendq.webhook_event` does)
    assert pool.deliver(here_run).json() == {"status": "accepted"}
    event = {"eventId": "event_worker", "eventType": "workflow_run.completed", "payload": there_run}
    assert EventApplier(runner=pool.runner).apply(event).value == "applied"
    # Then both results are their runs, published alike (the same fields, states and job records)
    mine, theirs = pool.result(here), pool.result(there)
    assert (mine["result"], theirs["result"]) == (here_run, there_run)
    ids_and_times = {"task_id", "date_done", "result"}
    assert {k: v for k, v in mine.items() if k not in ids_and_times} == {
        k: v for k, v in theirs.items() if k not in ids_and_times
    }
    assert [mine["task_id"], theirs["task_id"]] == [here, there]
    here_record, there_record = pool.runner.store.load(here), pool.runner.store.load(there)
    assert here_record is not None and there_record is not None
    assert (here_record.state, here_record.run_status, here_record.checks, here_record.error) == (
        there_record.state,
        there_record.run_status,
        there_record.checks,
        there_record.error,
    )
    assert pool.terminal_events() == {here: 1, there: 1}
    assert pool.redis.zscore("extendq:due", here) is None and pool.redis.zscore("extendq:in_flight", here) is None


def test_redeliveries_are_duplicates_and_another_event_of_the_run_changes_nothing(pool: Pool) -> None:
    # Given a job whose run ended
    job = pool.start()
    run = pool.ended_run(job)
    published = Publications(pool.settings.redis_url)
    # When its event is delivered three times, then the same run comes again under another event id
    answers = [pool.deliver(run, "event_once").json()["status"] for _ in range(3)]
    again = pool.deliver(run, "event_other").json()["status"]
    published.close()
    # Then the first was applied and the re-deliveries were duplicates; the other event found the job finished
    assert answers == ["accepted", "duplicate", "duplicate"] and again == "accepted"
    assert published.of([job]) == {job: 1}
    counters = {k: int(v) for k, v in pool.redis.hgetall("extendq:counters").items()}
    assert (counters["webhook_applied"], counters["webhook_already_finished"]) == (1, 1)
    assert counters["webhook_redelivered"] == 2
    # And nothing was handed to the workers
    assert pool.redis.llen("extendq.checks") == 0


def test_a_job_the_receiver_finished_is_counted_once_on_a_worker_s_endpoint(pool: Pool) -> None:
    # Given a worker's endpoint, scraped once, and a job whose run ended
    store = pool.runner.store
    registry = metrics.scrape_registry(handed_over=metrics.HandedOver(store.client, keys=store.keys))
    labels = {"workflow": "workflow_processed", "tenant": "default"}

    def scrape() -> tuple[float, float]:
        finished = registry.get_sample_value("extendq_jobs_finished_total", {**labels, "status": "PROCESSED"})
        by_webhook = registry.get_sample_value("extendq_time_to_result_seconds_count", {**labels, "via": "webhook"})
        return finished or 0.0, by_webhook or 0.0

    before = scrape()
    job = pool.start()
    run = pool.ended_run(job)
    # When the receiver finishes the job, and the endpoint is scraped twice
    assert pool.deliver(run).json() == {"status": "accepted"}
    after, again = scrape(), scrape()
    # Then the first scrape counted the job, with its time to result by webhook, and the second no more
    assert (after[0] - before[0], after[1] - before[1]) == (1.0, 1.0)
    assert again == after
    assert pool.redis.llen("extendq:metrics:handover") == 0
