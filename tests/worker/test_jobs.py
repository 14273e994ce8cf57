"""The job runner under the shared rate limit: the lookup after a create whose answer was lost, on a real Redis."""

from __future__ import annotations

import time
from typing import Any

import redis

from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.ratelimit import Bucket, Limits, RateLimiter
from extendq.worker.store import RedisJobStore
from tests.support.fakes import FakeApi, Results

KEYS = Keys("extendq-jobs:")


class ListingApi(FakeApi):
    """A fake Extend whose run listing has `pages` pages (none of them holding the job's run)."""

    def __init__(self, pages: int) -> None:
        super().__init__()
        self.pages = pages

    def list_runs(self, **params: Any) -> dict[str, Any]:
        self.calls.append("list")
        page = int(params.get("nextPageToken") or 0) + 1
        return {"data": [], "nextPageToken": str(page) if page < self.pages else None}


def runner_with_a_job(client: redis.Redis, api: FakeApi) -> JobRunner:
    """A runner held to 10 requests per second (and no runs per minute), and job-1, not submitted yet."""
    store = RedisJobStore(client, keys=KEYS, result_ttl_s=60)
    limiter = RateLimiter(client, keys=KEYS, limits=Limits(requests_per_second=10))
    now = time.time()
    store.create(
        "job-1",
        JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}}),
        now=now,
        lease_s=1,
        secrets=None,
    )
    return JobRunner(api=api, store=store, publisher=Results(), limiter=limiter, landing_window_s=2)


def runner_after_a_lost_create(client: redis.Redis, api: FakeApi) -> JobRunner:
    """The same, with job-1's first POST 5 s ago, its answer lost (and its landing window of 2 s over)."""
    runner = runner_with_a_job(client, api)
    runner.store.update("job-1", posting_since=time.time() - 5, state=JobState.SUBMITTING.value)
    return runner


def advance_when_due(runner: JobRunner) -> None:
    due = runner.store.due_at("job-1")
    assert due is not None
    time.sleep(max(due - time.time(), 0))
    runner.advance("job-1")


def test_every_page_of_the_lookup_waits_for_a_token_of_its_own(redis_client: redis.Redis) -> None:
    # Given a lookup two pages long, at 10 requests per second
    api = ListingApi(pages=2)
    runner = runner_after_a_lost_create(redis_client, api)
    # When the job's step runs
    before = _redis_now(redis_client)
    runner.advance("job-1")
    after = _redis_now(redis_client)
    # Then the first page went at once and the second waits for its token, one interval (0.115 s) after it
    assert api.calls == ["list"]
    due = runner.store.due_at("job-1")
    assert due is not None and before + 0.115 - 1e-3 <= due <= after + 0.115 + 1e-3, (before, due, after)


def _redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1_000_000


def test_a_create_waiting_for_its_token_does_not_look_up_again(redis_client: redis.Redis) -> None:
    # Given a lookup that found nothing, and a create that must wait for the next token
    api = ListingApi(pages=1)
    runner = runner_after_a_lost_create(redis_client, api)
    runner.advance("job-1")
    assert api.calls == ["list"]
    # When the create's token is due
    advance_when_due(runner)
    # Then the token went to the create (the earlier lookup stands), and the job is running
    assert api.calls == ["list", "create"]
    record = runner.store.load("job-1")
    assert record is not None and record.state is JobState.RUNNING


def test_a_create_during_a_pause_waits_for_its_request_token_only(redis_client: redis.Redis) -> None:
    # Given a pause of 0.3 s (a 429) and no runs-per-minute limit
    api = FakeApi()
    runner = runner_with_a_job(redis_client, api)
    assert runner.limiter is not None
    runner.limiter.pause(0.3)
    # When the job's create is due
    runner.advance("job-1")
    # Then it holds the request token after the pause, and nothing for the unlimited runs bucket
    record = runner.store.load("job-1")
    assert record is not None and set(record.held_tokens) == {"requests"}
    advance_when_due(runner)
    assert api.calls == ["create"]


def test_a_lookup_under_a_busy_limit_goes_on_where_it_stopped(redis_client: redis.Redis) -> None:
    # Given a lost create whose lookup is three pages long, on a pool where each step gets one token
    api = ListingApi(pages=3)
    runner = runner_after_a_lost_create(redis_client, api)
    runner.advance("job-1")
    # When the job steps each time its next token is due
    for _ in range(8):
        if "create" in api.calls:
            break
        advance_when_due(runner)
    # Then each page was listed once, in order, and the create followed: no lookup starting over for ever
    assert api.calls == ["list", "list", "list", "create"]


def test_a_reserved_token_is_spent_at_its_slot_whichever_host_runs_the_step(redis_client: redis.Redis) -> None:
    # Given a create waiting for its token, reserved by a step on this host (another call took the current one)
    api = FakeApi()
    runner = runner_with_a_job(redis_client, api)
    assert runner.limiter is not None
    runner.limiter.reserve(Bucket.REQUESTS)
    runner.advance("job-1")
    assert api.calls == []
    # When its next step runs at the slot, on a host whose clock is half a second ahead
    due = runner.store.due_at("job-1")
    assert due is not None
    time.sleep(max(due - time.time(), 0))
    ahead = JobRunner(
        api=api, store=runner.store, publisher=Results(), limiter=runner.limiter, clock=lambda: time.time() + 0.5
    )
    ahead.advance("job-1")
    # Then the token was spent there, judged on the Redis server's clock: the create went out
    assert api.calls == ["create"]
