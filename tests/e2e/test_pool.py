"""A pool of several worker processes on its own Redis: one shared rate limit, and list sweeps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from extendq.config.settings import Settings
from extendq.tasks.base import build_runner
from extendq.tasks.celery import create_app
from extendq.tasks.producer import build_request, enqueue
from extendq.worker.models import JobRequest
from tests.conftest import clean_keys
from tests.e2e.conftest import API_KEY, PROFILE
from tests.e2e.test_pipeline import wait_for
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.e2e
Pool = Callable[..., Celery]


@pytest.fixture
def pool(module_redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> Iterator[Pool]:
    """Start `processes` workers (concurrency 2 each) with extra settings; a producer app for them."""
    stack = ExitStack()
    client = redis.Redis.from_url(module_redis_url, decode_responses=True)
    clean_keys(client)

    def start(processes: int = 1, **settings: str) -> Celery:
        env = {
            "EXTENDQ_REDIS_URL": module_redis_url,
            "EXTENDQ_BASE_URL": emulator.url,
            "EXTEND_API_KEY": API_KEY,
            **settings,
        }
        for index in range(processes):
            stack.enter_context(WorkerProcess(env, log_path=tmp_path / f"worker-{index}.log", concurrency=2))
        return create_app(Settings.from_env(env))

    with stack:
        yield start
    clean_keys(client)


def max_per_window(times: list[float], window_s: float = 1.0) -> int:
    """The most requests any `window_s`-long span held (Extend's window is half-open, like this)."""
    ordered = sorted(times)
    return max(sum(1 for t in ordered if start - window_s < t <= start) for start in ordered)


def submit(app: Celery, workflow: str, count: int) -> list[Any]:
    return [enqueue(app, build_request(workflow=workflow, file={"text": f"Total: {i}.00"})) for i in range(count)]


def test_the_pool_never_exceeds_the_shared_limit(pool: Pool, emulator: EmulatorProcess) -> None:
    # Given Extend allowing 8 requests per second, and two worker processes told the same
    emulator.set_profile({**PROFILE, "rate_limit": {"requests_per_second": 8}})
    emulator.reset()
    app = pool(processes=2, EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND="8", EXTENDQ_SWEEP="off")
    # When 40 jobs go through at once
    runs = [job.get(timeout=90) for job in submit(app, "workflow_slow", 40)]
    # Then all finish, Extend never had to refuse one request, and no second ever held more than 8
    assert {run["status"] for run in runs} == {"PROCESSED"}
    log = emulator.requests()
    assert Counter(entry["status"] for entry in log)[429] == 0
    assert max_per_window([entry["at"] for entry in log]) <= 8


def test_sweeps_replace_checks_when_many_runs_are_in_flight(pool: Pool, emulator: EmulatorProcess) -> None:
    # Given sweeps on (from 10 jobs in flight) and 60 runs of 2-3 s
    emulator.set_profile(PROFILE)
    emulator.reset()
    app = pool(EXTENDQ_SWEEP_MIN_IN_FLIGHT="10", EXTENDQ_SWEEP_INTERVAL_S="1")
    runs = [job.get(timeout=90) for job in submit(app, "workflow_slow", 60)]
    # Then every job finished, with about one fetch per run instead of a check every second
    assert {run["status"] for run in runs} == {"PROCESSED"}
    requests = emulator.stats()["requests"]
    fetches = sum(requests.get("GET /workflow_runs/{id}", {}).values())
    sweeps = sum(requests.get("GET /workflow_runs", {}).values())
    assert sweeps >= 1
    assert fetches <= 60 * 1.25, fetches


def test_the_set_of_stretched_checks_expires_and_a_finished_job_leaves_it(
    e2e_settings: Settings, module_redis_url: str, module_redis: redis.Redis, emulator: EmulatorProcess
) -> None:
    # Given a runner while list sweeps run (its checks stretch to the safety net), on a database no worker serves
    emulator.set_profile(PROFILE)
    settings = e2e_settings.model_copy(update={"redis_url": module_redis_url, "sweep": "on"})
    runner = build_runner(settings, create_app(settings))
    stretched = runner.store.keys.sweep("stretched")
    request = JobRequest.parse({"workflow": "workflow_slow", "file": {"text": "Total: 1.00"}})
    # When two jobs are submitted, their checks stretched
    for job_id in ("stretched-1", "stretched-2"):
        runner.start(job_id, request)
    # Then the set of stretched checks expires with the results, unless written again
    assert sorted(module_redis.zrange(stretched, 0, -1)) == ["stretched-1", "stretched-2"]
    assert 0 < module_redis.ttl(stretched) <= settings.result_ttl_s
    # When one job's check finds its run ended (no sweep saw it)
    record = runner.store.load("stretched-1")
    assert record is not None and record.run_id is not None
    wait_for(lambda: any(r["id"] == record.run_id and r["status"] == "PROCESSED" for r in emulator.runs()), 15)
    runner.advance("stretched-1")
    # Then the finished job leaves the set, and the one in flight stays
    finished = runner.store.load("stretched-1")
    assert finished is not None and finished.finished
    assert module_redis.zrange(stretched, 0, -1) == ["stretched-2"]
    runner.api.close()
