"""Step leases: a step keeps its job while it runs, however long, and a job whose holder died is taken over once.

Real Redis; Extend is the in-memory `FakeApi`, held where a test needs a step that lasts longer than its lease.
A holder that died is a lock taken and never renewed nor released (what a SIGKILLed worker leaves behind).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.store import NEW_CLAIM, RedisJobStore
from tests.support.fakes import FakeApi, Results

KEYS = Keys("extendq-leases:")
REQUEST = JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}})
LEASE_S = 0.3


class HeldCheck(FakeApi):
    """A fake Extend whose next check answers PROCESSING only once `release` is set, after `hold()`."""

    def __init__(self) -> None:
        super().__init__("PROCESSING")
        self.release = threading.Event()
        self.holding = threading.Event()
        self._hold = False

    def hold(self) -> None:
        self._hold = True

    def get_run(self, run_id: str) -> dict[str, Any]:
        answer = super().get_run(run_id)
        if self._hold:
            self._hold = False
            self.holding.set()
            assert self.release.wait(30), "the held check was never released"
        return answer


def _store(client: redis.Redis) -> RedisJobStore:
    return RedisJobStore(client, keys=KEYS, result_ttl_s=60)


def _runner(store: RedisJobStore, api: FakeApi) -> JobRunner:
    return JobRunner(api=api, store=store, publisher=Results(), step_lease_s=LEASE_S, lock_ttl_s=30)


def _claim(store: RedisJobStore, job_id: str) -> float | None:
    """What a dispatcher does now: claim the due jobs; the claim of `job_id` when it was among them."""
    return dict(store.claim_due(now=time.time(), limit=100, lease_s=120)).get(job_id)


def _running_job(store: RedisJobStore, api: FakeApi) -> float:
    """A submitted job, due now and claimed by a dispatcher: its claim."""
    _runner(store, api).start("job-1", REQUEST)
    store.schedule("job-1", time.time())
    claim = _claim(store, "job-1")
    assert claim is not None
    return claim


def test_a_step_longer_than_its_lease_keeps_it_and_nobody_else_runs_it(redis_client: redis.Redis) -> None:
    # Given a claimed job whose check hangs on a slow answer, in a runner holding steps on a 0.3 s lease
    store, api = _store(redis_client), HeldCheck()
    claim = _running_job(store, api)
    api.hold()
    holder = _runner(store, api)
    step = threading.Thread(target=holder.advance, args=("job-1", claim))
    step.start()
    assert api.holding.wait(30)
    token = redis_client.get(KEYS.lock("job-1"))
    # When dispatchers and other deliveries try the job for ten leases while the step waits
    other_api = FakeApi("PROCESSED")
    other = _runner(store, other_api)
    claims_seen = []
    for _ in range(10):
        time.sleep(LEASE_S)
        claims_seen.append(_claim(store, "job-1"))
        other.advance("job-1", claim)  # the same message, delivered twice
        other.advance("job-1")  # a cancel or a webhook
    # Then the step still holds its lock, the job never came due, and nobody else called Extend
    assert (redis_client.get(KEYS.lock("job-1")), claims_seen, other_api.calls) == (token, [None] * 10, [])
    # And the step, released, writes its outcome: its check is counted and its lock let go
    api.release.set()
    step.join(30)
    record = store.load("job-1")
    assert record is not None and (record.checks, record.state) == (1, JobState.RUNNING)
    assert not redis_client.exists(KEYS.lock("job-1"))


def test_a_job_whose_holder_died_is_taken_over_once_its_lease_is_gone(redis_client: redis.Redis) -> None:
    # Given a claimed job whose step took its lock on a 0.3 s lease and then died (never renewed nor released)
    store, api = _store(redis_client), FakeApi("PROCESSED")
    claim = _running_job(store, api)
    dead = store.locked("job-1", ttl_s=LEASE_S, claim=claim)
    assert dead.__enter__() is not None
    rescuer = _runner(store, api)
    calls = len(api.calls)
    # When its message is delivered again (the broker gives it back): it finds its claim used up, and does nothing
    rescuer.advance("job-1", claim)
    assert len(api.calls) == calls
    # And when a dispatcher claims the job once it comes due again, its message takes the step
    deadline = time.monotonic() + 30
    while (record := store.load("job-1")) is not None and not record.finished:
        assert time.monotonic() < deadline, f"not taken over: due {store.due_at('job-1')}, calls {api.calls}"
        time.sleep(0.05)
        if (again := _claim(store, "job-1")) is not None:
            rescuer.advance("job-1", again)
    # Then the job finished once, from one check of its one run, and the old message still does nothing
    assert (record.state, api.calls[calls:], len(api.runs)) == (JobState.SUCCESS, ["get"], 1)
    rescuer.advance("job-1", claim)
    assert api.calls[calls:] == ["get"]


def test_a_worker_renews_the_claims_of_the_messages_it_holds_until_they_run(redis_client: redis.Redis) -> None:
    # Given a job claimed by a dispatcher on the long claim lease
    store, api = _store(redis_client), FakeApi("PROCESSING")
    claim = _running_job(store, api)
    # When the worker holding its message renews the claim, the job is due at the renewal's short lease
    assert store.renew_claims([("job-1", claim)], due_at=12345.0) == 1
    assert store.due_at("job-1") == 12345.0
    # And once the message has run, the claim is used: renewing it does nothing, the step's schedule stays
    _runner(store, api).advance("job-1", claim)
    scheduled = store.due_at("job-1")
    assert store.renew_claims([("job-1", claim)], due_at=12345.0) == 0
    assert store.due_at("job-1") == scheduled != 12345.0


def test_a_start_its_producer_recorded_runs_once_and_its_redelivery_does_nothing(redis_client: redis.Redis) -> None:
    # Given a job its producer recorded before sending its start (claimed by that start message)
    store, api = _store(redis_client), FakeApi("PROCESSING")
    store.create("job-1", REQUEST, now=time.time(), lease_s=120, secrets=None)
    assert store.renew_claims([("job-1", NEW_CLAIM)], due_at=time.time() + LEASE_S) == 1
    # When its start runs, and is then delivered again
    runner = _runner(store, api)
    runner.start("job-1", REQUEST)
    runner.start("job-1", REQUEST)
    # Then the job was submitted once and nothing else was asked of Extend
    assert api.calls == ["create"]
