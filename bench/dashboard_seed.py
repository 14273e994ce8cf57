"""Jobs for the dashboard benchmark (bench/dashboard.py): N in flight and N finished, written by the job store.

Every job goes through `RedisJobStore` as the pool writes it: the producer's `create` (QUEUED, claimed by its
start message), a worker's `create_locked` then `note_run` (RUNNING on a run, its progress result and event),
`record_run` then `finish` (the terminal result written in the same step, the usage note, the event), and
`review.watch` for a NEEDS_REVIEW run followed until reviewed. A failure's result goes through the Celery backend
as `JobRunner._fail` publishes it. The store sits on a pipeline whose commands answer a placeholder at once
(`_QueuingPipeline`), so a thousand jobs' scripts go to Redis in one round trip; nothing the store returns is used.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.client import Pipeline

from extendq.config.settings import Settings
from extendq.errors import AuthFailed, DeadlineExceeded, JobFailed, RetryBudgetExhausted, RunRejected
from extendq.tasks.base import BackendPublisher
from extendq.tasks.celery import create_app as create_celery
from extendq.worker import review
from extendq.worker.joblog import job_event
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.records import JobLock, JobRecord, new_record
from extendq.worker.store import RedisJobStore
from extendq.worker.usage import usage_note

WORKFLOWS = [f"workflow_bench_{index:02d}" for index in range(20)]
TENANTS = {"acme": {"api_key": "sk_bench_acme"}, "globex": {"api_key": "sk_bench_globex"}}
# One job in six names a tenant; the rest run on the default account.
TENANT_CHOICES: list[str | None] = [None, None, None, None, "acme", "globex"]
_COMPANIES = ("Northwind Traders", "Acme Corp", "Initech", "Umbrella Supply", "Globex Freight")
_CITIES = ("Berlin", "Lyon", "Leeds", "Austin", "Osaka", "Porto", "Turin", "Ghent", "Quebec", "Perth")
CUSTOMERS = [f"{company} {city}" for company in _COMPANIES for city in _CITIES]  # the text `/jobs?q=` looks for
# Finished outcomes per 100 jobs: the run's status, or FAILURE (the job failed with an error kind).
OUTCOMES = {"PROCESSED": 80, "FAILED": 5, "FAILURE": 5, "CANCELLED": 3, "NEEDS_REVIEW": 4, "REJECTED": 3}
ERRORS: list[JobFailed] = [
    RunRejected("workflow not found"),
    AuthFailed("invalid API key"),
    DeadlineExceeded("deadline of 600 s passed"),
    RetryBudgetExhausted("8 transient errors in a row"),
]
WATCHED_MAX = 300  # NEEDS_REVIEW jobs followed in the review set
BATCH = 1000  # jobs per round trip
DAY_S, HOUR_S = 24 * 3600, 3600
_QUEUED: tuple[str, int] = ("", 1)  # what every queued command answers: unpacks as (owner, created) and iterates


class _QueuingPipeline(Pipeline):
    """A pipeline whose commands answer `_QUEUED` at once, so the store's methods queue their scripts here."""

    def pipeline_execute_command(self, *args: Any, **options: Any) -> Any:
        super().pipeline_execute_command(*args, **options)
        return _QUEUED


def bench_env(redis_url: str) -> dict[str, str]:
    """The pool's environment: its Redis, a key, no reachable API, and the tenants the jobs name."""
    return {
        "EXTENDQ_REDIS_URL": redis_url,
        "EXTEND_API_KEY": "bench-key",
        "EXTENDQ_BASE_URL": "http://127.0.0.1:9",
        "EXTENDQ_TENANTS": json.dumps(TENANTS),
    }


@dataclass
class Seeded:
    """What was written, and ids the pages are asked about."""

    in_flight: int = 0
    finished: int = 0
    seconds: float = 0.0
    running_id: str = ""
    processed_id: str = ""
    watched: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Seeder:
    """Writes jobs through a pipeline-backed job store, a batch per round trip."""

    def __init__(self, settings: Settings, *, seed: int = 21) -> None:
        self._client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        self._pipe = _QueuingPipeline(self._client.connection_pool, self._client.response_callbacks, False, None)
        self._store = RedisJobStore(self._pipe, keys=Keys(settings.key_prefix), result_ttl_s=settings.result_ttl_s)
        self._celery = create_celery(settings)
        self._publisher = BackendPublisher(self._celery.backend)
        self._lock_s, self._lease_s = 90.0, settings.claim_lease_s
        self._random = random.Random(seed)
        self._now = time.time()
        self.seeded = Seeded()

    def seed(self, size: int) -> Seeded:
        """`size` jobs in flight and `size` finished; the seconds it took are in the answer."""
        started = time.monotonic()
        for index in range(size):
            self._in_flight(index)
            self._finished(index)
            if index % BATCH == BATCH - 1:
                self._pipe.execute()
        self._pipe.execute()
        self.seeded.seconds = time.monotonic() - started
        self._celery.close()
        self._client.close()
        return self.seeded

    def _request(self, index: int, *, watch: bool = False) -> JobRequest:
        pick = self._random.choice
        metadata = {"customer": pick(CUSTOMERS), "reference": f"PO-{index:07d}", "note": "quarterly invoices"}
        data: dict[str, Any] = {
            "workflow": pick(WORKFLOWS),
            "file": {"url": f"https://files.example.com/invoices/{index}.pdf"},
            "metadata": metadata,
            "tenant": pick(TENANT_CHOICES),
        }
        if watch:
            data["needs_review"] = "watch"
        return JobRequest.parse(data)

    def _in_flight(self, index: int) -> None:
        """Three in ten QUEUED (recorded by the producer), one in fifty SUBMITTING, the rest RUNNING."""
        job_id, request = str(uuid.uuid4()), self._request(index)
        enqueued = self._now - self._random.uniform(0, HOUR_S)
        if index % 10 < 3:
            self._store.create(job_id, request, now=enqueued, lease_s=self._lease_s, secrets=None)
        elif index % 50 == 3:
            _, token = self._store.create_locked(
                job_id, request, now=enqueued, lease_s=self._lease_s, secrets=None, lock_ttl_s=self._lock_s
            )
            self._store.unlock(job_id, token or "")
        else:
            record = self._submitted(job_id, request, enqueued)
            record.run_status = self._random.choice(["PENDING", "PROCESSING", "PROCESSING"])
            info = record.progress()
            result = self._publisher.encoded(job_id, info, JobState.RUNNING.value)
            event = job_event(record, state=JobState.RUNNING, status=record.run_status)
            self._store.note_run(record, due_at=self._now + 30, event=event, created=True, result=result)
            self.seeded.running_id = job_id
        self.seeded.in_flight += 1

    def _submitted(self, job_id: str, request: JobRequest, enqueued: float) -> JobRecord:
        """A job recorded and locked by the worker that takes it, with the run its create made."""
        _, token = self._store.create_locked(
            job_id, request, now=enqueued, lease_s=self._lease_s, secrets=None, lock_ttl_s=self._lock_s
        )
        record = new_record(job_id, request, now=enqueued, secrets=None)
        record.lock, record.aliases = JobLock(token or ""), []
        record.run_id, record.submitted_at = f"workflow_run_{uuid.uuid4().hex[:20]}", enqueued + 0.4
        record.state, record.fresh = JobState.RUNNING, False
        return record

    def _finished(self, index: int) -> None:
        outcome = self._random.choices(list(OUTCOMES), weights=list(OUTCOMES.values()))[0]
        watch = outcome == "NEEDS_REVIEW" and self.seeded.watched < WATCHED_MAX
        job_id, request = str(uuid.uuid4()), self._request(index, watch=watch)
        # One in ten finished in the last hour, the rest over the last day.
        ended = self._now - self._random.uniform(0, HOUR_S if index % 10 == 0 else DAY_S)
        record = self._submitted(job_id, request, ended - self._random.uniform(5, 240))
        record.checks = self._random.randint(1, 6)
        if outcome == "FAILURE":
            self._fail(record, ended)
        else:
            self._succeed(record, outcome, ended)
        self.seeded.outcomes[outcome] = self.seeded.outcomes.get(outcome, 0) + 1
        self.seeded.finished += 1

    def _succeed(self, record: JobRecord, status: str, now: float) -> None:
        """As `JobRunner._succeed` with no aliases: the run recorded, then finished with its result and usage."""
        assert record.run_id is not None and record.submitted_at is not None
        self._store.record_run(record.job_id, record.run_id, submitted_at=record.submitted_at)
        run = _run(record, status)
        record.run_status = status
        self._store.finish(
            record,
            now=now,
            state=JobState.SUCCESS,
            error="",
            event=job_event(record, state=JobState.SUCCESS, status=status),
            result=self._publisher.encoded(record.job_id, run, JobState.SUCCESS.value),
            usage=usage_note(run, workflow_id=record.request.workflow.id, now=now, tenant=record.request.tenant),
        )
        if review.watch(self._store, record, run, now):
            self.seeded.watched += 1
        if status == "PROCESSED":
            self.seeded.processed_id = record.job_id

    def _fail(self, record: JobRecord, now: float) -> None:
        """As `JobRunner._fail`: the error published to the result backend, then the job finished with its kind."""
        error = self._random.choice(ERRORS)
        if isinstance(error, RunRejected | AuthFailed):  # refused at create: no run
            record.run_id, record.submitted_at = None, None
        else:
            assert record.run_id is not None
            self._store.record_run(record.job_id, record.run_id, submitted_at=record.submitted_at or now)
            record.run_status = "PROCESSING"
        self._publisher.failure(record.job_id, error)
        event = job_event(record, state=JobState.FAILURE, status=record.run_status or "", error=error.kind)
        self._store.finish(record, now=now, state=JobState.FAILURE, error=error.kind, event=event)


def _run(record: JobRecord, status: str) -> dict[str, Any]:
    """A terminal workflow run as Extend returns it (the fields the job page shows), compact."""
    processed = status in ("PROCESSED", "NEEDS_REVIEW")
    value = {"invoice_number": record.request.metadata["reference"], "total": 120.0, "currency": "USD"}
    credits = 0.0 if status == "CANCELLED" else 2.0
    extract = {"object": "extract_run", "status": status, "output": {"value": value} if processed else None}
    return {
        "object": "workflow_run",
        "id": record.run_id,
        "status": status,
        "workflow": {"id": record.request.workflow.id},
        "metadata": record.request.run_metadata(record.job_id),
        "failureReason": "OCR_FAILED" if status == "FAILED" else None,
        "usage": {"credits": credits, "totalCredits": credits},
        "stepRuns": [{"object": "workflow_step_run", "status": status, "result": {"extractRun": extract}}],
    }
