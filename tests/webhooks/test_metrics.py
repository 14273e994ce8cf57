"""The receiver's GET /metrics: deliveries by type and outcome, the pool's gauges; served by `extendq webhooks`
from a sample directory it makes and removes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from extendq.config.settings import Settings
from extendq.tasks.celery import create_app as create_celery
from extendq.webhooks import create_app
from extendq.worker.store import open_store
from tests.conftest import clean_keys
from tests.support.asgi import served
from tests.support.receiver import ReceiverProcess
from tests.webhooks.test_receiver import SECRET, event_body, sign

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def deliveries(samples: Samples, event_type: str, outcome: str) -> float:
    key = ("extendq_webhook_deliveries_total", (("outcome", outcome), ("type", event_type)))
    return samples.get(key, 0.0)


def _app_client(settings: Settings) -> Iterator[httpx.Client]:
    app = create_app(settings, celery_app=create_celery(settings), store=open_store(settings))
    with served(app) as url, httpx.Client(base_url=url) as client:
        yield client


@pytest.fixture
def settings(module_redis_url: str) -> Settings:
    return Settings.from_env({"EXTENDQ_REDIS_URL": module_redis_url, "EXTENDQ_WEBHOOK_SECRETS": SECRET})


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    yield from _app_client(settings)


def test_deliveries_are_counted_by_type_and_outcome(client: httpx.Client) -> None:
    before = scrape(client)
    body = event_body("event_metrics")
    client.post("/webhooks/extend", content=body, headers=sign(body))
    client.post("/webhooks/extend", content=body, headers=sign(body))
    client.post("/webhooks/extend", content=body, headers=sign(body, "wss_not_ours"))
    after = scrape(client)
    for event_type, outcome in (
        ("workflow_run.completed", "accepted"),
        ("workflow_run.completed", "duplicate"),
        ("unverified", "refused_401"),
    ):
        assert deliveries(after, event_type, outcome) - deliveries(before, event_type, outcome) == 1
    assert after[("extendq_redis_up", ())] == 1 and ("extendq_jobs_in_flight", ()) in after


def test_metrics_route_can_be_turned_off(module_redis_url: str) -> None:
    settings = Settings.from_env({"EXTENDQ_REDIS_URL": module_redis_url, "EXTENDQ_WEBHOOK_METRICS": "false"})
    for client in _app_client(settings):
        assert client.get("/metrics").status_code == 404


def test_served_receiver_exports_from_its_sample_directory_and_removes_it(
    module_redis_url: str, tmp_path: Path
) -> None:
    env = {
        "EXTENDQ_REDIS_URL": module_redis_url,
        "EXTENDQ_WEBHOOK_SECRETS": SECRET,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    with ReceiverProcess(env) as receiver, httpx.Client(base_url=receiver.url) as client:
        body = event_body("event_served")
        assert client.post("/webhooks/extend", content=body, headers=sign(body, "wss_not_ours")).status_code == 401
        assert deliveries(scrape(client), "unverified", "refused_401") == 1
        assert [path.name.startswith("extendq-metrics-") for path in tmp_path.iterdir()] == [True]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(autouse=True)
def _no_leftover_queue(module_redis_url: str) -> Iterator[None]:
    yield
    client = redis.Redis.from_url(module_redis_url, decode_responses=True)
    clean_keys(client)  # the handed-on events and their guards; the database's claim stays
    client.close()
