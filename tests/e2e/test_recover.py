"""Recovery after Redis lost its data (worker/recover.py): real Redis, the served emulator, a real worker.

Runs are created on the emulator as extendq creates them (the job id and key in their metadata) while Redis
holds no record of their jobs: exactly what a restart without persistence leaves behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from typer.testing import CliRunner

from bench.chaos import over_limit
from extendq.cli.main import Exit, app
from extendq.cli.redis_server import RedisServer
from extendq.config.settings import Settings
from extendq.tasks.base import build_runner
from extendq.worker.dataloss import DataLossWatch, is_intact
from extendq.worker.extend import ApiConfig, SdkApi, build_api
from extendq.worker.keys import Keys
from extendq.worker.models import JOB_ID_KEY, JOB_KEY_KEY, JobRequest, JobState
from extendq.worker.ratelimit import Limits, RateLimiter
from extendq.worker.recover import Recovery
from extendq.worker.store import RedisJobStore, open_store
from tests.e2e.conftest import API_KEY
from tests.e2e.test_pipeline import creates, wait_for
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(emulator: EmulatorProcess) -> Iterator[SdkApi]:
    """The Extend API over the official SDK, against the emulator."""
    sdk = build_api(ApiConfig(base_url=emulator.url, api_key=API_KEY, api_version="2026-02-09", timeout_s=5))
    yield sdk
    sdk.close()


@pytest.fixture
def store(e2e_settings: Settings, clean: redis.Redis) -> Iterator[RedisJobStore]:
    """The pool's job store: the session worker's dispatcher drives what is due in it."""
    job_store = open_store(e2e_settings)
    yield job_store
    job_store.client.close()


@pytest.fixture
def own_store(clean: redis.Redis) -> RedisJobStore:
    """A store under a prefix of its own, out of the session worker's reach: its records stay as recovery left them."""
    return RedisJobStore(clean, keys=Keys("extendq-recover:"), result_ttl_s=3600)


def lost_run(
    api: SdkApi, job_id: str, *, workflow: str = "workflow_processed", metadata: dict[str, Any] | None = None
) -> str:
    """A run as extendq creates it, for a job Redis no longer knows; its id."""
    body = {
        "workflow": {"id": workflow},
        "file": {"text": f"Invoice {job_id}\nTotal: 10.00", "name": f"{job_id}.txt"},
        "metadata": {JOB_ID_KEY: job_id, **(metadata or {})},
    }
    return str(api.create_run(body)["id"])


def recovery(api: SdkApi, store: RedisJobStore, **options: Any) -> Recovery:
    return Recovery(api=api, store=store, page_size=4, **options)


def test_runs_whose_jobs_lost_their_records_are_adopted_running_and_due(
    api: SdkApi, own_store: RedisJobStore, emulator: EmulatorProcess
) -> None:
    store = own_store
    # Given three runs whose jobs Redis lost (one with a job key and metadata of its producer), a run of a job
    # Redis knows, a run another client made, and a run whose job left only a fragment (a step under way wrote
    # it after the data went)
    lost = {f"lost-{i}": lost_run(api, f"lost-{i}") for i in range(2)}
    lost["lost-key"] = lost_run(api, "lost-key", metadata={JOB_KEY_KEY: "order-7", "order": 7})
    known = lost_run(api, "known")
    request = JobRequest.parse({"workflow": "workflow_processed", "file": {"id": "f"}})
    store.create("known", request, now=1, lease_s=9, secrets=None)
    store.record_run("known", known, submitted_at=1)
    api.create_run({"workflow": {"id": "workflow_processed"}, "file": {"text": "x"}, "metadata": {"other": 1}})
    lost["fragment"] = lost_run(api, "fragment")
    store.record_run("fragment", lost["fragment"], submitted_at=2)  # run index and a hash without a request
    posts = creates(emulator)
    # When a recovery pass runs over the last minute (pages of four)
    started = time.time()
    counts = recovery(api, store).run(since=started - 60)
    # Then the lost jobs are recorded RUNNING on their runs and due now; the others are left alone
    assert (counts["listed"], counts["adopted"], counts["known"], counts["foreign"]) == (6, 4, 1, 1), counts
    for job_id, run_id in lost.items():
        record = store.load(job_id)
        assert record is not None and record.state is JobState.RUNNING and record.run_id == run_id, job_id
        assert store.owners([run_id]) == [job_id]
        assert (store.due_at(job_id) or 0) <= time.time()
        assert record.request.workflow.id == "workflow_processed" and record.request.file is not None
    keyed = store.load("lost-key")
    assert keyed is not None and keyed.request.job_key == "order-7" and keyed.request.metadata == {"order": 7}
    assert store.client.get(store.keys.job_key("order-7")) == "lost-key"
    assert store.load("known") is not None and store.due_at("known") == 10  # untouched: due at its lease
    # And no run was created
    assert creates(emulator) == posts


def test_a_second_pass_and_concurrent_passes_adopt_each_run_once(api: SdkApi, own_store: RedisJobStore) -> None:
    store = own_store
    # Given eight runs whose jobs Redis lost
    runs = {f"job-{i}": lost_run(api, f"job-{i}") for i in range(8)}
    # When four passes run at once, then one more after them
    results: list[dict[str, int]] = []
    passes = [threading.Thread(target=lambda: results.append(recovery(api, store).run(since=0))) for _ in range(4)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join(30)
    again = recovery(api, store).run(since=0)
    # Then each run was adopted by exactly one pass, and the last pass found every job known
    assert sum(result["adopted"] for result in results) == 8, results
    assert (again["adopted"], again["known"]) == (0, 8)
    assert store.owners(list(runs.values())) == list(runs)


def test_adopted_jobs_get_their_results_under_their_own_ids(
    api: SdkApi, store: RedisJobStore, producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess
) -> None:
    # Given a run that ended and one still running (2-3 s), whose jobs Redis lost
    ended, running = lost_run(api, "ended-job"), lost_run(api, "running-job", workflow="workflow_slow")
    wait_for(lambda: api.get_run(ended)["status"] == "PROCESSED", timeout_s=10)
    posts = creates(emulator)
    # When they are recovered, with the worker's dispatcher running
    assert recovery(api, store).run(since=time.time() - 60)["adopted"] == 2
    # Then each job's result is its run, exactly as Extend returns it, under its own id; no run was created
    for job_id, run_id in (("ended-job", ended), ("running-job", running)):
        run = producer.AsyncResult(job_id).get(timeout=20)
        assert (run["id"], run["status"], run["metadata"][JOB_ID_KEY]) == (run_id, "PROCESSED", job_id)
    assert creates(emulator) == posts


def test_a_job_key_taken_meanwhile_gives_the_lost_job_the_new_jobs_result(
    api: SdkApi, store: RedisJobStore, producer: Celery, e2e_settings: Settings
) -> None:
    # Given a lost job whose key a producer enqueued again before recovery, and that new job finished
    lost = lost_run(api, "first", metadata={JOB_KEY_KEY: "order-9"})
    runner = build_runner(e2e_settings, producer)
    request = JobRequest.parse({"workflow": "workflow_processed", "file": {"id": "f"}, "job_key": "order-9"})
    store.create("second", request, now=time.time(), lease_s=60, secrets=None)
    runner.publisher.success("second", {"id": "workflow_run_second", "status": "PROCESSED"})
    record = store.load("second")
    assert record is not None
    store.finish(record, now=time.time(), state=JobState.SUCCESS, error="", event={"job_id": "second"})
    # When recovery finds the first job's run
    counts = Recovery.for_runner(runner).run(since=time.time() - 60)
    runner.api.close()
    # Then it is not recorded a second time for the key: the first job id gets the key owner's result
    assert counts["key_taken"] == 1 and store.load("first") is None, counts
    assert producer.AsyncResult("first").get(timeout=5)["id"] == "workflow_run_second"
    assert store.owners([lost]) == [None]


def test_a_pass_keeps_to_the_shared_rate_limit(
    api: SdkApi, own_store: RedisJobStore, emulator: EmulatorProcess
) -> None:
    store = own_store
    # Given twelve lost runs and a pool limited to 5 requests per second
    for i in range(12):
        lost_run(api, f"paced-{i}")
    limiter = RateLimiter(store.client, keys=store.keys, limits=Limits(requests_per_second=5))
    since = time.time()
    # When a pass runs under that limiter (3 list pages + 12 reads)
    counts = recovery(api, store, limiter=limiter).run(since=since - 60)
    log = emulator.requests(since=since)
    # Then every run was adopted and no second of the pass held more than 5 requests
    assert counts["adopted"] == 12
    assert len(log) >= 15 and over_limit([entry["at"] for entry in log], 5) == 0


def test_extendq_recover_prints_what_it_adopted(
    api: SdkApi, store: RedisJobStore, worker_env: dict[str, str], producer: Celery, worker: WorkerProcess
) -> None:
    run_id = lost_run(api, "by-hand")
    result = CliRunner().invoke(app, ["recover", "--since", "10m", "--json"], env=worker_env)
    assert result.exit_code == Exit.OK, result.output
    assert '"adopted": 1' in result.stdout
    assert producer.AsyncResult("by-hand").get(timeout=20)["id"] == run_id
    again = CliRunner().invoke(app, ["recover", "--since", "10m"], env=worker_env)
    assert again.exit_code == Exit.OK and "0 adopted" in again.stdout and "cannot be recovered" in again.stdout


@pytest.fixture
def private_store() -> Iterator[tuple[RedisServer, RedisJobStore]]:
    """A store on a private redis-server of its own (no AOF), which the test may restart."""
    server = RedisServer(appendonly=False).start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        yield server, RedisJobStore(client, keys=Keys("extendq:"), result_ttl_s=3600)
    finally:
        client.close()
        server.stop()


def test_only_a_restart_that_lost_the_data_starts_a_pass(
    api: SdkApi, clean: redis.Redis, private_store: tuple[RedisServer, RedisJobStore]
) -> None:
    server, store = private_store
    watch = DataLossWatch(recovery=recovery(api, store), since_s=60)
    lost_run(api, "after-restart")
    # Given a watch that saw the dataset once
    assert watch.check() is None and is_intact(store.client.get(store.keys.dataset))
    # When the data is deleted without a restart (FLUSHDB), the marker is written again and nothing recovered
    store.client.flushdb()
    assert watch.check() is None and is_intact(store.client.get(store.keys.dataset))
    # When the server restarts without its data
    server.restart()
    counts = wait_for(lambda: _check(watch), timeout_s=10)
    # Then one pass ran, adopted the run, and marked the dataset intact again; the next look runs none
    assert counts["adopted"] == 1 and store.load("after-restart") is not None
    assert is_intact(store.client.get(store.keys.dataset)) and watch.check() is None


def _check(watch: DataLossWatch) -> dict[str, int] | None:
    try:
        return watch.check()
    except redis.ConnectionError:
        return None  # the first command after the restart may find its old connection closed
