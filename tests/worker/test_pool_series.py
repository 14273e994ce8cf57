"""The pool over time (`worker.pool_series`): finished per minute by outcome, in-flight ages, time to result and
requests granted per second, read from jobs and limits put in place on a real Redis."""

from __future__ import annotations

import random
import time

import pytest
import redis

from extendq.worker.keys import Keys
from extendq.worker.pool_series import AGE_LABELS, PoolSeries
from extendq.worker.ratelimit import Bucket, Limits, RateLimiter
from extendq.worker.store import RedisJobStore
from tests.support.jobs import finished_job, in_flight_job

KEYS = Keys("extendq:")
NOW = 1_800_000_030.0  # 30 s into a minute (1_800_000_000 is a whole minute)


@pytest.fixture
def store(redis_client: redis.Redis) -> RedisJobStore:
    return RedisJobStore(redis_client, keys=KEYS, result_ttl_s=86_400)


def _series(store: RedisJobStore, **options: object) -> PoolSeries:
    return PoolSeries(store=store, limiters={}, clock=lambda: NOW, **options)  # type: ignore[arg-type]


def test_finished_jobs_are_counted_per_minute_by_outcome(store: RedisJobStore) -> None:
    # Given jobs finished in this minute, the one before, the first of the hour shown, and before it
    finished_job(store, "now-ok-1", at=NOW - 1)
    finished_job(store, "now-ok-2", at=NOW - 30)  # the minute's first second
    finished_job(store, "now-failed", at=NOW, outcome="FAILED")
    finished_job(store, "before-failed", at=NOW - 31, outcome="FAILED")  # the last second of the minute before
    finished_job(store, "before-refused", at=NOW - 60, outcome="FAILURE")
    finished_job(store, "first-review", at=NOW - 59 * 60, outcome="NEEDS_REVIEW")
    finished_job(store, "too-old", at=NOW - 60 * 60, outcome="NEEDS_REVIEW")
    # When the series is read
    read = _series(store).read()
    per_minute = read["finished_per_minute"]
    outcomes = per_minute["outcomes"]
    # Then 60 minutes are shown, the last the current one, each counting its jobs by outcome
    starts = per_minute["minute_starts"]
    assert len(starts) == 60 and starts[-1] == NOW - 30 and starts[0] == NOW - 30 - 59 * 60
    assert [starts[i + 1] - starts[i] for i in range(59)] == [60] * 59
    assert (outcomes["PROCESSED"][-1], outcomes["FAILED"][-1]) == (2, 1)
    assert (outcomes["FAILED"][-2], outcomes["FAILURE"][-2]) == (1, 1)
    assert outcomes["NEEDS_REVIEW"][0] == 1
    assert read["finished_last_hour"] == {
        "PROCESSED": 2,
        "FAILED": 2,
        "FAILURE": 1,
        "CANCELLED": 0,
        "NEEDS_REVIEW": 1,
        "REJECTED": 0,
    }
    assert sum(sum(counts) for counts in outcomes.values()) == 6


def test_a_shorter_span_counts_only_its_minutes(store: RedisJobStore) -> None:
    finished_job(store, "now", at=NOW, outcome="CANCELLED")
    finished_job(store, "ten-minutes-ago", at=NOW - 600, outcome="CANCELLED")
    counts = _series(store, minutes=5).finished_per_minute(NOW)["outcomes"]["CANCELLED"]
    assert counts == [0, 0, 0, 0, 1]


def test_jobs_in_flight_are_bucketed_by_how_long_ago_they_were_enqueued(store: RedisJobStore) -> None:
    # Given jobs enqueued 10 s, 59 s, exactly 60 s, 5 min, 30 min, 2 h and 2 days ago, and a finished one
    for job_id, age_s in (("a", 10), ("b", 59), ("c", 60), ("d", 300), ("e", 1800), ("f", 7200), ("g", 172_800)):
        in_flight_job(store, job_id, at=NOW - age_s)
    finished_job(store, "done", at=NOW - 5)
    # When the ages are read
    ages = _series(store).in_flight_ages(NOW)
    # Then each job counts in one bucket (a bucket's upper bound is its own), the finished one in none
    assert ages == [
        {"age": AGE_LABELS[0], "jobs": 2},
        {"age": AGE_LABELS[1], "jobs": 2},
        {"age": AGE_LABELS[2], "jobs": 1},
        {"age": AGE_LABELS[3], "jobs": 1},
        {"age": AGE_LABELS[4], "jobs": 1},
    ]


def test_time_to_result_percentiles_come_from_recent_events(store: RedisJobStore, redis_client: redis.Redis) -> None:
    # Given an old event outside the window, then 100 recent finishes taking 1 .. 100 s each, in no order,
    # and events that carry no time to result
    now = time.time()
    old_ms = int((now - 3600) * 1000)
    redis_client.xadd(KEYS.events, {"job_id": "old", "state": "SUCCESS", "to_result_s": "9999"}, id=f"{old_ms}-0")
    values = list(range(1, 101))
    random.Random(7).shuffle(values)
    for i, value in enumerate(values):
        store.emit({"job_id": f"job-{i}", "state": "SUCCESS", "to_result_s": str(value)})
        if i % 10 == 0:
            store.emit({"job_id": f"job-{i}", "state": "RUNNING", "status": "PROCESSING"})
    # When the percentiles over the last 15 minutes are read
    latency = PoolSeries(store=store, limiters={}, clock=lambda: now).time_to_result(now)
    # Then they are the nearest-rank percentiles of the 100 recent ones
    assert latency == {"window_s": 900.0, "count": 100, "percentiles_s": {"p50": 50.0, "p95": 95.0, "p99": 99.0}}


def test_time_to_result_reads_no_more_events_than_asked(store: RedisJobStore) -> None:
    now = time.time()
    for value in (5, 1, 2, 3):  # the newest three: 1, 2, 3
        store.emit({"job_id": "j", "state": "SUCCESS", "to_result_s": str(value)})
    latency = PoolSeries(store=store, limiters={}, latency_events=3).time_to_result(now)
    assert latency["count"] == 3 and latency["percentiles_s"]["p99"] == 3.0


def test_no_finished_job_has_no_percentiles(store: RedisJobStore) -> None:
    assert _series(store).time_to_result(time.time()) == {"window_s": 900.0, "count": 0, "percentiles_s": {}}


def test_requests_granted_each_second_are_shown_with_the_limit(store: RedisJobStore, redis_client: redis.Redis) -> None:
    # Given a limit of 10 requests a second that lets 10 go at once, 7 requests granted, a count older than the
    # chart and a limiter of another scope with its own grants
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=10, burst=10))
    other = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=25, burst=10), scope="tenant:acme")
    for _ in range(7):
        assert limiter.reserve(Bucket.REQUESTS).now
    other.reserve(Bucket.REQUESTS)
    old = int(limiter.server_time()) - 200
    redis_client.hset(KEYS.limit("default", "granted"), str(old), "50")
    # When the requests series is read for the last two minutes
    series = PoolSeries(store=store, limiters={"default": limiter, "tenant:acme": other}).read()["requests"]
    shown = series["default"]
    # Then every second of the window is shown, ending now, with the 7 grants and the plan's limit
    now = int(limiter.server_time())
    assert shown["limit_per_s"] == 10
    assert len(shown["seconds"]) == 120 and now - 1 <= shown["seconds"][-1] <= now
    assert shown["seconds"] == list(range(shown["seconds"][0], shown["seconds"][0] + 120))
    assert sum(shown["granted"]) == 7 and old not in shown["seconds"]
    assert sum(series["tenant:acme"]["granted"]) == 1 and series["tenant:acme"]["limit_per_s"] == 25


def test_a_call_that_spends_no_request_token_is_not_counted(store: RedisJobStore, redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=10, runs_per_minute=80, burst=5))
    limiter.reserve(Bucket.RUNS)
    limiter.reserve(Bucket.RUNS)
    assert limiter.reserve(Bucket.REQUESTS).now
    assert sum(PoolSeries(store=store, limiters={"default": limiter}).requests(limiter)["granted"]) == 1
