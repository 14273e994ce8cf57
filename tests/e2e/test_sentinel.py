"""Redis through Sentinels: a primary, a replica and three Sentinels, each a private redis-server process.

Every component connects with the one `redis+sentinel://` URL: a real worker (broker, result backend, job store and
its scripts), a producer, `result_async`, `waiting_in_broker`, the CLI, the webhook receiver and beat's lock; the
passwords (Redis's and the Sentinels') never show in what they print.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from extendq.cli.main import app as cli_app
from extendq.config.settings import Settings
from extendq.worker.keys import Keys
from extendq.worker.store import open_store
from tests.e2e.conftest import PROFILE, SECRETS_KEY
from tests.support.emulator import EmulatorProcess
from tests.support.receiver import ReceiverProcess
from tests.support.redis_kinds import BEAT_PREFIX, beat_keys_once_leading, one_job_end_to_end, worker_on
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
    with worker_on(ha_env, emulator, PROFILE, tmp_path_factory.mktemp("ha-worker")) as process:
        yield process


def test_a_job_runs_end_to_end_through_the_sentinels(
    ha_env: dict[str, str], ha_worker: WorkerProcess, group: SentinelGroup
) -> None:
    # Given a producer on the same Sentinels as the worker, when a job is sent and its result awaited, then the
    # terminal run comes back through the result backend and result_async, and the job's record (written by the
    # store's scripts) is on the primary, and on its replica
    settings = Settings.from_env(ha_env)
    job_id, _ = one_job_end_to_end(settings, secrets_key=SECRETS_KEY, store=open_store(settings))
    with group.replica.client() as replica:
        assert replica.exists(Keys("extendq:").job(job_id))
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
    # Given beat on the Sentinels, when it has taken redbeat's lock, then the lock and the schedule live on the primary
    with group.primary.client(decode_responses=True) as client:
        beat_keys, logged = beat_keys_once_leading(ha_env, tmp_path / "beat.log", client)
    assert f"{BEAT_PREFIX}:lock" in beat_keys, beat_keys
    assert f"{BEAT_PREFIX}:schedule" in beat_keys, beat_keys
    assert REDIS_PW not in logged and SENTINEL_PW not in logged
