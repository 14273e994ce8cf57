"""A worker SIGKILLed in the middle of a step: another worker takes the job over on the step lease.

The pool here has a claim lease (600 s) and a broker visibility timeout (900 s) far beyond every wait of these
tests, so a job finishes in time only if the step lease (1 s) hands it over. Each test has a redis-server of its
own: the session's worker must not take the job the test means the victim to hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from extendq.cli.redis_server import RedisServer
from extendq.config.settings import Settings
from extendq.tasks.celery import create_app
from extendq.tasks.producer import build_request, enqueue
from extendq.worker.records import JobRecord
from extendq.worker.store import RedisJobStore, open_store
from tests.e2e.conftest import PROFILE, SECRETS_KEY
from tests.e2e.test_pipeline import wait_for
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SLOW_S = 3.0  # an answer slower than the step lease, within the request timeout (5 s)


class Pool:
    """Workers on a database of the test's own, its producer (recording jobs before sending them), its store."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.settings = Settings.from_env(env)
        self.app = create_app(self.settings)
        self.store: RedisJobStore = open_store(self.settings)
        self.workers: list[WorkerProcess] = []

    def worker(self) -> WorkerProcess:
        log = self.logs / f"worker-{len(self.workers)}.log"
        process = WorkerProcess(self.env, log_path=log, concurrency=1).start()
        self.workers.append(process)
        return process

    def submit(self) -> str:
        request = build_request(workflow="workflow_processed", file={"text": "Total: 1.00"}, secrets_key=SECRETS_KEY)
        return enqueue(self.app, request, store=self.store, lease_s=self.settings.claim_lease_s).id

    def record(self, job_id: str) -> JobRecord:
        record = self.store.load(job_id)
        assert record is not None
        return record

    def locked(self, job_id: str) -> bool:
        return bool(self.store.client.exists(self.store.keys.lock(job_id)))


@pytest.fixture
def pool(worker_env: dict[str, str], emulator: EmulatorProcess, tmp_path: Path) -> Iterator[Pool]:
    # A redis-server of the test's own: no other test's worker, cleanup or flush reaches the job it watches.
    server = RedisServer(appendonly=False).start()
    env = {**worker_env, "EXTENDQ_REDIS_URL": server.url}
    env.update({"EXTENDQ_CLAIM_LEASE_S": "600", "EXTENDQ_STEP_LEASE_S": "1", "EXTENDQ_VISIBILITY_TIMEOUT_S": "900"})
    emulator.reset()
    made = Pool(env, tmp_path)
    try:
        yield made
    finally:
        for process in made.workers:
            process.kill()
        emulator.set_profile(PROFILE)
        server.stop()


@pytest.fixture
def terminal_results(pool: Pool) -> Iterator[Callable[[], dict[str, int]]]:
    """Every terminal result published (the result backend PUBLISHes each write on its key), counted per job."""
    client = redis.Redis.from_url(pool.settings.redis_url)
    pubsub = client.pubsub()
    pubsub.psubscribe("celery-task-meta-*")
    counts: dict[str, int] = {}

    def read() -> dict[str, int]:
        while (message := pubsub.get_message(timeout=0.5)) is not None:
            if message["type"] != "pmessage":
                continue
            meta = json.loads(message["data"])
            if meta.get("status") in {"SUCCESS", "FAILURE"}:
                counts[str(meta["task_id"])] = counts.get(str(meta["task_id"]), 0) + 1
        return dict(counts)

    yield read
    pubsub.close()
    client.close()


def _slow(emulator: EmulatorProcess, route: str) -> None:
    faults = {**PROFILE["faults"], "slow_routes": {route: SLOW_S}, "slow_rate": 1.0}
    emulator.set_profile({**PROFILE, "faults": faults})


def _runs_of(emulator: EmulatorProcess, job_id: str) -> list[dict[str, Any]]:
    return [run for run in emulator.runs() if run["metadata"].get("extendq:job_id") == job_id]


def test_a_worker_killed_mid_check_hands_its_job_to_another(
    pool: Pool, emulator: EmulatorProcess, terminal_results: Callable[[], dict[str, int]]
) -> None:
    # Given a job whose checks answer 3 s late, checked by the one worker of the pool
    _slow(emulator, "GET /workflow_runs/{id}")
    victim = pool.worker()
    job_id = pool.submit()
    # When that worker is SIGKILLed (main process and pool) while a check of the job's run waits for its answer
    wait_for(lambda: pool.record(job_id).run_id and pool.locked(job_id), timeout_s=60)
    victim.kill()
    # And another worker is started, as a supervisor does
    pool.worker()
    # Then the job finishes, long before the claim lease or the broker would give it back
    result = pool.app.AsyncResult(job_id).get(timeout=90)
    assert result["status"] == "PROCESSED"
    # With one Extend run and one terminal result
    assert (len(_runs_of(emulator, job_id)), terminal_results().get(job_id)) == (1, 1)


def test_a_worker_killed_mid_submit_hands_its_new_job_to_another(
    pool: Pool, emulator: EmulatorProcess, terminal_results: Callable[[], dict[str, int]]
) -> None:
    # Given a new job, recorded by its producer, whose create answers 3 s late, started by the one worker
    _slow(emulator, "POST /workflow_runs")
    victim = pool.worker()
    job_id = pool.submit()
    # When that worker is SIGKILLed while its create waits for the answer (the start message is lost with it)
    wait_for(lambda: pool.record(job_id).posting_since is not None and pool.locked(job_id), timeout_s=60)
    victim.kill()
    pool.worker()
    # Then the job finishes, with the one run the lost create made (or one made after the landing window)
    result = pool.app.AsyncResult(job_id).get(timeout=90)
    assert result["status"] == "PROCESSED"
    assert (len(_runs_of(emulator, job_id)), terminal_results().get(job_id)) == (1, 1)
