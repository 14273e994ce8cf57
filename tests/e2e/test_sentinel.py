"""Redis through Sentinels: a primary, a replica and three Sentinels, each a private redis-server process.

Every component connects with the one `redis+sentinel://` URL: a real worker (broker, result backend, job store and
its scripts), a producer, `result_async`, `waiting_in_broker`, the CLI, the webhook receiver and beat's lock; the
passwords (Redis's and the Sentinels') never show in what they print.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from extendq.cli.main import app as cli_app
from extendq.config.settings import Settings
from extendq.tasks.aio import result_async
from extendq.tasks.celery import create_app
from extendq.tasks.producer import build_request, enqueue
from extendq.tasks.waiting import waiting_in_broker
from extendq.worker.keys import Keys
from extendq.worker.models import JobState
from extendq.worker.store import open_store
from tests.e2e.conftest import PROFILE, SECRETS_KEY
from tests.support.beat import BeatProcess
from tests.support.emulator import EmulatorProcess
from tests.support.receiver import ReceiverProcess
from tests.support.sentinel_redis import SentinelGroup
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.e2e

REDIS_PW, SENTINEL_PW = "redis-pw-never-shown", "sentinel-pw-never-shown"


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """Redis and its Sentinels, each with a password."""
    with SentinelGroup(tmp_path_factory.mktemp("sentinel"), password=REDIS_PW, sentinel_password=SENTINEL_PW) as ha:
        yield ha


@pytest.fixture(scope="module")
def ha_env(worker_env: dict[str, str], group: SentinelGroup) -> dict[str, str]:
    """The workers' environment, on the Sentinels' primary."""
    return {
        **worker_env,
        "EXTENDQ_REDIS_URL": group.url(0),
        "EXTENDQ_REDIS_PASSWORD": REDIS_PW,
        "EXTENDQ_REDIS_SENTINEL_PASSWORD": SENTINEL_PW,
    }


@pytest.fixture(scope="module")
def ha_worker(
    ha_env: dict[str, str], emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    emulator.set_profile(PROFILE)
    emulator.reset()
    log_path = tmp_path_factory.mktemp("ha-worker") / "worker.log"
    with WorkerProcess(ha_env, log_path=log_path, concurrency=2) as process:
        yield process


def test_a_job_runs_end_to_end_through_the_sentinels(
    ha_env: dict[str, str], ha_worker: WorkerProcess, group: SentinelGroup
) -> None:
    # Given a producer on the same Sentinels as the worker
    settings = Settings.from_env(ha_env)
    with create_app(settings) as producer:
        # When a job is sent and its result awaited through the result backend
        job = enqueue(
            producer,
            build_request(secrets_key=SECRETS_KEY, workflow="workflow_processed", file={"text": "Invoice #: 1"}),
            store=open_store(settings),
        )
        run: dict[str, Any] = job.get(timeout=90)
        # Then the terminal run comes back, and the same result through result_async's own connections
        assert run["status"] == "PROCESSED" and run["object"] == "workflow_run"
        again = asyncio.run(result_async(job.id, timeout=30, app=producer))
        assert again["id"] == run["id"]
        assert waiting_in_broker(producer, job.id) is False
    # And the job record (written by the store's scripts) is on the primary, and on its replica
    record = open_store(settings).load(job.id)
    assert record is not None and record.state is JobState.SUCCESS and record.run_id == run["id"]
    with group.replica.client() as replica:
        assert replica.exists(Keys("extendq:").job(job.id))
    # And the worker named the service and the Sentinels in its start line, never a password
    [line] = [text for text in ha_worker.log_text().splitlines() if "extendq worker starting" in text]
    sentinels = ",".join(f"127.0.0.1:{node.port}" for node in group.sentinels)
    assert f"Redis Sentinel 'mymaster' at {sentinels}/0;" in line
    assert REDIS_PW not in ha_worker.log_text() and SENTINEL_PW not in ha_worker.log_text()


def test_the_cli_and_the_webhook_receiver_read_through_the_sentinels(
    ha_env: dict[str, str], ha_worker: WorkerProcess, tmp_path: Path
) -> None:
    # When `extendq info` runs on the Sentinels' primary
    result = CliRunner().invoke(cli_app, ["info", "--json"], env=ha_env)
    # Then it reads the running worker's heartbeat and the queues there
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["workers"]
    # And the webhook receiver's metrics read the job store and the broker through the Sentinels
    with ReceiverProcess(ha_env, log_path=tmp_path / "receiver.log") as receiver:
        scrape = httpx.get(f"{receiver.url}/metrics", timeout=30).text
        logged = receiver.log_text()
    assert "extendq_redis_up 1.0" in scrape
    assert 'extendq_queue_length{queue="extendq"}' in scrape
    assert REDIS_PW not in logged + result.output and SENTINEL_PW not in logged + result.output


def test_beat_takes_its_lock_on_the_sentinels_primary(
    ha_env: dict[str, str], group: SentinelGroup, tmp_path: Path
) -> None:
    # Given beat on the Sentinels
    env = {**ha_env, "EXTENDQ_BEAT_MAX_LOOP_INTERVAL_S": "0.5", "EXTENDQ_BEAT_LOCK_TIMEOUT_S": "3"}
    beat = BeatProcess(env, log_path=tmp_path / "beat.log")
    try:
        beat.start(timeout_s=60)
        # When it has taken redbeat's lock
        deadline = time.monotonic() + 60
        while not beat.leading:
            assert time.monotonic() < deadline, f"beat took no lock within 60 s:\n{beat.log_text()[-3000:]}"
            time.sleep(0.2)
        # Then the lock and the schedule live on the primary
        with group.primary.client(decode_responses=True) as client:
            beat_keys = set(client.scan_iter(f"{Keys('extendq:').beat}*"))
        assert f"{Keys('extendq:').beat}:lock" in beat_keys, beat_keys
        assert f"{Keys('extendq:').beat}:schedule" in beat_keys, beat_keys
        assert REDIS_PW not in beat.log_text() and SENTINEL_PW not in beat.log_text()
    finally:
        beat.stop()
