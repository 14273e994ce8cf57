"""Jobs put in place through the real store (`RedisJobStore`), with no worker: finished at a chosen time with a
chosen outcome, or in flight in a chosen state, for what reads them (job search, the pool's series, the dashboard).
"""

from __future__ import annotations

from typing import Any

from extendq.worker.models import JobRequest, JobState
from extendq.worker.store import RedisJobStore


def request(workflow: str = "workflow_x", **extra: Any) -> JobRequest:
    """A small valid request (a text file) for `workflow`, with any other request fields."""
    return JobRequest.parse({"workflow": workflow, "file": {"text": "Total: 1.00"}, **extra})


def finished_job(
    store: RedisJobStore,
    job_id: str,
    *,
    at: float,
    outcome: str = "PROCESSED",
    secrets: str | None = None,
    event: dict[str, str] | None = None,
    **extra: Any,
) -> None:
    """Record `job_id` and finish it at `at`: outcome FAILURE is a job with no run (its create refused); any other
    outcome is the status of the run it got."""
    store.create(job_id, request(**extra), now=at - 5, lease_s=60, secrets=secrets)
    failed = outcome == JobState.FAILURE.value
    if not failed:
        store.record_run(job_id, f"workflow_run_{job_id}", submitted_at=at - 4)
        store.update(job_id, run_status=outcome)
    record = store.load(job_id)
    assert record is not None
    state = JobState.FAILURE if failed else JobState.SUCCESS
    told = {"job_id": job_id, "state": state.value, **(event or {})}
    finishing = store.finish(record, now=at, state=state, error="rejected" if failed else "", event=told)
    assert finishing is not None, f"{job_id} had finished already"


def in_flight_job(
    store: RedisJobStore, job_id: str, *, at: float, state: JobState = JobState.RUNNING, **extra: Any
) -> None:
    """Record `job_id` as enqueued at `at` and in flight (in the in-flight index, as a worker records it), in
    `state`, its lock released."""
    owner, token = store.create_locked(job_id, request(**extra), now=at, lease_s=60, secrets=None, lock_ttl_s=5)
    assert owner == job_id and token is not None
    store.update(job_id, state=state)
    store.unlock(job_id, token)
