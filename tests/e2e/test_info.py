"""`extendq info` and the wrong-queue warning with a real worker process, on a Redis database of their own: the
worker lists itself, a task sent by name without a queue is reported by `info`, warned about in the worker's log
(with the default look interval, well within a minute) and counted by the worker's metrics endpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from extendq.cli.main import Exit, app
from extendq.worker.keys import queue_lists
from tests.e2e.conftest import API_KEY
from tests.e2e.test_pipeline import wait_for
from tests.support.asgi import free_port
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, claim_database, release_database

pytestmark = pytest.mark.e2e
WARNING = (
    "queue 'celery' holds 1 extendq task message (extendq.run_workflow: 1), but no extendq worker consumes it: "
    'send extendq tasks with queue="extendq", or use extendq.submit(...)'
)


class Pool:
    """One worker with its metrics endpoint, and the environment `extendq info` runs with."""

    def __init__(self, env: dict[str, str], worker: WorkerProcess, metrics_url: str) -> None:
        self.env = env
        self.worker = worker
        self.metrics_url = metrics_url
        self.broker = redis.Redis.from_url(env["EXTENDQ_REDIS_URL"])

    def info(self) -> dict[str, Any]:
        result = CliRunner().invoke(app, ["info", "--json"], env=self.env)
        assert result.exit_code == Exit.OK, result.output
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def misrouted_gauge(self) -> dict[str, float]:
        text = httpx.get(self.metrics_url, timeout=5).raise_for_status().text
        return {
            sample.labels["queue"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "extendq_misrouted_messages"
        }


@pytest.fixture(scope="module")
def pool(redis_server_url: str, emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    db = claim_database(f"{redis_server_url}/0", owner=f"info-{time.time()}")
    port = free_port()
    env = {
        "EXTENDQ_REDIS_URL": f"{redis_server_url}/{db}",
        "EXTENDQ_BASE_URL": emulator.url,
        "EXTEND_API_KEY": API_KEY,
        "EXTENDQ_METRICS_PORT": str(port),
        "EXTENDQ_METRICS_HOST": "127.0.0.1",
    }
    home = tmp_path_factory.mktemp("info")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(home / "samples")
    with WorkerProcess(env, log_path=home / "worker.log", concurrency=2) as worker:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _answers(url), timeout_s=30)
        yield Pool(env, worker, url)
    release_database(f"{redis_server_url}/0", db)


@pytest.fixture
def empty_celery_queue(pool: Pool) -> Iterator[None]:
    pool.broker.delete(*queue_lists("celery"))
    yield
    pool.broker.delete(*queue_lists("celery"))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_info_lists_the_running_worker_and_the_queue_depths(pool: Pool, empty_celery_queue: None) -> None:
    assert pool.worker.proc is not None
    report = wait_for(lambda: (r := pool.info())["workers"] and r, timeout_s=60)
    (worker,) = report["workers"]
    assert worker["pid"] == pool.worker.proc.pid and worker["concurrency"] == 2
    assert worker["queues"] == ["extendq", "extendq.checks"] and worker["name"].startswith("celery@")
    assert report["queues"] == {
        "extendq": {"messages": 0, "consumers": 1},
        "extendq.checks": {"messages": 0, "consumers": 1},
        "celery": {"messages": 0, "consumers": 0},
    }
    assert report["misrouted"] == []


@pytest.mark.timeout(240)
def test_a_task_sent_by_name_without_a_queue_is_reported_warned_and_counted(
    pool: Pool, empty_celery_queue: None
) -> None:
    # Given a backend's own Celery app that sends extendq's task by name, forgetting queue="extendq"
    backend = Celery("backend", broker=pool.env["EXTENDQ_REDIS_URL"], set_as_current=False)
    backend.send_task("extendq.run_workflow", kwargs={"workflow": "workflow_processed", "file": {"text": "x"}})
    backend.close()
    # Then `extendq info` reports the message in `celery`, which no worker reads
    report = pool.info()
    assert report["misrouted"] == [
        {
            "queue": "celery",
            "messages": 1,
            "complete": True,
            "length": 1,
            "sampled": 1,
            "tasks": {"extendq.run_workflow": 1},
        }
    ]
    assert report["queues"]["celery"] == {"messages": 1, "consumers": 0}
    # And the worker warns about it in its log, naming the queue, the count and the fix (it looks every 15 s)
    line = wait_for(lambda: next((ln for ln in pool.worker.log_text().splitlines() if WARNING in ln), None), 120)
    assert " WARNING extendq.pool " in line
    # And its metrics endpoint counts it
    assert pool.misrouted_gauge() == {"celery": 1.0}
    # And the message is still there: looking took nothing
    assert pool.broker.llen("celery") == 1
