"""A pool for the dashboard's browser tests: the emulator served over HTTP, a real Celery worker, a producer and the
dashboard served by uvicorn, all on one Redis database of their own.

    with DashboardPool(redis_url, home=tmp_dir) as pool:
        job = pool.submit(workflow="workflow_processed")
        job.get(timeout=30)
        httpx.get(pool.url + "/")

The dashboard runs in this process (uvicorn in a thread, tests/support/asgi.py) from a `Settings` built here, so a
test can read the same settings; the worker and the emulator are child processes, as production runs them.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from celery import Celery
from celery.result import AsyncResult

from extendq.config.settings import Settings
from extendq.dashboard import create_app as create_dashboard
from extendq.tasks.celery import create_app as create_celery
from extendq.tasks.producer import build_request, enqueue
from tests.e2e.conftest import API_KEY, PROFILE, SECRETS_KEY
from tests.support.asgi import served
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

DASHBOARD_TOKEN = "dashboard-test-token-5b1e"


class DashboardPool:
    """The dashboard at `url` over a pool of one worker (`concurrency` slots) on `redis_url`, with the e2e profile."""

    def __init__(self, redis_url: str, *, home: Path, concurrency: int = 2) -> None:
        self.redis_url = redis_url
        self.home = home
        self.concurrency = concurrency
        self._stack = ExitStack()
        self.url = ""

    def __enter__(self) -> DashboardPool:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        self.emulator = self._stack.enter_context(EmulatorProcess(profile=PROFILE, api_keys=(API_KEY,)))
        self.env = worker_env(self.redis_url, self.emulator.url)
        self.worker = self._stack.enter_context(
            WorkerProcess(self.env, log_path=self.home / "worker.log", concurrency=self.concurrency)
        )
        self.producer: Celery = create_celery(Settings.from_env(self.env))
        self._stack.callback(self.producer.close)
        self.settings = dashboard_settings(self.env)
        self.url = self._stack.enter_context(served(create_dashboard(self.settings)))

    def submit(self, **request: Any) -> AsyncResult[Any]:
        """Queue one job through the producer (a small invoice text unless `file` is given)."""
        request.setdefault("file", {"text": "Invoice #: 1\nTotal: 10.00"})
        return enqueue(self.producer, build_request(secrets_key=SECRETS_KEY, **request))

    def overview(self) -> dict[str, Any]:
        """The dashboard's `GET /api/overview`."""
        report: dict[str, Any] = httpx.get(f"{self.url}/api/overview", timeout=10).raise_for_status().json()
        return report


def worker_env(redis_url: str, emulator_url: str) -> dict[str, str]:
    """The environment the worker and the producer run with: tests/e2e's, on `redis_url`."""
    return {
        "EXTENDQ_REDIS_URL": redis_url,
        "EXTENDQ_BASE_URL": emulator_url,
        "EXTEND_API_KEY": API_KEY,
        "EXTENDQ_SECRETS_KEY": SECRETS_KEY,
        "EXTENDQ_RETRY_BACKOFF_S": "0.2",
        "EXTENDQ_RETRY_BACKOFF_MAX_S": "2",
        "EXTENDQ_REQUEST_TIMEOUT_S": "5",
        # A limit far above what the tests ask for: the overview then draws requests per second against it.
        "EXTENDQ_RATE_LIMIT_REQUESTS_PER_SECOND": "200",
    }


def dashboard_settings(env: dict[str, str]) -> Settings:
    """The dashboard's settings: the pool's, with the token that unlocks its actions (the one `/login` takes)."""
    return Settings.from_env({**env, "EXTENDQ_DASHBOARD_TOKEN": DASHBOARD_TOKEN})
