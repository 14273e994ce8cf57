"""No secret lands anywhere: every path runs, then Redis, the logs, the results and the events stream are scanned.

The secrets are sentinels: the API key, a tenant's API key (one Extend refuses: its jobs fail 401), the webhook
signing secret, the secrets key and a per-run secret every job carries. The stack is real: the emulator accepts
the sentinel key and signs its webhooks with the sentinel secret, the receiver runs as in production, and two
workers log at DEBUG and share a Redis database of their own: one logs text and takes webhooks, the other logs
JSON and polls. Every path runs: runs processed, failed, to review, cancelled, past their deadline, refused by
Extend (404, 401), uploads, batches, creates meeting 5xx, 429 and dropped connections, bad input refused at
enqueue and by the worker, webhooks genuine, replayed and forged. Then every Redis key and value (the broker's
queues and bindings, results, the events stream), every log line and every result is searched for each sentinel,
raw and base64-encoded: none may be found. The scan is shown to find a canary planted in every kind of value,
and the sealed secrets Redis does hold are shown to open to the sentinel.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from extendq import tasks
from extendq.config.settings import Settings
from extendq.errors import AuthFailed, DeadlineExceeded, InvalidJobRequest, RunRejected
from extendq.tasks.bulk import submit_many
from extendq.tasks.celery import create_app as create_celery
from extendq.tasks.producer import RUN_WORKFLOW, build_request, enqueue
from extendq.worker.secrets import unseal
from extendq.worker.store import RedisJobStore, open_store
from tests.chaos.apps import close_app
from tests.chaos.leaks import LeakScan, plant
from tests.chaos.test_webhook_attacks import event, sign
from tests.e2e.test_pipeline import wait_for
from tests.support.emulator import EmulatorProcess
from tests.support.receiver import ReceiverProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_sentinel_api_key_5c1f0e9b"
TENANT_KEY = "sk_sentinel_tenant_key_a83d21"
WEBHOOK_SECRET = "wss_sentinel_webhook_secret_71be4c"
RUN_SECRET = "runsecret_sentinel_d90a6f"
SECRETS_KEY = base64.urlsafe_b64encode(b"sentinel-secrets-key-32-bytes!!!").decode()
SENTINELS = {
    "API key": API_KEY,
    "tenant API key": TENANT_KEY,
    "webhook secret": WEBHOOK_SECRET,
    "run secret": RUN_SECRET,
    "secrets key": SECRETS_KEY,
}
CANARY = "canary_sentinel_3e8f07"
TEXT_LOG, JSON_LOG = "worker, text", "worker, JSON"
TENANT = "sentinelco"
SECRETS = {"erp_token": RUN_SECRET}
UPLOAD = ROOT / "samples" / "invoices" / "acme-gmbh-inv-2026-0042.txt"
LONG = {"name": "A minute", "duration_s": [60.0, 60.0], "outcomes": {"PROCESSED": 1}}
PROFILE: dict[str, Any] = {"base": "fast", "workflows": {"workflow_long": LONG}, "seed": 23}
# Creates only (so each fault meets a job's submission): 5xx and 408, 429 with Retry-After, dropped connections.
STORM = {"error_rate": 0.3, "rate_limited_rate": 0.2, "retry_after_s": 1, "drop_rate": 0.2}
CREATE = "POST /workflow_runs"


@dataclass(frozen=True)
class JobPath:
    """One path a job takes: its request, and the run status or error type it must end with."""

    name: str
    request: dict[str, Any]
    ends: str | type[Exception]


PATHS = [
    JobPath("processed", {"workflow": "workflow_processed"}, "PROCESSED"),
    JobPath("failed", {"workflow": "workflow_failed"}, "FAILED"),
    JobPath("to review", {"workflow": "workflow_review"}, "NEEDS_REVIEW"),
    JobPath("uploaded file", {"workflow": "workflow_processed", "file": {"path": str(UPLOAD)}}, "PROCESSED"),
    JobPath(
        "keyed, with metadata",
        {"workflow": "workflow_processed", "job_key": "scan-1", "metadata": {"order": 1}},
        "PROCESSED",
    ),
    JobPath("unknown workflow", {"workflow": "workflow_nope"}, RunRejected),
    JobPath("tenant key refused (401)", {"workflow": "workflow_processed", "tenant": TENANT}, AuthFailed),
    JobPath("deadline passed", {"workflow": "workflow_long", "deadline_s": 1.0}, DeadlineExceeded),
    JobPath("cancelled", {"workflow": "workflow_long"}, "CANCELLED"),
]
REFUSALS: dict[str, dict[str, Any]] = {
    "file url not http(s)": {"file": {"url": "ftp://example.com/a.pdf"}},
    "secrets not JSON": {"secrets": {"erp_token": RUN_SECRET, "when": {RUN_SECRET}}},
    "secret in a job key": {"job_key": f"{RUN_SECRET} 2"},
    "secret in bad metadata": {"metadata": {"token": RUN_SECRET, "total": math.nan}},
    "secret as a workflow version": {"workflow": {"id": "workflow_processed", "version": RUN_SECRET * 4}},
}


@dataclass
class Stack:
    """The emulator, the receiver, two workers and a producer, on a Redis database of their own."""

    emulator: EmulatorProcess
    receiver: ReceiverProcess
    workers: dict[str, WorkerProcess]
    producer: Celery
    store: RedisJobStore
    redis: redis.Redis

    def submit(self, **request: Any) -> AsyncResult[Any]:
        request.setdefault("file", {"text": "Invoice #: 7\nTotal: 70.00"})
        built = build_request(secrets=SECRETS, secrets_key=SECRETS_KEY, **request)
        return enqueue(self.producer, built, store=self.store, lease_s=10)


@dataclass
class Observed:
    """What the paths came to, and what the scan read and found."""

    outcomes: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    refusals: dict[str, str] = field(default_factory=dict)
    webhook_answers: dict[str, int] = field(default_factory=dict)
    create_statuses: dict[str, int] = field(default_factory=dict)
    scan: LeakScan = field(default_factory=lambda: LeakScan(SENTINELS))
    logs: dict[str, str] = field(default_factory=dict)
    parked: str = ""


def environment(redis_url: str, emulator_url: str) -> dict[str, str]:
    """What every process of the pool is configured with: all the sentinels but the per-run secret."""
    return {
        "EXTENDQ_REDIS_URL": redis_url,
        "EXTENDQ_BASE_URL": emulator_url,
        "EXTEND_API_KEY": API_KEY,
        "EXTENDQ_TENANTS": json.dumps({TENANT: {"api_key": TENANT_KEY}}),
        "EXTENDQ_SECRETS_KEY": SECRETS_KEY,
        "EXTENDQ_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "EXTENDQ_RETRY_BUDGET": "30",
        "EXTENDQ_RETRY_BACKOFF_S": "0.2",
        "EXTENDQ_RETRY_BACKOFF_MAX_S": "1",
        "EXTENDQ_REQUEST_TIMEOUT_S": "5",
        "EXTENDQ_LANDING_WINDOW_S": "8",
        "EXTENDQ_FAST_POLL_INTERVAL_S": "0.3",
        # The most a log can say: every library's DEBUG records too.
        "EXTENDQ_LOG_LEVEL": "DEBUG",
    }


@pytest.fixture(scope="module")
def stack(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("secrets")
    db = claim_database(f"{redis_server_url}/0", owner=f"chaos-secrets-{uuid.uuid4().hex[:8]}")
    url = f"{redis_server_url}/{db}"
    env = {"EXTENDQ_REDIS_URL": url, "EXTENDQ_WEBHOOK_SECRETS": WEBHOOK_SECRET, "PROMETHEUS_MULTIPROC_DIR": str(logs)}
    env["EXTENDQ_LOG_LEVEL"] = "DEBUG"  # the receiver finishes jobs by webhook: the most its log can say, too
    try:
        with (
            ReceiverProcess(env, log_path=logs / "receiver.log") as receiver,
            EmulatorProcess(PROFILE, f"{receiver.url}/webhooks/extend", WEBHOOK_SECRET, (API_KEY,)) as emulator,
        ):
            pool = environment(url, emulator.url)
            workers = {
                TEXT_LOG: WorkerProcess({**pool, "EXTENDQ_WEBHOOKS_ENABLED": "true"}, log_path=logs / "text.log"),
                JSON_LOG: WorkerProcess({**pool, "EXTENDQ_LOG_FORMAT": "json"}, log_path=logs / "json.log"),
            }
            settings = Settings.from_env(pool)
            producer, store = create_celery(settings), open_store(settings)
            client = redis.Redis.from_url(url, decode_responses=True)
            try:
                for worker in workers.values():
                    worker.start()
                yield Stack(emulator, receiver, workers, producer, store, client)
            finally:
                for worker in workers.values():
                    worker.stop()
                close_app(producer)
                store.client.close()
                client.close()
    finally:
        release_database(f"{redis_server_url}/0", db)


# ---- the paths ---------------------------------------------------------------------------------------------


def outcome(job: AsyncResult[Any], timeout_s: float = 90.0) -> Any:
    """The run a job ended with, or the error it failed with."""
    try:
        return job.get(timeout=timeout_s)
    except Exception as exc:  # the job's typed failure: what the test compares
        return exc.with_traceback(None)  # its frames would keep the result subscribed until exit


def run_paths(stack: Stack, seen: Observed) -> AsyncResult[Any]:
    """Every job path at once; returns the job left running (its sealed secrets stay in Redis)."""
    jobs = {path.name: stack.submit(**path.request) for path in PATHS}
    running = stack.submit(workflow="workflow_long")
    by_name = stack.producer.send_task(
        RUN_WORKFLOW, kwargs={"workflow": "workflow_processed", "file": {"text": "x"}, "secrets": SECRETS}
    )
    batch = submit_many(
        workflow="workflow_processed",
        files=[{"text": "a"}, {"text": "b"}],
        app=stack.producer,
        secrets=SECRETS,
        secrets_key=SECRETS_KEY,
    )
    wait_for(lambda: {str(jobs["cancelled"].state), str(running.state)} == {"RUNNING"})  # a progress state
    assert tasks.cancel(jobs["cancelled"].id, app=stack.producer).get(timeout=15) is True
    jobs |= {"plaintext secrets by name": by_name, "batch 1": batch[0], "batch 2": batch[1]}
    for name, job in jobs.items():
        seen.jobs[name], seen.outcomes[name] = job.id, outcome(job)
    return running


def run_storm(stack: Stack, seen: Observed) -> None:
    """Jobs whose creates meet 5xx/408, 429 and dropped connections, in waves until each fault was met."""
    stack.emulator.set_profile({**PROFILE, "faults": {**STORM, "routes": [CREATE]}})
    try:
        for wave in range(4):
            jobs = [stack.submit(workflow="workflow_processed") for _ in range(3)]
            for index, job in enumerate(jobs):
                seen.jobs[f"storm {wave}.{index}"], seen.outcomes[f"storm {wave}.{index}"] = job.id, outcome(job)
            seen.create_statuses = stack.emulator.stats()["requests"].get(CREATE, {})
            if {"429", "dropped"} <= seen.create_statuses.keys() and errors(seen.create_statuses):
                return
    finally:
        stack.emulator.set_profile(PROFILE)


def errors(statuses: dict[str, int]) -> int:
    return sum(count for status, count in statuses.items() if status in ("500", "502", "503", "408"))


def refuse_at_enqueue(seen: Observed) -> None:
    """Bad requests carrying the run secret: each refused before anything is queued, its error kept."""
    for name, overrides in REFUSALS.items():
        request = {"workflow": "workflow_processed", "file": {"text": "x"}, "secrets": SECRETS, **overrides}
        with pytest.raises(InvalidJobRequest) as caught:
            build_request(secrets_key=SECRETS_KEY, **request)
        seen.refusals[name] = str(caught.value)


FORGERIES: dict[str, Callable[[bytes], dict[str, str]]] = {
    "signed with another secret": lambda body: sign(body, "wss_someone_elses_secret"),
    "signature of another body": lambda body: sign(body + b" ", WEBHOOK_SECRET),
    "stale timestamp": lambda body: sign(body, WEBHOOK_SECRET, ts=time.time() - 600),
    "no signature": lambda body: {},
}


def deliver_webhooks(stack: Stack, seen: Observed) -> None:
    """Forged deliveries (refused), and a genuine one for a run nobody knows, delivered twice."""
    body = event(f"event_{uuid.uuid4().hex}", run_id="workflow_run_unknown")
    with httpx.Client(base_url=stack.receiver.url, timeout=10) as client:
        for name, headers in FORGERIES.items():
            seen.webhook_answers[name] = client.post(
                "/webhooks/extend", content=body, headers=headers(body)
            ).status_code
        for name in ("genuine, unknown run", "genuine, replayed"):
            answer = client.post("/webhooks/extend", content=body, headers=sign(body, WEBHOOK_SECRET))
            seen.webhook_answers[name] = answer.status_code


def settle(stack: Stack, running: AsyncResult[Any]) -> None:
    """Wait until only the running job is in flight and the queues are empty, then stop the pool."""
    queues = ("extendq", "extendq.checks")
    wait_for(lambda: stack.store.in_flight() == 1 and not any(stack.redis.llen(queue) for queue in queues))
    assert stack.store.due_at(running.id) is not None
    for worker in stack.workers.values():
        worker.stop()


def park_a_job(stack: Stack) -> str:
    """A job queued while no worker runs: its message, sealed secrets and all, waits in the broker."""
    request = build_request(workflow="workflow_processed", file={"text": "x"}, secrets=SECRETS, secrets_key=SECRETS_KEY)
    return enqueue(stack.producer, request).id


def scan_everything(stack: Stack, seen: Observed) -> None:
    """Search Redis, every log and every result for the sentinels."""
    scan = seen.scan
    scan.redis(stack.redis)
    seen.logs = {name: worker.log_text() for name, worker in stack.workers.items()}
    seen.logs |= {"receiver": stack.receiver.log_text(), "emulator": stack.emulator.logs()}
    for name, text in seen.logs.items():
        scan.log(name, text)
    for name, job_id in seen.jobs.items():
        meta = stack.producer.backend.get_task_meta(job_id)
        scan.text(f"result of {name!r}", json.dumps(meta, default=repr), kind="results")
        scan.text(f"outcome of {name!r}", repr(seen.outcomes[name]), kind="results")
    for name, message in seen.refusals.items():
        scan.text(f"refusal {name!r}", message, kind="refusals at enqueue")


@pytest.fixture(scope="module")
def observed(stack: Stack) -> Observed:
    # Given a pool configured with the sentinels, and jobs carrying the per-run secret, down every path
    seen = Observed()
    refuse_at_enqueue(seen)
    running = run_paths(stack, seen)
    run_storm(stack, seen)
    deliver_webhooks(stack, seen)
    # When the pool has settled and stopped (one job still running, one waiting in the broker)
    settle(stack, running)
    seen.jobs["running"] = running.id
    seen.outcomes["running"] = running.state
    seen.parked = park_a_job(stack)
    # Then everything is read
    scan_everything(stack, seen)
    return seen


# ---- what must hold ----------------------------------------------------------------------------------------


def test_every_path_ran(observed: Observed, stack: Stack) -> None:
    for path in PATHS:
        ended = observed.outcomes[path.name]
        if isinstance(path.ends, str):
            assert isinstance(ended, dict) and ended["status"] == path.ends, (path.name, ended)
        else:
            assert isinstance(ended, path.ends), (path.name, ended)
    refused = observed.outcomes["plaintext secrets by name"]
    assert isinstance(refused, InvalidJobRequest) and "secrets" in str(refused)
    storm = [ended for name, ended in observed.outcomes.items() if name.startswith("storm")]
    assert storm and all(isinstance(ended, dict) and ended["status"] == "PROCESSED" for ended in storm), storm
    assert {"429", "dropped"} <= observed.create_statuses.keys() and errors(observed.create_statuses)
    assert [observed.outcomes[f"batch {i}"]["status"] for i in (1, 2)] == ["PROCESSED", "PROCESSED"]
    assert observed.outcomes["running"] == "RUNNING"
    assert len(observed.refusals) == len(REFUSALS)
    # Webhooks: forgeries refused, the genuine event taken once; the emulator's own deliveries were taken too
    assert {name: observed.webhook_answers[name] for name in FORGERIES} == dict.fromkeys(FORGERIES, 401)
    assert observed.webhook_answers["genuine, unknown run"] == observed.webhook_answers["genuine, replayed"] == 200
    taken = [delivery for delivery in stack.emulator.webhooks() if delivery["statusCode"] == 200]
    assert len(taken) >= 10
    counters = stack.redis.hgetall("extendq:counters")
    assert int(counters["webhook_applied"]) >= 1 and int(counters["webhook_redelivered"]) >= 1


def test_no_secret_in_redis_logs_results_or_events(observed: Observed) -> None:
    scan = observed.scan
    print(f"\nscanned for {len(SENTINELS)} sentinels, raw and base64-encoded:\n{scan.summary()}")
    print(f"  creates under injected faults: {observed.create_statuses}")
    assert scan.hits == []
    # Not a vacuous scan: a busy database, every log written to, every job's result read
    assert scan.read["redis keys"] >= 30 and scan.read["redis stream values"] >= 20
    assert scan.read["results"] == 2 * len(observed.jobs)
    for name in observed.logs:
        assert scan.read[f"log lines ({name})"] >= 1, name
    # (at DEBUG: the text worker's Celery lines, and the receiver's own about the jobs it finished by webhook)
    assert " DEBUG celery." in observed.logs[TEXT_LOG]
    assert " DEBUG extendq." in observed.logs["receiver"]
    assert '"level": "DEBUG", "logger": "celery.' in observed.logs[JSON_LOG]
    assert '"logger": "extendq.jobs"' in observed.logs[JSON_LOG]
    assert observed.logs["receiver"].count("webhook refused (401)") == len(FORGERIES)


def test_the_secrets_redis_holds_are_sealed(observed: Observed, stack: Stack) -> None:
    # The running job's record and the waiting message hold the per-run secret, sealed: it opens to the sentinel
    record = stack.store.load(observed.jobs["running"])
    assert record is not None and record.secrets is not None
    assert unseal(record.secrets, SECRETS_KEY) == SECRETS
    (message,) = [json.loads(raw) for raw in stack.redis.lrange("extendq", 0, -1)]
    _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert message["headers"]["id"] == observed.parked
    assert unseal(kwargs["secrets"], SECRETS_KEY) == SECRETS


def test_the_scan_finds_a_canary_planted_in_every_kind_of_value(stack: Stack) -> None:
    # Given the canary in a key name and in each type of value, raw or base64 inside a broker envelope
    planted = plant(stack.redis, CANARY)
    try:
        # When the database is scanned for it
        scan = LeakScan({"canary": CANARY})
        scan.redis(stack.redis)
        # Then it is found in every one
        found = [key for key in planted if any(repr(key) in hit.where for hit in scan.hits)]
        assert found == planted
    finally:
        stack.redis.delete(*planted)
