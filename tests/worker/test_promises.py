"""The job runner keeps its promises when a step is slow: fenced writes, no un-finishing, bounded steps, new statuses.

Real Redis; Extend is the in-memory `FakeApi`, slowed down where a test needs a step to outlive its lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded

from extendq.errors import ApiUnavailable, RetryableError, RetryBudgetExhausted
from extendq.worker.batch import BatchJob, BatchRunner
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState
from extendq.worker.ratelimit import Bucket, Limits, RateLimiter
from extendq.worker.reconcile import Reconciler
from extendq.worker.schedule import RetryPolicy
from extendq.worker.store import RedisJobStore
from tests.support.fakes import FakeApi, Results

KEYS = Keys("extendq-promises:")
REQUEST = JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}})


def _store(client: redis.Redis) -> RedisJobStore:
    return RedisJobStore(client, keys=KEYS, result_ttl_s=60)


def _runner(store: RedisJobStore, api: FakeApi, **options: Any) -> JobRunner:
    return JobRunner(api=api, store=store, publisher=Results(), **options)


class HeldCheck(FakeApi):
    """A fake Extend whose first check answers PROCESSING only once `release` is set (a slow answer)."""

    def __init__(self) -> None:
        super().__init__("PROCESSING")
        self.release = threading.Event()
        self.holding = threading.Event()
        self._held_once = False

    def get_run(self, run_id: str) -> dict[str, Any]:
        if self._held_once:
            return super().get_run(run_id)
        self._held_once = True
        answer = {**self.runs[run_id], "status": "PROCESSING"}
        self.holding.set()
        assert self.release.wait(30), "the held check was never released"
        return answer


def _wait_until(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


def test_a_step_that_outlived_its_lock_never_un_finishes_its_job(redis_client: redis.Redis) -> None:
    # Given a running job whose check hangs on a slow answer past the step's 0.2 s lock
    store, api = _store(redis_client), HeldCheck()
    slow = _runner(store, api, lock_ttl_s=0.2)
    slow.start("job-1", REQUEST)
    stale = threading.Thread(target=slow.advance, args=("job-1",))
    stale.start()
    assert api.holding.wait(30)
    _wait_until(lambda: not redis_client.exists(KEYS.lock("job-1")), "the slow step's lock to expire")
    # When another step takes the job meanwhile and finishes it with the ended run
    api.status = "PROCESSED"
    other = _runner(store, api)
    other.advance("job-1")
    assert other.publisher.published["job-1"]["status"] == "PROCESSED"  # type: ignore[attr-defined]
    # And the slow step then comes back with its stale PROCESSING answer
    api.release.set()
    stale.join(30)
    # Then the job stays finished: its state, its run's status, and no next check
    record = store.load("job-1")
    assert record is not None and record.finished
    assert (record.state, record.run_status) == (JobState.SUCCESS, "PROCESSED")
    assert store.due_at("job-1") is None


def test_a_finished_job_is_never_scheduled_again(redis_client: redis.Redis) -> None:
    # Given a job that finished
    store = _store(redis_client)
    _runner(store, FakeApi("PROCESSED", instant=True)).start("job-1", REQUEST)
    assert store.load("job-1").finished  # type: ignore[union-attr]
    # When a late writer (a batch's submission mark, sweeps handing checks back) schedules it
    store.schedule("job-1", time.time() + 1)
    store.schedule("job-1", time.time() + 1, stretched=True)
    # Then it is not due, nor counted among the stretched checks
    assert store.due_at("job-1") is None
    assert store.stretched() == []


def test_reconciling_drops_due_entries_of_finished_jobs(redis_client: redis.Redis) -> None:
    # Given a finished job whose due entry came back by a plain write (as older versions could)
    store = _store(redis_client)
    _runner(store, FakeApi("PROCESSED", instant=True)).start("job-1", REQUEST)
    redis_client.zadd(KEYS.due, {"job-1": time.time()})
    # When the reconciler runs
    counts = Reconciler(store=store, drive=lambda job_id: None, result_ttl_s=60).run()
    # Then the entry is gone, and counted
    assert store.due_at("job-1") is None
    assert counts["due_orphans_removed"] == 1


def test_a_run_status_the_sdk_does_not_know_ends_the_job_with_the_run(redis_client: redis.Redis) -> None:
    # Given a run that ends with a status added after this version (the SDK treats unknown statuses as terminal)
    store = _store(redis_client)
    runner = _runner(store, FakeApi("ARCHIVED"))
    runner.start("job-1", REQUEST)
    # When its job is checked
    runner.advance("job-1")
    # Then the job ended with the run, as the API returned it, and is not checked again
    assert runner.publisher.published["job-1"]["status"] == "ARCHIVED"  # type: ignore[attr-defined]
    record = store.load("job-1")
    assert record is not None and record.state is JobState.SUCCESS
    assert store.due_at("job-1") is None


class OverrunningCreate(FakeApi):
    """A fake Extend whose create never ends within the task's time limit (a huge upload, say)."""

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        raise SoftTimeLimitExceeded()


def test_a_step_stopped_at_its_time_limit_spends_the_retry_budget(redis_client: redis.Redis) -> None:
    # Given a job whose create always overruns the time limit, with a retry budget of 2 (and no landing window:
    # no run ever lands here, and the lookups before each new create find none)
    store, api = _store(redis_client), OverrunningCreate()
    budget = RetryPolicy(budget=2)
    runner = _runner(store, api, retry=budget, overrun_errors=(SoftTimeLimitExceeded,), landing_window_s=0)
    runner.start("job-1", REQUEST)
    # When its step is tried again until it gives up
    for _ in range(5):
        if store.load("job-1").finished:  # type: ignore[union-attr]
            break
        runner.advance("job-1")
    # Then it failed with the budget spent after three tries, instead of starting over for ever
    assert api.calls.count("create") == 3
    assert isinstance(runner.publisher.published["job-1"], RetryBudgetExhausted)  # type: ignore[attr-defined]
    assert store.due_at("job-1") is None


class LateCommit(FakeApi):
    """A fake Extend behind a gateway that times out on the create while Extend commits the run `late_s` later."""

    def __init__(self, clock: list[float], late_s: float) -> None:
        super().__init__("PROCESSING")
        self.clock, self.late_s = clock, late_s
        self.visible_at: dict[str, float] = {}

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        run = super().create_run(body)
        self.visible_at[run["id"]] = self.clock[0] + self.late_s
        raise ApiUnavailable("504 from the gateway")

    def list_runs(self, **params: Any) -> dict[str, Any]:
        self.calls.append("list")
        visible = [run for run_id, run in self.runs.items() if self.visible_at[run_id] <= self.clock[0]]
        return {"data": [{"id": run["id"], "status": run["status"]} for run in visible], "nextPageToken": None}


def test_a_create_that_may_still_land_is_not_posted_again(redis_client: redis.Redis) -> None:
    # Given a create that timed out at the gateway while Extend commits its run 3 s later
    clock = [1_900_000_000.0]
    api = LateCommit(clock, late_s=3.0)
    store = _store(redis_client)
    runner = _runner(store, api, clock=lambda: clock[0], landing_window_s=60)
    runner.start("job-1", REQUEST)
    # When the job's retry comes 1 s later, and again when its landing window has passed
    for at in (1.0, 61.0):
        clock[0] = 1_900_000_000.0 + at
        runner.advance("job-1")
    # Then the first look found nothing and posted nothing; the second adopted the run that landed late
    assert api.calls == ["create", "list", "list", "get"]
    assert len(api.runs) == 1
    record = store.load("job-1")
    assert record is not None and record.run_id == next(iter(api.runs))
    assert record.state is JobState.RUNNING


class LostBatchAnswers(FakeApi):
    """A fake Extend behind a gateway that loses the batch endpoint's answers: each batch is created, then a 503."""

    def __init__(self) -> None:
        super().__init__("PROCESSING")
        self.batches = 0

    def create_batch(self, body: dict[str, Any]) -> str:
        self.calls.append("batch")
        self.batches += 1
        for item in body["inputs"]:
            run_id = f"workflow_run_{len(self.runs) + 1}"
            self.runs[run_id] = {"id": run_id, "status": "PROCESSING", "metadata": item["metadata"]}
            self.runs[run_id]["batchId"] = f"batch_{self.batches}"
        raise ApiUnavailable("503 from the gateway")

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        if pace is not None:
            pace()
        self.calls.append("list")
        return iter(
            [{"id": run["id"], "status": run["status"], "batchId": run.get("batchId")} for run in self.runs.values()]
        )


def test_a_batch_member_is_never_posted_again_alone_while_its_batch_may_have_landed(redis_client: redis.Redis) -> None:
    # Given a batch of two whose post created its runs but lost its answer
    clock = [1_900_000_000.0]
    api, store = LostBatchAnswers(), _store(redis_client)
    runner = _runner(store, api, clock=lambda: clock[0], landing_window_s=60, lease_s=120)
    batch = BatchRunner(runner=runner, clock=lambda: clock[0])
    members = [BatchJob(job_id=f"job-{index}", request=REQUEST) for index in (1, 2)]
    with pytest.raises(ApiUnavailable):
        batch.start("batch-task-1", members)
    # When the dispatcher drives one member after its lease, the batch task then retries, and the other member
    # is driven only after it gave up waiting for its batch (two leases)
    clock[0] += 121
    runner.advance("job-1")
    batch.start("batch-task-1", members[:1])
    clock[0] += 240
    runner.advance("job-2")
    # Then no run was created twice: one batch post, no single create; each member joined the batch that landed
    assert (api.batches, api.calls.count("create"), len(api.runs)) == (1, 0, 2)
    assert [store.load(f"job-{index}").extend_batch_id for index in (1, 2)] == ["batch_1", "batch_1"]  # type: ignore[union-attr]


class PagedBatch(FakeApi):
    """A fake Extend whose listing of a batch's runs is three pages of runs still going."""

    def list_runs(self, **params: Any) -> dict[str, Any]:
        self.calls.append("list")
        page = int(params.get("nextPageToken") or 0)
        running = [{"id": f"workflow_run_{page}", "status": "PROCESSING"}]
        return {"data": running, "nextPageToken": str(page + 1) if page < 2 else None}


def test_a_batch_members_safety_check_takes_a_token_for_every_page(redis_client: redis.Redis) -> None:
    # Given a member of an Extend batch whose listing is three pages, on a pool held to 10 requests/s
    store, api = _store(redis_client), PagedBatch()
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=10))
    runner = _runner(store, api, limiter=limiter)
    runner.batch_checker = BatchRunner(runner=runner).check_member
    store.create("job-1", REQUEST, now=time.time(), lease_s=1, secrets=None)
    store.update("job-1", extend_batch_id="batch_1", state=JobState.RUNNING.value, submitted_at=time.time())
    # When its safety check runs
    runner.advance("job-1")
    # Then the first page went on the step's token and the second waits for one of its own
    assert api.calls == ["list"]
    record = store.load("job-1")
    assert record is not None and set(record.held_tokens) == {"requests"}


def test_a_batch_post_waiting_for_its_token_keeps_it_for_its_retry(redis_client: redis.Redis) -> None:
    # Given a pool held to 1 request/s whose current token another call just took
    store, api = _store(redis_client), LostBatchAnswers()
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=1))
    limiter.reserve(Bucket.REQUESTS)
    batch = BatchRunner(runner=_runner(store, api, limiter=limiter))
    members = [BatchJob(job_id="job-1", request=REQUEST)]
    # When the batch task tries to post, and its retry comes before the token it reserved is due
    with pytest.raises(RetryableError) as first:
        batch.start("batch-task-1", members)
    with pytest.raises(RetryableError) as second:
        batch.start("batch-task-1", members)
    # Then the retry waits for the same token, not for another one reserved after it; nothing was posted yet
    assert first.value.retry_after_s is not None and second.value.retry_after_s is not None
    assert second.value.retry_after_s <= first.value.retry_after_s
    assert api.batches == 0


def test_a_batch_run_never_finishes_a_job_that_has_another_run(redis_client: redis.Redis) -> None:
    # Given a job with a run of its own
    store = _store(redis_client)
    runner = _runner(store, FakeApi("PROCESSING"))
    runner.start("job-1", REQUEST)
    assert store.load("job-1").run_id == "workflow_run_default_1"  # type: ignore[union-attr]
    # When an ended batch run that names the job in its metadata turns up (a duplicate made elsewhere)
    stray = {"id": "workflow_run_99", "status": "PROCESSED", "metadata": {"extendq:job_id": "job-1"}}
    handled = BatchRunner(runner=runner).finish_member(stray)
    # Then the job is left to its own run: not finished with the stray one
    record = store.load("job-1")
    assert handled is False
    assert record is not None and not record.finished and record.run_id == "workflow_run_default_1"


class OneBatch(FakeApi):
    """A fake Extend holding one batch (batch_1) whose runs are still going."""

    def list_runs(self, **params: Any) -> dict[str, Any]:
        self.calls.append("list")
        runs = [run for run in self.runs.values() if run.get("batchId") == params.get("batchId")]
        return {"data": [{"id": run["id"], "status": run["status"]} for run in runs], "nextPageToken": None}

    def get_run(self, run_id: str) -> dict[str, Any]:
        self.calls.append("get")
        return dict(self.runs[run_id])


@pytest.mark.parametrize("end", ["cancel", "deadline"])
def test_a_batch_member_ended_before_its_run_is_known_cancels_that_run(redis_client: redis.Redis, end: str) -> None:
    # Given a member of batch_1 (with a deadline of 60 s) whose run is going on Extend, not yet known to the job
    clock = [1_900_000_000.0]
    store, api = _store(redis_client), OneBatch("PROCESSING")
    runner = _runner(store, api, clock=lambda: clock[0])
    runner.batch_finder = BatchRunner(runner=runner, clock=lambda: clock[0]).find_member
    request = JobRequest.parse({"workflow": "workflow_x", "file": {"id": "file_1"}, "deadline_s": 60})
    store.create("job-1", request, now=clock[0], lease_s=1, secrets=None)
    store.update("job-1", extend_batch_id="batch_1", state=JobState.RUNNING.value, submitted_at=clock[0])
    metadata = {"extendq:job_id": "job-1"}
    api.runs["workflow_run_7"] = {"id": "workflow_run_7", "status": "PROCESSING", "metadata": metadata}
    api.runs["workflow_run_7"]["batchId"] = "batch_1"
    # When it is cancelled, or its deadline passes, and its step runs
    if end == "cancel":
        runner.request_cancel("job-1")
    else:
        clock[0] += 61
    runner.advance("job-1")
    # Then its run was found in the batch and cancelled on Extend, not left going with nobody waiting for it
    assert api.runs["workflow_run_7"]["status"] == "CANCELLED"
    assert store.load("job-1").run_id == "workflow_run_7"  # type: ignore[union-attr]


class LateCommitBehindAFlakyFetch(LateCommit):
    """`LateCommit`, with another job's run listed too, whose first fetch fails (a lookup cut short)."""

    def __init__(self, clock: list[float], late_s: float) -> None:
        super().__init__(clock, late_s)
        self.runs["workflow_run_other"] = {"id": "workflow_run_other", "status": "PROCESSING", "metadata": {}}
        self.visible_at["workflow_run_other"] = 0.0
        self.failed_once = False

    def get_run(self, run_id: str) -> dict[str, Any]:
        if not self.failed_once:
            self.failed_once = True
            raise ApiUnavailable("503 from the gateway")
        return super().get_run(run_id)


def test_a_lookup_begun_before_the_run_could_land_is_not_conclusive_after(redis_client: redis.Redis) -> None:
    # Given a create that timed out while Extend commits its run 3 s later, and a lookup 1 s later that listed
    # before the commit and was cut short by a failed fetch
    clock = [1_900_000_000.0]
    api = LateCommitBehindAFlakyFetch(clock, late_s=3.0)
    store = _store(redis_client)
    runner = _runner(store, api, clock=lambda: clock[0], landing_window_s=60)
    runner.start("job-1", REQUEST)
    clock[0] += 1
    runner.advance("job-1")
    # When the job steps again once its landing window has passed
    clock[0] += 60
    runner.advance("job-1")
    # Then the lookup listed again (the run is there now) and adopted it: no second create
    assert api.calls.count("create") == 1
    record = store.load("job-1")
    assert record is not None and record.run_id is not None and record.run_id != "workflow_run_other"


def test_adopting_a_batch_run_under_a_busy_limit_keeps_its_token_for_the_retry(redis_client: redis.Redis) -> None:
    # Given an ended run of one of our batches, on a pool whose tokens other calls keep taking (2 requests/s)
    store, api = _store(redis_client), FakeApi("PROCESSED")
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=2))
    batch = BatchRunner(runner=_runner(store, api, limiter=limiter))
    store.create("job-1", REQUEST, now=time.time(), lease_s=60, secrets=None)
    api.runs["workflow_run_5"] = {
        "id": "workflow_run_5",
        "status": "PROCESSED",
        "metadata": {"extendq:job_id": "job-1"},
    }
    limiter.reserve(Bucket.REQUESTS)
    # When the adoption finds no token free, another call takes the next free one, and the retry comes at its slot
    with pytest.raises(RetryableError) as first:
        batch.adopt("workflow_run_5")
    limiter.reserve(Bucket.REQUESTS)
    time.sleep(first.value.retry_after_s or 0.0)
    adopted = batch.adopt("workflow_run_5")
    # Then the retry spent the token reserved for it, and the job ended with its run
    assert adopted is True
    record = store.load("job-1")
    assert record is not None and record.finished and record.run_id == "workflow_run_5"


def _wait_for_held_token(store: RedisJobStore, limiter: RateLimiter, job_id: str) -> None:
    record = store.load(job_id)
    assert record is not None and "requests" in record.held_tokens
    time.sleep(max(0.0, record.held_tokens["requests"] - limiter.server_time()) + 0.01)


def test_a_batch_members_check_throttled_before_a_fetch_spends_its_next_token_on_that_fetch(
    redis_client: redis.Redis,
) -> None:
    # Given a member of batch_1 whose run has ended, on a pool held to 10 requests/s
    store, api = _store(redis_client), OneBatch("PROCESSED")
    limiter = RateLimiter(redis_client, keys=KEYS, limits=Limits(requests_per_second=10))
    runner = _runner(store, api, limiter=limiter)
    runner.batch_checker = BatchRunner(runner=runner).check_member
    store.create("job-1", REQUEST, now=time.time(), lease_s=1, secrets=None)
    store.update("job-1", extend_batch_id="batch_1", state=JobState.RUNNING.value, submitted_at=time.time())
    api.runs["workflow_run_7"] = {"id": "workflow_run_7", "status": "PROCESSED", "batchId": "batch_1"}
    api.runs["workflow_run_7"]["metadata"] = {"extendq:job_id": "job-1"}
    # When its safety check lists the batch and has to wait for the fetch's token (the list took the step's)
    runner.advance("job-1")
    assert api.calls == ["list"]
    # ... and, the limit kept busy by other callers, its next step comes when the token it reserved is due
    for _ in range(5):
        limiter.reserve(Bucket.REQUESTS)
    _wait_for_held_token(store, limiter, "job-1")
    runner.advance("job-1")
    # Then that token fetched the run the list found (listing again on it, no step ever fetched under a busy
    # limit), and the job finished with it
    assert api.calls == ["list", "get"]
    record = store.load("job-1")
    assert record is not None and record.finished and record.run_id == "workflow_run_7"
