"""Bulk submission: many files in batch requests, each still its own job with its own result."""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
import redis
from celery import Celery

from extendq.config.settings import Settings
from extendq.errors import InvalidJobRequest, RunRejected
from extendq.tasks.base import build_runner
from extendq.tasks.bulk import submit_many
from extendq.tasks.celery import create_app
from extendq.worker.batch import BatchRunner, members_from
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess, empty_database

pytestmark = pytest.mark.e2e


def posts(emulator: EmulatorProcess) -> Counter[str]:
    requests = emulator.stats()["requests"]
    return Counter({route: sum(counts.values()) for route, counts in requests.items() if route.startswith("POST")})


@pytest.mark.parametrize("count", [5, 60])
def test_many_files_one_batch_request_and_a_result_each(
    count: int, producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    # Given many text files for one workflow (few: checks find the runs; many: list sweeps do)
    files = [{"text": f"Invoice #: {i}\nTotal: {i}.00", "name": f"inv-{i}.txt"} for i in range(count)]
    # When they are submitted at once
    jobs = submit_many(workflow="workflow_processed", files=files, metadata={"lot": "october"}, app=producer)
    runs = [job.get(timeout=60) for job in jobs]
    # Then one batch request created every run, and every job got its own run back
    assert posts(emulator) == Counter({"POST /workflow_runs/batch": 1})
    assert [run["metadata"]["extendq:job_id"] for run in runs] == [job.id for job in jobs]
    assert {run["status"] for run in runs} == {"PROCESSED"}
    assert len({run["id"] for run in runs}) == count
    assert all(run["batchId"] and run["metadata"]["lot"] == "october" for run in runs)
    served = Counter(run["metadata"]["extendq:job_id"] for run in emulator.runs())
    assert set(served.values()) == {1} and len(served) == count


def test_more_than_a_thousand_files_are_split(module_redis_url: str) -> None:
    # Given 2,500 files, queued on a broker no worker listens to (this checks what is queued)
    queued = create_app(Settings.from_env({"EXTENDQ_REDIS_URL": module_redis_url}))
    client = redis.Redis.from_url(module_redis_url)
    jobs = submit_many(workflow="workflow_processed", files=[{"text": f"t{i}"} for i in range(2500)], app=queued)
    # Then three batch tasks carry 1,000, 1,000 and 500 jobs, and every file has its own job id
    assert len({job.id for job in jobs}) == 2500
    messages = [json.loads(raw) for raw in client.lrange("extendq", 0, -1)]
    sizes = sorted(len(json.loads(base64.b64decode(m["body"]))[1]["jobs"]) for m in messages)
    assert sizes == [500, 1000, 1000]
    empty_database(client)


def test_bad_file_refuses_the_whole_submission(producer: Celery, clean: redis.Redis) -> None:
    with pytest.raises(InvalidJobRequest):
        submit_many(workflow="workflow_processed", files=[{"text": "ok"}, {"url": "nope"}], app=producer)


@pytest.mark.parametrize(("workflow", "refused"), [("workflow_processed", False), ("workflow_nobody_has", True)])
def test_a_batch_record_expires_with_the_results_whether_or_not_its_post_went_through(
    workflow: str,
    refused: bool,
    e2e_settings: Settings,
    producer: Celery,
    emulator: EmulatorProcess,
    clean: redis.Redis,
) -> None:
    # Given a batch of two files (for a workflow Extend has, or one it refuses)
    runner = build_runner(e2e_settings, producer)
    members = members_from(
        [{"job_id": f"{workflow}-{i}", "request": {"workflow": workflow, "file": {"text": f"t{i}"}}} for i in range(2)]
    )
    # When it is posted
    try:
        BatchRunner(runner=runner).start(f"batch-{workflow}", members)
    except RunRejected:
        assert refused
    # Then the record of the batch (its post time, and its Extend id when it got one) expires with the results
    key = runner.store.keys.batch(f"batch-{workflow}")
    assert ("post" in clean.hgetall(key), "xb" in clean.hgetall(key)) == (True, not refused)
    assert 0 < clean.ttl(key) <= e2e_settings.result_ttl_s
    runner.api.close()
