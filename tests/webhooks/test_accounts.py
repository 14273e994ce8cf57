"""Each tenant's webhooks verify with its own secrets; an event for a run unknown here with any account's."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from extendq.config.settings import Settings
from extendq.webhooks.accounts import SigningSecrets
from extendq.webhooks.verify import Refusal, verified_event
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest
from extendq.worker.store import RedisJobStore
from tests.webhooks.test_receiver import sign

POOL, ACME, GLOBEX = "wss_pool_secret", "wss_acme_secret", "wss_globex_secret"


@pytest.fixture
def secrets() -> SigningSecrets:
    tenants = {
        "acme": {"api_key": "sk_a", "webhook_secrets": [ACME]},
        "globex": {"api_key": "sk_g", "webhook_secrets": f"{GLOBEX}, wss_globex_old"},
        "initech": {"api_key": "sk_i"},
    }
    settings = Settings.from_env({"EXTENDQ_WEBHOOK_SECRETS": POOL, "EXTENDQ_TENANTS": json.dumps(tenants)})
    return SigningSecrets.from_settings(settings)


@pytest.fixture
def store(redis_client: redis.Redis) -> RedisJobStore:
    """Jobs of acme, initech and the default account with runs recorded; globex's job with its run not yet known."""
    store = RedisJobStore(redis_client, keys=Keys("extendq:"), result_ttl_s=600)
    for job_id, tenant in (("j-acme", "acme"), ("j-initech", "initech"), ("j-default", None), ("j-globex", "globex")):
        extra = {"tenant": tenant} if tenant else {}
        request = JobRequest.parse({"workflow": "w", "file": {"id": "f"}, **extra})
        store.create(job_id, request, now=time.time(), lease_s=60, secrets=None)
        if job_id != "j-globex":
            store.record_run(job_id, f"run-{job_id}", submitted_at=time.time())
    return store


def body(run_id: str, job_id: str | None = None) -> bytes:
    run: dict[str, Any] = {
        "id": run_id,
        "status": "PROCESSED",
        "metadata": {"extendq:job_id": job_id} if job_id else {},
    }
    return json.dumps({"eventId": f"e-{run_id}", "eventType": "workflow_run.completed", "payload": run}).encode()


@pytest.mark.parametrize(
    ("delivery", "expected"),
    [
        (body("run-j-acme"), [ACME]),
        (body("run-j-default"), [POOL]),
        (body("run-new", "j-globex"), [GLOBEX, "wss_globex_old"]),  # a batch run not recorded yet: its metadata
        (body("run-j-initech"), [POOL]),  # a tenant with no secrets of its own: the pool's
        (body("run-unknown"), [POOL, ACME, GLOBEX, "wss_globex_old"]),
        (b"not json", [POOL, ACME, GLOBEX, "wss_globex_old"]),
    ],
)
def test_a_delivery_verifies_with_the_secrets_of_its_runs_account(
    secrets: SigningSecrets, store: RedisJobStore, delivery: bytes, expected: list[str]
) -> None:
    assert secrets.for_delivery(delivery, store) == expected


def test_a_tenants_event_signed_with_another_tenants_secret_is_refused(
    secrets: SigningSecrets, store: RedisJobStore
) -> None:
    delivery = body("run-j-acme")
    allowed = secrets.for_delivery(delivery, store)
    assert verified_event(delivery, sign(delivery, ACME), secrets=allowed, max_age_s=300)["eventId"] == "e-run-j-acme"
    for other in (GLOBEX, POOL):
        with pytest.raises(Refusal) as refused:
            verified_event(delivery, sign(delivery, other), secrets=allowed, max_age_s=300)
        assert refused.value.status == 401
    # An event for a run unknown here is taken with any account's secret
    unknown = body("run-unknown")
    verified_event(unknown, sign(unknown, GLOBEX), secrets=secrets.for_delivery(unknown, store), max_age_s=300)


def test_without_tenant_secrets_the_pools_verify_every_event(store: RedisJobStore) -> None:
    secrets = SigningSecrets.from_settings(Settings.from_env({"EXTENDQ_WEBHOOK_SECRETS": f"{POOL},wss_b"}))
    assert secrets.for_delivery(body("run-j-acme"), store) == [POOL, "wss_b"]
