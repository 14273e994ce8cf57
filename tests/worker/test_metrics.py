"""Metrics: Extend endpoints are named by route template, the pool's gauges come from Redis and heal, a job is
counted as enqueued once, and recording never fails the caller."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from extendq.config.metrics import disable_multiprocess, enable_multiprocess, multiprocess_dir
from extendq.worker import metrics
from extendq.worker.extend import CountedTransport, endpoint_of
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.records import JobRecord
from extendq.worker.store import RedisJobStore

KEYS = Keys("extendq-metrics-test:")  # not the pool's prefix: a session worker's dispatcher would claim these entries


def samples(registry: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.exposition(registry)  # type: ignore[arg-type]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("POST", "/workflow_runs", "POST /workflow_runs"),
        ("GET", "/workflow_runs", "GET /workflow_runs"),
        ("POST", "/workflow_runs/batch", "POST /workflow_runs/batch"),
        ("GET", "/workflow_runs/workflow_run_abc", "GET /workflow_runs/{id}"),
        ("POST", "/workflow_runs/workflow_run_abc/cancel", "POST /workflow_runs/{id}/cancel"),
        ("POST", "/files/upload", "POST /files/upload"),
        ("GET", "/v1/proxy/workflow_runs/workflow_run_abc", "GET /workflow_runs/{id}"),
        ("GET", "/something/else", "GET other"),
    ],
)
def test_endpoint_is_the_route_template(method: str, path: str, endpoint: str) -> None:
    assert endpoint_of(method, path) == endpoint


def test_transport_counts_answers_and_failures_by_endpoint() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/cancel"):
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(429 if request.method == "POST" else 200, json={})

    before = samples(metrics.scrape_registry())
    with httpx.Client(transport=CountedTransport(httpx.MockTransport(answer)), base_url="http://x") as client:
        client.get("/workflow_runs/workflow_run_1")
        client.post("/workflow_runs", json={})
        with pytest.raises(httpx.ConnectError):
            client.post("/workflow_runs/workflow_run_1/cancel")
    after = samples(metrics.scrape_registry())

    def grown(endpoint: str, status: str) -> float:
        key = ("extendq_extend_requests_total", (("endpoint", endpoint), ("status", status), ("tenant", "default")))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grown("GET /workflow_runs/{id}", "200") == 1
    assert grown("POST /workflow_runs", "429") == 1
    assert grown("POST /workflow_runs/{id}/cancel", "error") == 1


def _record(job_id: str, enqueued_at: float) -> JobRecord:
    request = JobRequest.parse({"workflow": "workflow_metrics", "file": {"text": "x"}})
    return JobRecord(job_id=job_id, request=request, state=JobState.QUEUED, enqueued_at=enqueued_at)


def test_pool_gauges_come_from_redis_and_a_stale_entry_heals(redis_client: redis.Redis) -> None:
    # Given two jobs in flight, enqueued 60 s and 10 s ago, one due 5 s ago, and one stale entry
    now = time.time()
    store = RedisJobStore(redis_client, keys=KEYS, result_ttl_s=60)
    redis_client.zadd(KEYS.due, {"old": now - 5, "new": now + 30})
    for job_id, age in (("gone", 600), ("old", 60), ("new", 10)):
        assert metrics.job_enqueued(store, _record(job_id, now - age))
    redis_client.rpush("extendq-test.metrics-queue", "m1", "m2")
    collector = metrics.PoolCollector(
        redis_client, keys=KEYS, broker=redis_client, queues=("extendq-test.metrics-queue",)
    )
    # When it is scraped
    got = samples(metrics.scrape_registry(collector))
    # Then the gauges are the pool's; the entry of a job no longer in flight was dropped
    assert got[("extendq_jobs_in_flight", ())] == 2
    assert got[("extendq_oldest_job_in_flight_seconds", ())] == pytest.approx(60, abs=2)
    assert got[("extendq_dispatch_lag_seconds", ())] == pytest.approx(5, abs=2)
    assert got[("extendq_queue_length", (("queue", "extendq-test.metrics-queue"),))] == 2
    assert redis_client.zscore(KEYS.in_flight, "gone") is None
    redis_client.delete("extendq-test.metrics-queue")


def test_a_job_is_counted_enqueued_once_and_leaves_when_it_finishes(redis_client: redis.Redis) -> None:
    store = RedisJobStore(redis_client, keys=KEYS, result_ttl_s=60)
    record = _record("job-once", time.time())
    before = samples(metrics.scrape_registry())
    assert metrics.job_enqueued(store, record) is True
    assert metrics.job_enqueued(store, record) is False  # a redelivery, or a producer-recorded job seen again
    metrics.job_finished(record, {"status": "PROCESSED", "usage": {"credits": 2.5}}, time.time(), via="check")
    store.finish(record, now=time.time(), state=JobState.SUCCESS, error="", event={"job_id": record.job_id})
    after = samples(metrics.scrape_registry())
    key = ("extendq_jobs_enqueued_total", (("tenant", "default"), ("workflow", "workflow_metrics")))
    assert after[key] - before.get(key, 0.0) == 1
    assert redis_client.zscore(KEYS.in_flight, "job-once") is None


def test_job_metrics_break_down_by_tenant_within_the_configured_ones() -> None:
    # Given a process configured with tenant acme, and finished jobs of acme, of the default account and of a
    # tenant it does not know
    metrics.configure(multiprocess_dir=None, tenants=["acme"])
    try:
        before = samples(metrics.scrape_registry())
        for tenant in ("acme", None, "stranger-1", "stranger-2"):
            record = _record("job-t", time.time())
            record.request = record.request.model_copy(update={"tenant": tenant})
            metrics.job_finished(record, {"status": "PROCESSED", "usage": {"credits": 1.0}}, time.time(), via="check")
        after = samples(metrics.scrape_registry())
    finally:
        metrics.configure(multiprocess_dir=None)

    def grown(tenant: str) -> float:
        key = (
            "extendq_jobs_finished_total",
            (("status", "PROCESSED"), ("tenant", tenant), ("workflow", "workflow_metrics")),
        )
        return after.get(key, 0.0) - before.get(key, 0.0)

    # Then each account has its own series, and the tenants nobody configured share one: the label stays bounded
    assert (grown("acme"), grown("default"), grown("unknown")) == (1, 1, 2)
    assert not [labels for _, labels in after if ("tenant", "stranger-1") in labels]


def test_recording_never_raises_when_redis_is_gone() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    store = RedisJobStore(dead, keys=KEYS, result_ttl_s=60)
    record = _record("job-x", time.time())
    assert metrics.job_enqueued(store, record) is False
    metrics.job_finished(record, {"status": "PROCESSED"}, time.time(), via="check")
    metrics.job_failed(record, "rejected", time.time())
    got = samples(metrics.scrape_registry(metrics.PoolCollector(dead, keys=KEYS)))
    assert got[("extendq_redis_up", ())] == 0


def test_multiprocess_directory_is_made_fresh_and_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    path = enable_multiprocess()
    try:
        assert multiprocess_dir() == path and path.startswith(str(tmp_path)) and path != str(tmp_path)
    finally:
        disable_multiprocess()
    assert not Path(path).exists()


def test_a_scrape_skips_a_pool_process_file_not_yet_sized(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given multiprocess recording with one job failed, and a new pool process's file created but still empty
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    path = enable_multiprocess()
    metrics.configure(multiprocess_dir=path)
    try:
        metrics.job_failed(_record("job-y", time.time()), "rejected", time.time())
        (Path(path) / "counter_999999.db").touch()
        # When the endpoint is scraped, then it answers with the recorded sample
        got = samples(metrics.scrape_registry())
    finally:
        disable_multiprocess()
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        metrics.configure(multiprocess_dir=None)  # the library's value class follows the environment: in memory
    failed = {labels: value for (name, labels), value in got.items() if name == "extendq_jobs_failed_total"}
    assert sum(failed.values()) == 1, got
