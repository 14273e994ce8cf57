"""Every feature for every account: two tenants, each an emulator of its own (its key, its rate limit), in one pool.

One worker serves both tenants with list sweeps on (`EXTENDQ_SWEEP=on`); the default account has an emulator of its
own, so that each tenant's emulator sees that tenant's requests only. Each test reads the emulators' request logs
(their admin API) and counts: fetches per job, batch posts, 429s, whose runs each account holds.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import redis

from extendq.config.beat import FOLLOW_REVIEWS
from extendq.emulator.webhooks import signed_headers
from extendq.tasks.bulk import enqueue_many
from extendq.tasks.producer import build_request, enqueue
from extendq.webhooks.app import create_app as create_receiver
from tests.conftest import clean_keys
from tests.e2e.conftest import API_KEY, PROFILE
from tests.support.accounts import Accounts, accounts_env
from tests.support.asgi import served
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

pytestmark = pytest.mark.e2e

TENANTS = ("a", "b")
KEYS = {"a": "sk_test_TENANTS_A_51c2", "b": "sk_test_TENANTS_B_8e04"}
LIMITS = {"a": 10, "b": 20}  # requests per second, of each account and of its tenant's budget in the pool
SECRETS = {"a": "wss_tenant_a_secret", "b": "wss_tenant_b_secret"}
WAIT_S = 50.0
FETCH = "GET /workflow_runs/{id}"


def _profile(requests_per_second: int | None) -> dict[str, Any]:
    limit = {"requests_per_second": requests_per_second} if requests_per_second else None
    return {**PROFILE, "rate_limit": limit}


@pytest.fixture(scope="module")
def pool(redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Accounts]:
    db = claim_database(f"{redis_server_url}/0", owner=f"tenants-e2e-{time.time()}")
    logs = tmp_path_factory.mktemp("tenants")
    with ExitStack() as started:
        emulators = {"default": started.enter_context(EmulatorProcess(profile=_profile(None), api_keys=(API_KEY,)))}
        for name in TENANTS:
            process = EmulatorProcess(profile=_profile(LIMITS[name]), api_keys=(KEYS[name],))
            emulators[name] = started.enter_context(process)
        tenants = {
            name: {
                "api_key": KEYS[name],
                "base_url": emulators[name].url,
                "rate_limit_requests_per_second": LIMITS[name],
                "webhook_secrets": [SECRETS[name]],
            }
            for name in TENANTS
        }
        env = accounts_env(
            f"{redis_server_url}/{db}",
            emulators,
            tenants,
            EXTENDQ_SWEEP="on",
            EXTENDQ_REVIEW_INTERVAL_S="1",
            EXTENDQ_WEBHOOK_SECRETS="wss_default_account_secret",
        )
        started.enter_context(WorkerProcess(env, log_path=logs / "worker.log", concurrency=4))
        yield Accounts(env, emulators)
    release_database(f"{redis_server_url}/0", db)


@pytest.fixture
def accounts(pool: Accounts) -> Accounts:
    for name, emulator in pool.emulators.items():
        emulator.set_profile(_profile(LIMITS.get(name)))
        emulator.reset()
    clean_keys(pool.redis, ("extendq", "celery-task-meta-"))
    return pool


def _assert_each_account_served_its_own(accounts: Accounts, jobs: dict[str, list[Any]], runs: dict[str, Any]) -> None:
    """Each tenant's emulator holds one run per job of that tenant and no other; about one fetch per job; no 429."""
    for name in TENANTS:
        ids = [job.id for job in jobs[name]]
        assert accounts.job_ids(name) == Counter(ids), f"tenant {name}: runs of other jobs, or a job run twice"
        assert {run["status"] for run in runs[name]} == {"PROCESSED"}
        requests = accounts.requests(name)
        fetches = sum(n for (route, _), n in requests.items() if route == FETCH)
        assert fetches <= 1.5 * len(ids), f"tenant {name}: {fetches} fetches for {len(ids)} jobs"
        densest = _densest(accounts.emulators[name].requests())
        assert not [key for key in requests if key[1] != 200], f"tenant {name}: {requests}, {densest}/s at most"
    assert accounts.requests("default")[("POST /workflow_runs", 200)] == 0
    assert not accounts.emulators["default"].runs()


def _densest(log: list[dict[str, Any]]) -> int:
    """The most requests that arrived within one second."""
    times = sorted(float(r["at"]) for r in log)
    start, most = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_each_tenants_jobs_finish_on_its_own_account_with_about_one_fetch_each(accounts: Accounts) -> None:
    # Given 60 jobs of each tenant, sent one by one, with sweeps on
    jobs = {
        name: [enqueue(accounts.producer, build_request(workflow="workflow_processed", file={"text": f"{name} {i}"},
                                                         tenant=name)) for i in range(60)]
        for name in TENANTS
    }  # fmt: skip
    # When they finish
    runs = {name: [job.get(timeout=WAIT_S) for job in jobs[name]] for name in TENANTS}
    # Then each account made its own tenant's runs only, each fetched about once, and refused nothing
    _assert_each_account_served_its_own(accounts, jobs, runs)


def test_a_batch_of_50_files_per_tenant_goes_in_one_batch_request_each(accounts: Accounts) -> None:
    # Given 50 files for each tenant
    files = [{"text": f"Invoice #: {i}\nTotal: {i}.00", "name": f"inv-{i}.txt"} for i in range(50)]
    # (what `submit_many(..., tenant=name)` queues, in a process whose own settings name no tenant)
    jobs = {
        name: enqueue_many(
            accounts.producer, [build_request(workflow="workflow_processed", file=f, tenant=name) for f in files]
        )
        for name in TENANTS
    }
    # When they finish
    runs = {name: [job.get(timeout=WAIT_S) for job in jobs[name]] for name in TENANTS}
    # Then each tenant's files went to its own account in one batch request, and each job got its own run
    for name in TENANTS:
        assert accounts.requests(name)[("POST /workflow_runs/batch", 200)] == 1
        assert [run["metadata"]["extendq:job_id"] for run in runs[name]] == [job.id for job in jobs[name]]
    _assert_each_account_served_its_own(accounts, jobs, runs)


def test_a_watched_review_of_each_tenant_publishes_its_later_outcome(accounts: Accounts) -> None:
    # Given a watched job of each tenant whose run ended NEEDS_REVIEW
    jobs = {
        name: enqueue(accounts.producer, build_request(workflow="workflow_review", file={"text": name}, tenant=name,
                                                        needs_review="watch"))
        for name in TENANTS
    }  # fmt: skip
    runs = {name: job.get(timeout=WAIT_S) for name, job in jobs.items()}
    assert {run["status"] for run in runs.values()} == {"NEEDS_REVIEW"}
    # When a reviewer approves a's run and rejects b's, each in its own account
    accounts.emulators["a"].review(runs["a"]["id"], "approve")
    accounts.emulators["b"].review(runs["b"]["id"], "reject", note="wrong vendor")
    # Then each job's later outcome is published (a REVIEWED event), looked up on its own account
    expected = {jobs["a"].id: ("PROCESSED", runs["a"]["id"]), jobs["b"].id: ("REJECTED", runs["b"]["id"])}
    deadline = time.monotonic() + WAIT_S
    while _reviewed(accounts.redis) != expected and time.monotonic() < deadline:
        accounts.producer.send_task(FOLLOW_REVIEWS)  # what beat sends every minute
        time.sleep(1.0)
    assert _reviewed(accounts.redis) == expected
    for name in TENANTS:
        assert accounts.job_ids(name) == Counter([jobs[name].id])
        assert not [key for key in accounts.requests(name) if key[1] != 200]


def _reviewed(client: redis.Redis) -> dict[str, tuple[str, str]]:
    events = [fields for _, fields in client.xrange("extendq:events") if fields["state"] == "REVIEWED"]
    return {event["job_id"]: (event["status"], event["run_id"]) for event in events}


def test_webhooks_verify_with_the_secret_of_the_tenant_that_owns_the_run(accounts: Accounts) -> None:
    # Given a finished job of each tenant, and the webhook receiver of the pool
    jobs = {
        name: enqueue(accounts.producer, build_request(workflow="workflow_processed", file={"text": name}, tenant=name))
        for name in TENANTS
    }
    runs = {name: job.get(timeout=WAIT_S) for name, job in jobs.items()}
    receiver = create_receiver(accounts.settings, celery_app=accounts.producer)
    with served(receiver) as url, httpx.Client(base_url=url, timeout=10) as client:

        def deliver(name: str, secret: str) -> int:
            event = {"eventId": f"evt-{name}-{secret}", "eventType": "workflow_run.completed", "payload": runs[name]}
            body = json.dumps(event).encode()
            headers = signed_headers(secret, body, time.time())
            return client.post("/webhooks/extend", content=body, headers=headers).status_code

        # When each tenant's run's event comes signed with its own tenant's secret, and with the other tenant's
        answers = {(name, signer): deliver(name, SECRETS[signer]) for name in TENANTS for signer in TENANTS}
    # Then its own is accepted and the other's refused
    assert answers == {("a", "a"): 200, ("a", "b"): 401, ("b", "a"): 401, ("b", "b"): 200}
