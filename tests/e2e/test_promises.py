"""At most one run and exactly one result per job, on the emulator's bad days: late commits, a batch outage,
run statuses nobody knew. A real worker over real HTTP; the figures are counts, never durations."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest
import redis
from celery import Celery

from extendq.tasks.bulk import submit_many
from extendq.tasks.producer import build_request, enqueue
from tests.e2e.conftest import PROFILE
from tests.support.emulator import EmulatorProcess
from tests.support.worker import WorkerProcess

# Results are awaited for up to RESULT_TIMEOUT_S on a loaded machine, after faults that take their own time.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
RESULT_TIMEOUT_S = 120  # generous: a loaded two-core machine, and each lost create waits out its landing window


def _with_faults(**faults: Any) -> dict[str, Any]:
    profile = copy.deepcopy(PROFILE)
    profile["faults"] = {**profile["faults"], **faults}
    return profile


def _runs_per_job(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(run["metadata"].get("extendq:job_id") for run in emulator.runs())


def test_creates_committed_after_the_gateway_gave_up_make_one_run_each(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    # Given an Extend whose every create answers 504 while it commits the run 2 s later
    emulator.set_profile(_with_faults(late_commit_rate=1.0, late_commit_s=2))
    # When ten jobs are submitted
    jobs = [enqueue(producer, build_request(workflow="workflow_processed", file={"text": f"t{i}"})) for i in range(10)]
    runs = [job.get(timeout=RESULT_TIMEOUT_S) for job in jobs]
    # Then every job ended with its own run, and Extend holds exactly one run per job
    assert [run["metadata"]["extendq:job_id"] for run in runs] == [job.id for job in jobs]
    assert {run["status"] for run in runs} == {"PROCESSED"}
    assert _runs_per_job(emulator) == Counter({job.id: 1 for job in jobs})
    assert emulator.stats()["faults"]["late"] == 10


def test_a_batch_endpoint_outage_posts_no_member_twice(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    # Given a batch endpoint that answers 503 for longer than a member's lease (the e2e pool's is 10 s)
    emulator.start_outage("POST /workflow_runs/batch", for_s=15)
    # When twenty files are submitted as one batch
    files = [{"text": f"Invoice #: {i}"} for i in range(20)]
    jobs = submit_many(workflow="workflow_processed", files=files, app=producer)
    runs = [job.get(timeout=RESULT_TIMEOUT_S) for job in jobs]
    # Then every job has its own run and no member was posted twice (in a batch, alone, or both)
    assert [run["metadata"]["extendq:job_id"] for run in runs] == [job.id for job in jobs]
    assert _runs_per_job(emulator) == Counter({job.id: 1 for job in jobs})
    assert emulator.stats()["faults"]["outage"] >= 1


def test_a_run_status_added_after_this_version_ends_its_job(
    producer: Celery, worker: WorkerProcess, emulator: EmulatorProcess, clean: redis.Redis
) -> None:
    # Given runs that end with a status the SDK and extendq do not know
    emulator.set_profile(_with_faults(unknown_status={"rate": 1.0, "status": "ARCHIVED"}))
    # When a job runs
    job = enqueue(producer, build_request(workflow="workflow_processed", file={"text": "t"}))
    # Then it ends with the run as Extend returned it, and is checked no more
    run = job.get(timeout=RESULT_TIMEOUT_S)
    assert run["status"] == "ARCHIVED"
    assert clean.zscore("extendq:due", job.id) is None
