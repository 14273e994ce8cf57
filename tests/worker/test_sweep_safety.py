"""While list sweeps run, a run's own checks are a safety net, spread wider as more runs are in flight."""

from __future__ import annotations

import redis

from extendq.config.settings import Settings
from extendq.tasks.base import safety_checks_per_s
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest
from extendq.worker.store import RedisJobStore
from tests.support.fakes import FakeApi, Results


def _runner(client: redis.Redis, *, per_s: float | None) -> JobRunner:
    store = RedisJobStore(client, keys=Keys("extendq:"), result_ttl_s=3600)
    return JobRunner(
        api=FakeApi(), store=store, publisher=Results(), sweep_check_interval_s=300.0, sweep_safety_checks_per_s=per_s
    )


def test_the_safety_net_spreads_to_its_pace_with_many_runs_in_flight(redis_client: redis.Redis) -> None:
    # Given sweeps running and 20,000 jobs in flight, with a safety net of at most 10 checks a second
    runner = _runner(redis_client, per_s=10.0)
    redis_client.set("extendq:sweep:active", "1")
    redis_client.zadd("extendq:due", {f"other-{i}": 1e12 for i in range(20_000)})
    # When a job is submitted
    runner.start("j-1", JobRequest.parse({"workflow": "w", "file": {"text": "x"}}))
    # Then its next check is 20,000 / 10 = 2,000 s away (give or take a quarter), not 300 s
    delay = (runner.store.due_at("j-1") or 0) - runner.clock()
    assert 0.75 * 2000 - 5 < delay < 1.25 * 2000 + 5, delay


def test_with_few_runs_in_flight_the_safety_net_keeps_its_interval(redis_client: redis.Redis) -> None:
    runner = _runner(redis_client, per_s=10.0)
    redis_client.set("extendq:sweep:active", "1")
    runner.start("j-1", JobRequest.parse({"workflow": "w", "file": {"text": "x"}}))
    delay = (runner.store.due_at("j-1") or 0) - runner.clock()
    assert 0.75 * 300 - 5 < delay < 1.25 * 300 + 5, delay


def test_the_safety_pace_defaults_to_a_tenth_of_the_request_limit(settings: Settings) -> None:
    def pace(**env: str) -> float:
        return safety_checks_per_s(Settings.from_env({"EXTENDQ_REDIS_URL": settings.redis_url, **env}))

    assert pace() == 20.0
    assert pace(EXTENDQ_RATE_LIMIT_PLAN="payg") == 1.0
    assert pace(EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND="50") == 5.0
    assert pace(EXTENDQ_SWEEP_SAFETY_CHECKS_PER_S="7") == 7.0
