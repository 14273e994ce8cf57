from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from extendq.errors import ApiUnavailable, ExtendqError, RateLimited, RunRejected
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.ratelimit import Bucket, Limits, RateLimiter
from extendq.worker.review import ReviewFollower, review_status
from extendq.worker.store import RedisJobStore
from extendq.worker.tenants import TenantAccounts


class FakeApi:
    """Runs held in a dict; `create_run` ends each run at once with the status the test chose."""

    def __init__(self, status: str = "NEEDS_REVIEW") -> None:
        self.status = status
        self.runs: dict[str, dict[str, Any]] = {}
        self.gets = 0
        self.fail_with: ExtendqError | None = None

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        run_id = f"workflow_run_{len(self.runs) + 1}"
        self.runs[run_id] = {"id": run_id, "status": self.status, "metadata": body["metadata"], "usage": {"credits": 2}}
        return dict(self.runs[run_id])

    def get_run(self, run_id: str) -> dict[str, Any]:
        self.gets += 1
        if self.fail_with is not None:
            raise self.fail_with
        return dict(self.runs[run_id])

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def upload(self, path: str, name: str | None = None) -> str:
        raise NotImplementedError

    def list_runs(self, **params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Results:
    """The result backend: what was published per job id."""

    def __init__(self) -> None:
        self.published: dict[str, Any] = {}

    def progress(self, job_id: str, state: JobState, info: dict[str, Any]) -> None:
        pass

    def success(self, job_id: str, run: dict[str, Any]) -> None:
        self.published[job_id] = run

    def failure(self, job_id: str, error: ExtendqError) -> None:
        self.published[job_id] = error

    def copy(self, source_id: str, target_id: str) -> bool:
        return False


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(redis_client: redis.Redis) -> tuple[RedisJobStore, FakeApi, Results, Clock]:
    store = RedisJobStore(redis_client, keys=Keys("extendq:"), result_ttl_s=3600)
    return store, FakeApi(), Results(), Clock()


def _finish_job(world: tuple[RedisJobStore, FakeApi, Results, Clock], job_id: str, needs_review: str) -> None:
    store, api, results, clock = world
    runner = JobRunner(api=api, store=store, publisher=results, clock=clock)
    request = {"workflow": "workflow_review", "file": {"text": "x"}, "needs_review": needs_review}
    runner.start(job_id, JobRequest.parse(request))


def _follower(world: tuple[RedisJobStore, FakeApi, Results, Clock]) -> ReviewFollower:
    store, api, _, clock = world
    return ReviewFollower(api=api, store=store, interval_s=300, outcome_ttl_s=600, clock=clock)


def _events(client: redis.Redis, state: str) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange("extendq:events") if fields["state"] == state]


def test_only_jobs_asking_to_watch_are_followed(world: Any, redis_client: redis.Redis) -> None:
    _finish_job(world, "watched", "watch")
    _finish_job(world, "plain", "result")
    assert redis_client.zrange("extendq:review", 0, -1) == ["watched"]
    store = world[0]
    assert (review_status(store, "watched"), review_status(store, "plain")) == ("WATCHING", None)


def test_approved_run_is_published_as_a_reviewed_event_and_the_result_stays(
    world: Any, redis_client: redis.Redis
) -> None:
    # Given a watched job whose result is its NEEDS_REVIEW run
    store, api, results, clock = world
    _finish_job(world, "job-1", "watch")
    follower = _follower(world)
    # When the follower looks while the run still waits, then after a reviewer approved it
    assert follower.follow_due() == {"waiting": 1}
    assert follower.follow_due() == {}  # not due again before the interval
    api.runs["workflow_run_1"]["status"] = "PROCESSED"
    clock.now += 300
    assert follower.follow_due() == {"reviewed": 1}
    # Then one REVIEWED event carries the later outcome, the job's review status shows it, and its
    # result is still the NEEDS_REVIEW run
    [event] = _events(redis_client, "REVIEWED")
    assert (event["job_id"], event["run_id"], event["status"]) == ("job-1", "workflow_run_1", "PROCESSED")
    assert review_status(store, "job-1") == "PROCESSED"
    assert results.published["job-1"]["status"] == "NEEDS_REVIEW"
    assert redis_client.zcard("extendq:review") == 0
    assert 0 < redis_client.ttl("extendq:reviewed:job-1") <= 600
    clock.now += 300
    assert follower.follow_due() == {} and api.gets == 2


def test_rejected_run_is_published_too(world: Any, redis_client: redis.Redis) -> None:
    _, api, _, _ = world
    _finish_job(world, "job-1", "watch")
    api.runs["workflow_run_1"]["status"] = "REJECTED"
    assert _follower(world).follow_due() == {"reviewed": 1}
    assert [e["status"] for e in _events(redis_client, "REVIEWED")] == ["REJECTED"]


def test_transient_errors_wait_for_the_next_look_and_a_gone_run_ends_the_follow_up(
    world: Any, redis_client: redis.Redis
) -> None:
    store, api, _, clock = world
    _finish_job(world, "job-1", "watch")
    api.fail_with = ApiUnavailable("connection reset")
    assert _follower(world).follow_due() == {"retry": 1}
    assert review_status(store, "job-1") == "WATCHING"
    clock.now += 300
    api.fail_with = RunRejected("run not found", "workflow_run_1", status_code=404)
    assert _follower(world).follow_due() == {"error": 1}
    [event] = _events(redis_client, "REVIEWED")
    assert (event["status"], event["error"]) == ("", "rejected")


def test_a_rate_limit_postpones_the_rest_by_its_retry_after(world: Any, redis_client: redis.Redis) -> None:
    _, api, _, clock = world
    for job_id in ("a", "b", "c"):
        _finish_job(world, job_id, "watch")
    api.fail_with = RateLimited("slow down", retry_after_s=7)
    assert _follower(world).follow_due() == {"throttled": 3}
    assert {score for _, score in redis_client.zrange("extendq:review", 0, -1, withscores=True)} == {clock.now + 7}


def test_a_job_whose_record_expired_is_dropped(world: Any, redis_client: redis.Redis) -> None:
    _finish_job(world, "job-1", "watch")
    redis_client.delete("extendq:job:job-1")
    assert _follower(world).follow_due() == {"expired": 1}
    assert redis_client.zcard("extendq:review") == 0 and _events(redis_client, "REVIEWED") == []


def test_every_finished_run_has_its_usage_noted_once(world: Any, redis_client: redis.Redis) -> None:
    # The same hook notes usage: watched or not, each job's run once (a job finishes once)
    _finish_job(world, "watched", "watch")
    _finish_job(world, "plain", "result")
    pending = redis_client.hgetall("extendq:usage:pending")
    assert sorted(pending) == ["workflow_run_1", "workflow_run_2"]
    assert {json.loads(note)["credits"] for note in pending.values()} == {2.0}


def test_looks_spend_the_pool_s_shared_rate_limit(world: Any, redis_client: redis.Redis) -> None:
    # Given three due follow-ups and a pool limit of one request per second, just spent by a check
    store, api, _, clock = world
    for job_id in ("a", "b", "c"):
        _finish_job(world, job_id, "watch")
    limiter = RateLimiter(redis_client, keys=store.keys, limits=Limits(requests_per_second=1))
    assert limiter.reserve(Bucket.REQUESTS).now
    follower = ReviewFollower(api=api, store=store, limiter=limiter, interval_s=300, clock=clock)
    # When the follower runs, it makes no call without a token: all three wait about a second
    assert follower.follow_due() == {"throttled": 3} and api.gets == 0
    scores = [score for _, score in redis_client.zrange("extendq:review", 0, -1, withscores=True)]
    assert all(clock.now + 0.05 <= score <= clock.now + 1.5 for score in scores), (clock.now, scores)


def test_a_tenants_watched_run_is_looked_at_through_its_account_and_its_pause_holds_back_only_its_own(
    world: Any, redis_client: redis.Redis
) -> None:
    # Given a watched NEEDS_REVIEW run on the default account and two on acme's
    store, api, results, clock = world
    acme = FakeApi()
    tenants = TenantAccounts(["acme"], build_api=lambda name: acme, build_limiter=lambda name: None)
    runner = JobRunner(api=api, store=store, publisher=results, clock=clock, tenants=tenants)
    for job_id, extra in (("d", {}), ("a1", {"tenant": "acme"}), ("a2", {"tenant": "acme"})):
        request = {"workflow": "workflow_review", "file": {"text": "x"}, "needs_review": "watch", **extra}
        runner.start(job_id, JobRequest.parse(request))
    assert (len(api.runs), len(acme.runs)) == (1, 2)
    # When both are reviewed, but acme's account answers 429
    clock.now += 300
    api.status = acme.status = "PROCESSED"
    for run in [*api.runs.values(), *acme.runs.values()]:
        run["status"] = "PROCESSED"
    acme.fail_with = RateLimited("slow down", retry_after_s=7)
    follower = ReviewFollower(api=api, store=store, tenants=tenants, interval_s=300, clock=clock)
    # Then the default run is published, and only acme's wait out its pause (one call spent on it)
    assert follower.follow_due() == {"reviewed": 1, "throttled": 2}
    assert acme.gets == 1 and review_status(store, "d") == "PROCESSED"
    assert {score for _, score in redis_client.zrange("extendq:review", 0, -1, withscores=True)} == {clock.now + 7}
    # And once acme answers, its runs' outcomes are published through its own account
    clock.now += 7
    acme.fail_with = None
    assert follower.follow_due() == {"reviewed": 2}
    assert [review_status(store, job_id) for job_id in ("a1", "a2")] == ["PROCESSED", "PROCESSED"]
