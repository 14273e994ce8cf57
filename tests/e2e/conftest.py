"""End-to-end fixtures: the emulator served by uvicorn, real Celery workers, a producer app, all on real Redis."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from extendq.config.settings import Settings
from extendq.tasks.celery import create_app
from tests.conftest import _OWNER, clean_keys
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

API_KEY = "sk_test_SENTINEL_API_KEY_7f3a9c"
# Fixed, so every module (and every process) of the test run shares it.
SECRETS_KEY = base64.urlsafe_b64encode(b"extendq-e2e-secrets-key-32bytes!").decode()

PROFILE: dict[str, Any] = {
    "workflows": {
        "workflow_processed": {"name": "Always processed", "duration_s": [0.3, 0.6], "outcomes": {"PROCESSED": 1}},
        "workflow_failed": {"name": "Always failed", "duration_s": [0.3, 0.6], "outcomes": {"FAILED": 1}},
        "workflow_review": {"name": "Always review", "duration_s": [0.3, 0.6], "outcomes": {"NEEDS_REVIEW": 1}},
        "workflow_slow": {"name": "Two to three seconds", "duration_s": [2.0, 3.0], "outcomes": {"PROCESSED": 1}},
        "workflow_long": {"name": "A minute", "duration_s": [60.0, 60.0], "outcomes": {"PROCESSED": 1}},
    },
    "rate_limit": None,
    "faults": {"error_rate": 0.0, "latency_s": [0.0, 0.0], "drop_rate": 0.0},
    "batch_runs_per_second": 100,
    "seed": 7,
}


@pytest.fixture(scope="session")
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The end-to-end tests' own Redis database. Their session worker dispatches due entries and relays callbacks
    under the pool's key prefix until the run ends: on the unit tests' database it took theirs."""
    db = claim_database(f"{redis_server_url}/0", owner=f"{_OWNER}-e2e")
    yield f"{redis_server_url}/{db}"
    release_database(f"{redis_server_url}/0", db)


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    """The emulator, served over real HTTP for the whole session."""
    with EmulatorProcess(profile="default", api_keys=(API_KEY,)) as served:
        yield served


@pytest.fixture(scope="session")
def worker_env(redis_url: str, emulator: EmulatorProcess) -> dict[str, str]:
    """The environment a worker (and the producer) runs with."""
    return {
        "EXTENDQ_REDIS_URL": redis_url,
        "EXTENDQ_BASE_URL": emulator.url,
        "EXTEND_API_KEY": API_KEY,
        "EXTENDQ_SECRETS_KEY": SECRETS_KEY,
        "EXTENDQ_RETRY_BACKOFF_S": "0.2",
        "EXTENDQ_RETRY_BACKOFF_MAX_S": "2",
        "EXTENDQ_REQUEST_TIMEOUT_S": "5",
        "EXTENDQ_LANDING_WINDOW_S": "8",
        "EXTENDQ_CLAIM_LEASE_S": "10",
    }


@pytest.fixture(scope="session")
def e2e_settings(worker_env: dict[str, str]) -> Settings:
    return Settings.from_env(worker_env)


@pytest.fixture(scope="session")
def producer(e2e_settings: Settings) -> Celery:
    """A producer's Celery app on the same broker and backend."""
    return create_app(e2e_settings)


@pytest.fixture(scope="session")
def worker(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One real worker (concurrency 2) for the session."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with WorkerProcess(worker_env, log_path=log_path, concurrency=2) as process:
        yield process


@pytest.fixture
def clean(emulator: EmulatorProcess, redis_url: str) -> Iterator[redis.Redis]:
    """Each test starts with an empty emulator and no job data; yields a Redis client on the test database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    emulator.set_profile(PROFILE)
    emulator.reset()
    clean_keys(client)
    yield client
    # Jobs a test left in flight stop here: their checks would otherwise reach the next test's emulator.
    clean_keys(client)
    client.close()


@pytest.fixture
def new_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory for extra workers a test controls itself (kills, restarts); all stopped at the end."""
    started: list[WorkerProcess] = []

    def start(**kwargs: Any) -> WorkerProcess:
        process = WorkerProcess(worker_env, log_path=tmp_path / f"worker-{len(started)}.log", **kwargs).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
