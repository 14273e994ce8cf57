"""Generated job histories against the real state machine (`JobRunner`, `EventApplier`, `RedisJobStore` on Redis).

Only Extend is faked, in memory (`FakeExtend`, an `ExtendApi`). Hypothesis draws operations in any order:
starts and redelivered starts, followers with the same job key, checks with and without a (stale) lease, the
dispatcher claiming due jobs, webhook events (terminal or not, step events, replays out of order), cancels,
the run ending with any terminal status (and a review moving NEEDS_REVIEW on), transient API errors (5xx,
lost answers, refused connections, 429 with Retry-After), creates Extend commits seconds after the gateway
answered 504 (late), steps that outlive their lock while another step takes the job, and time passing.
After every step, and once every job has been driven to its end:

- a job's state only moves forward: QUEUED -> SUBMITTING -> RUNNING -> SUCCESS | FAILURE;
- each job gets exactly one terminal result (counted at the publisher), and nothing after it;
- a follower (same job key) gets the owner's result and no other;
- at most one Extend run is created per job;
- exactly one terminal event per job reaches the events stream;
- an unfinished job always has its next step scheduled, a finished one never.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import hypothesis
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from extendq.errors import ApiUnavailable, ExtendqError, RateLimited, RetryableError, RunRejected
from extendq.worker.events import EventApplier
from extendq.worker.extend import Run
from extendq.worker.jobs import JobRunner
from extendq.worker.keys import Keys
from extendq.worker.models import JOB_ID_KEY, TERMINAL_RUN_STATUSES, JobState
from extendq.worker.schedule import CheckSchedule, RetryPolicy
from extendq.worker.store import RedisJobStore

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

PREFIX = "extendq-chaos-sm:"  # a prefix no worker's dispatcher reads, so nothing but this test moves these jobs
JOBS = ("job-a", "job-b")
TERMINAL = ("PROCESSED", "FAILED", "NEEDS_REVIEW", "CANCELLED", "REJECTED")
RANK = {JobState.QUEUED: 0, JobState.SUBMITTING: 1, JobState.RUNNING: 2, JobState.SUCCESS: 3, JobState.FAILURE: 3}
FAULTS = ("unavailable", "lost", "refused", "rate_limited", "retryable", "late")
LATE_S = 3.0  # a late create's run appears this long after the gateway gave up
FAULT_LISTS = st.lists(st.sampled_from(FAULTS), max_size=2)
EVENT_TYPES = {
    "PROCESSED": "workflow_run.completed",
    "FAILED": "workflow_run.failed",
    "NEEDS_REVIEW": "workflow_run.needs_review",
    "REJECTED": "workflow_run.rejected",
    "CANCELLED": "workflow_run.cancelled",
}


class Clock:
    """A fixed clock the test moves on."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeExtend:
    """Extend in memory (an `ExtendApi`): runs by id, their statuses, and injected faults for the next calls.

    Faults: "unavailable" (a 5xx: not handled, may have landed), "refused" (connection refused: never reached
    Extend), "rate_limited" (429 with Retry-After: not handled), "retryable" (any transient error: not handled),
    "lost" (handled, then the answer is lost: a create creates its run), "late" (a create answered 504 whose run
    Extend commits `LATE_S` later: until then no lookup or webhook sees it).
    `meanwhile`, when set, runs once as the next call starts: another step taking the job while this one waits.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.runs: dict[str, Run] = {}
        self.created_at: dict[str, float] = {}
        self.faults: list[str] = []
        self.calls = 0
        self.visible_at: dict[str, float] = {}
        self.meanwhile: Callable[[], None] | None = None

    # ---- ExtendApi -------------------------------------------------------------------------------------

    def create_run(self, body: dict[str, Any]) -> Run:
        fault = self._fault(effect=True)
        run_id = f"workflow_run_{len(self.runs) + 1}"
        run: Run = {"object": "workflow_run", "id": run_id, "status": "PENDING", "metadata": dict(body["metadata"])}
        self.runs[run_id], self.created_at[run_id] = run, self.clock()
        self.visible_at[run_id] = self.clock() + (LATE_S if fault == "late" else 0.0)
        if fault == "lost":
            raise ApiUnavailable("the connection closed before the answer")
        if fault == "late":
            raise ApiUnavailable("the gateway answered 504")
        return copy.deepcopy(run)

    def get_run(self, run_id: str) -> Run:
        self._fault()
        if run_id not in self.runs:
            raise RunRejected(f"run {run_id} not found (404)", run_id, 404)
        return copy.deepcopy(self.runs[run_id])

    def cancel_run(self, run_id: str) -> Run:
        fault = self._fault(effect=True)
        run = self.runs[run_id]
        if run["status"] in TERMINAL_RUN_STATUSES:
            raise RunRejected(f"run {run_id} has already ended (400)", run_id, 400)
        run["status"] = "CANCELLED"
        if fault in ("lost", "late"):
            raise ApiUnavailable("the connection closed before the answer")
        return copy.deepcopy(run)

    def recent_runs(
        self, workflow_id: str, since: float, pace: Callable[[], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        if pace is not None:
            pace()  # one page: every run fits
        self._fault()
        return iter([{"id": run_id} for run_id in self._newest_visible() if self.created_at[run_id] >= since])

    def create_batch(self, body: dict[str, Any]) -> str:
        raise AssertionError("no batches in these histories")

    def upload(self, path: str, name: str | None = None) -> str:
        raise AssertionError("no local files in these histories")

    def list_runs(self, **params: Any) -> dict[str, Any]:
        """The workflow's runs Extend shows now, newest first, on one page (the lookup after a lost create)."""
        assert params.get("sortBy") == "createdAt", "no list sweeps in these histories"
        self._fault()
        return {
            "data": [{"id": run_id, **self._created(run_id)} for run_id in self._newest_visible()],
            "nextPageToken": None,
        }

    def _newest_visible(self) -> list[str]:
        visible = [run_id for run_id in self.runs if self.visible_at[run_id] <= self.clock()]
        return sorted(visible, key=lambda run_id: -self.created_at[run_id])

    def _created(self, run_id: str) -> dict[str, str]:
        at = datetime.fromtimestamp(self.created_at[run_id], tz=UTC)
        return {"createdAt": at.isoformat().replace("+00:00", "Z")}

    def close(self) -> None:
        pass

    # ---- the test's side -------------------------------------------------------------------------------

    def runs_of(self, job_id: str) -> list[Run]:
        return [run for run in self.runs.values() if run["metadata"].get(JOB_ID_KEY) == job_id]

    def visible_runs_of(self, job_id: str) -> list[Run]:
        """The job's runs Extend shows (and sends events for) now: a late create's run only once committed."""
        return [run for run in self.runs_of(job_id) if self.visible_at[str(run["id"])] <= self.clock()]

    def move(self, job_id: str, status: str) -> None:
        """The job's runs move on: running to `status`, or a NEEDS_REVIEW run reviewed to PROCESSED/REJECTED."""
        for run in self.runs_of(job_id):
            reviewed = run["status"] == "NEEDS_REVIEW" and status in ("PROCESSED", "REJECTED")
            if run["status"] not in TERMINAL_RUN_STATUSES or reviewed:
                run["status"] = status

    def settle(self) -> None:
        """Every run still going ends PROCESSED, and no more faults."""
        self.faults.clear()
        for run in self.runs.values():
            if run["status"] not in TERMINAL_RUN_STATUSES:
                run["status"] = "PROCESSED"

    def _fault(self, *, effect: bool = False) -> str | None:
        """The fault this call meets: raised here, or "lost" returned to a call with an effect to raise after it."""
        self.calls += 1
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        if not self.faults:
            return None
        fault = self.faults.pop(0)
        if fault in ("lost", "late") and not effect:
            raise ApiUnavailable("the connection closed before the answer")
        if fault == "unavailable":
            raise ApiUnavailable("Extend answered 503")
        if fault == "refused":
            error = ApiUnavailable("cannot connect to Extend: ConnectError")
            error.may_have_landed = False
            raise error
        if fault == "rate_limited":
            raise RateLimited("Extend rate limit: RATE_LIMIT_EXCEEDED", 2.0)
        if fault == "retryable":
            raise RetryableError("a transient failure")
        return fault


class RecordingPublisher:
    """A `ResultPublisher` that records every call, per job id."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[str, ...]]] = defaultdict(list)

    def progress(self, job_id: str, state: JobState, info: dict[str, Any]) -> None:
        self.calls[job_id].append(("progress", state.value))

    def success(self, job_id: str, run: Run) -> None:
        self.calls[job_id].append(("success", str(run["id"]), str(run["status"])))

    def failure(self, job_id: str, error: ExtendqError) -> None:
        self.calls[job_id].append(("failure", type(error).__name__))

    def copy(self, source_id: str, target_id: str) -> bool:
        results = self.terminal(source_id)
        if results:
            self.calls[target_id].append(results[0])
        return bool(results)

    def terminal(self, job_id: str) -> list[tuple[str, ...]]:
        return [call for call in self.calls[job_id] if call[0] != "progress"]


def flush(client: redis.Redis) -> None:
    keys = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)


class JobHistories(RuleBasedStateMachine):
    """Two jobs (optionally with job keys, deadlines) through whatever the rules draw."""

    client: redis.Redis

    def __init__(self) -> None:
        super().__init__()
        flush(self.client)
        self.clock = Clock()
        self.store = RedisJobStore(self.client, keys=Keys(PREFIX), result_ttl_s=3600)
        self.api = FakeExtend(self.clock)
        self.publisher = RecordingPublisher()
        self.runner = JobRunner(
            api=self.api,
            store=self.store,
            publisher=self.publisher,
            checks=CheckSchedule(rand=lambda: 0.5),
            retry=RetryPolicy(budget=4, backoff_s=1.0, backoff_max_s=30.0, rand=lambda: 0.5),
            lease_s=30.0,
            clock=self.clock,
        )
        self.applier = EventApplier(runner=self.runner, clock=self.clock)
        self.wires: dict[str, dict[str, Any]] = {}
        self.owner_of: dict[str, str] = {}  # every task started -> the job that owns its result
        self.rank: dict[str, int] = {}
        self.final: dict[str, JobState] = {}
        self.delivered: list[dict[str, Any]] = []

    # ---- what happens ------------------------------------------------------------------------------------

    @initialize(
        deadlines=st.lists(st.none() | st.sampled_from([1.0, 20.0, 90.0]), min_size=2, max_size=2),
        keyed=st.booleans(),
    )
    def requests(self, deadlines: list[float | None], keyed: bool) -> None:
        for job_id, deadline in zip(JOBS, deadlines, strict=True):
            wire: dict[str, Any] = {"workflow": "workflow_invoice", "file": {"text": "Total: 1.00"}}
            if deadline is not None:
                wire["deadline_s"] = deadline
            if keyed:
                wire["job_key"] = f"key-{job_id}"
            self.wires[job_id] = wire

    @rule(job=st.sampled_from(JOBS), faults=FAULT_LISTS)
    def start(self, job: str, faults: list[str]) -> None:
        """The submit task runs (again, when redelivered), its API calls meeting these faults first."""
        self.api.faults[:0] = faults
        owner = self.runner.start_message(job, self.wires[job])
        assert owner is not None
        self.owner_of[job] = owner

    @rule(job=st.sampled_from(JOBS))
    def start_follower(self, job: str) -> None:
        """Another task with the same job key: it must share the job's one result."""
        if "job_key" in self.wires[job]:
            task = f"{job}-again-{len(self.owner_of)}"
            owner = self.runner.start_message(task, self.wires[job])
            assert owner is not None
            self.owner_of[task] = owner

    @rule(job=st.sampled_from(JOBS), lease=st.sampled_from(["none", "current", "stale"]), faults=FAULT_LISTS)
    def advance(self, job: str, lease: str, faults: list[str]) -> None:
        """A check task runs, sent by a cancel (no lease) or the dispatcher (its lease, or a stale one)."""
        self.api.faults[:0] = faults
        due = self.store.due_at(job)
        if lease == "none":
            self.runner.advance(job)
        elif lease == "current" and due is not None:
            self.runner.advance(job, due)
        elif lease == "stale":
            # A lease the job has moved past: the message is dropped, with no call and no change.
            before, calls = self.store.load(job), self.api.calls
            self.runner.advance(job, (due or self.clock.now) - 7.25)
            assert (self.store.load(job), self.api.calls) == (before, calls), f"a stale lease moved {job}"

    @rule()
    def dispatch(self) -> None:
        """The dispatcher claims every due job and each check runs."""
        for job_id, lease in self.store.claim_due(now=self.clock.now, limit=10, lease_s=30.0):
            self.runner.advance(job_id, lease)

    @rule(job=st.sampled_from(JOBS), step=st.booleans())
    def webhook(self, job: str, step: bool) -> None:
        """Extend reports the run as it is now (a run event, or a step event)."""
        for run in self.api.visible_runs_of(job):
            status = str(run["status"])
            kind = "workflow_run.step_run.processed" if step else EVENT_TYPES.get(status, "workflow_run.processing")
            delivery = {"eventId": f"event_{len(self.delivered)}", "eventType": kind, "payload": copy.deepcopy(run)}
            self.delivered.append(delivery)
            hypothesis.event(f"webhook: {self.applier.apply(delivery)}")

    @rule(index=st.integers(min_value=0, max_value=40))
    def replay(self, index: int) -> None:
        """An event delivered before arrives again (late, out of order)."""
        if self.delivered:
            self.applier.apply(copy.deepcopy(self.delivered[index % len(self.delivered)]))

    @rule(job=st.sampled_from(JOBS), faults=FAULT_LISTS)
    def slow_step(self, job: str, faults: list[str]) -> None:
        """A step outlives its lock: while its first API call is in flight the lock expires, and another step
        takes the job and goes as far as it can; then the slow step's call answers and it writes its outcome."""

        def meanwhile() -> None:
            self.client.delete(self.store.keys.lock(job))
            self.runner.advance(job)

        self.api.meanwhile = meanwhile
        self.api.faults[:0] = faults
        self.runner.advance(job)
        self.api.meanwhile = None

    @rule(job=st.sampled_from(JOBS))
    def cancel(self, job: str) -> None:
        """The cancel task runs."""
        if self.runner.request_cancel(job):
            self.runner.advance(job)

    @rule(job=st.sampled_from(JOBS), status=st.sampled_from(["PROCESSING", *TERMINAL]))
    def run_moves(self, job: str, status: str) -> None:
        self.api.move(job, status)

    @rule(fault=st.sampled_from(FAULTS))
    def fault(self, fault: str) -> None:
        """Some later API call, whichever it is, fails this way."""
        if len(self.api.faults) < 3:
            self.api.faults.append(fault)

    @rule(seconds=st.sampled_from([0.5, 3.0, 31.0, 130.0]))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    # ---- what must hold --------------------------------------------------------------------------------

    @invariant()
    def promises_hold(self) -> None:
        for job in set(self.owner_of.values()):
            self._moves_forward(job)
            self._at_most_once(job)
        for task, owner in self.owner_of.items():
            if task != owner:
                assert set(self.publisher.terminal(task)) <= set(self.publisher.terminal(owner)[:1]), task

    def _moves_forward(self, job: str) -> None:
        record = self.store.load(job)
        assert record is not None, f"{job} lost its record"
        rank = RANK[record.state]
        assert rank >= self.rank.get(job, 0), f"{job} went back to {record.state}"
        if rank == 3:
            ended = self.final.setdefault(job, record.state)
            assert ended == record.state, f"{job} ended {ended}, then {record.state}"
        self.rank[job] = rank
        assert record.finished == (rank == 3), f"{job}: state {record.state}, finished {record.finished}"
        assert (self.store.due_at(job) is None) == record.finished, f"{job}: scheduled {self.store.due_at(job)}"

    def _at_most_once(self, job: str) -> None:
        calls = self.publisher.calls[job]
        terminal = [i for i, call in enumerate(calls) if call[0] != "progress"]
        assert len(terminal) <= 1, f"{job} published {[calls[i] for i in terminal]}"
        assert not terminal or terminal[0] == len(calls) - 1, f"{job} published after its result: {calls}"
        assert len(self.api.runs_of(job)) <= 1, f"{job} has runs {[r['id'] for r in self.api.runs_of(job)]}"
        events = self._terminal_events()
        assert events[job] <= 1, f"{job} has {events[job]} terminal events"

    def _finished(self, job: str) -> bool:
        record = self.store.load(job)
        return record is not None and record.finished

    def _terminal_events(self) -> Counter[str]:
        entries = self.client.xrange(self.store.keys.events)
        return Counter(fields["job_id"] for _, fields in entries if fields["state"] in ("SUCCESS", "FAILURE"))

    def teardown(self) -> None:
        """Drive every job to its end (no more faults, runs end), then count: exactly one of everything."""
        owners = sorted(set(self.owner_of.values()))
        self.api.settle()
        for _ in range(10):
            pending = [job for job in owners if not self._finished(job)]
            if not pending:
                break
            self.clock.now += 200.0
            for job in pending:
                self.runner.advance(job)
            self.api.settle()
        events = self._terminal_events()
        for job in owners:
            record = self.store.load(job)
            assert record is not None and record.finished, f"{job} never finished"
            (result,) = self.publisher.terminal(job)
            assert (result[0] == "success") == (record.state is JobState.SUCCESS)
            hypothesis.event(f"a job ends: {result[0]} {result[-1]}")
            assert events[job] == 1
            assert len(self.api.runs_of(job)) <= 1
        for task, owner in self.owner_of.items():
            assert set(self.publisher.terminal(task)) == set(self.publisher.terminal(owner)), task
        assert self.store.in_flight() == 0


HISTORIES = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_job_histories_keep_every_promise(redis_client: redis.Redis) -> None:
    JobHistories.client = redis_client
    try:
        run_state_machine_as_test(JobHistories, settings=HISTORIES)
    finally:
        flush(redis_client)


@pytest.fixture
def machine(redis_client: redis.Redis) -> Iterator[JobHistories]:
    """One history, driven by hand (job-a has a deadline of 1 s)."""
    JobHistories.client = redis_client
    history = JobHistories()
    history.requests(deadlines=[1.0, None], keyed=False)
    yield history
    flush(redis_client)


@pytest.mark.parametrize("fault", ["rate_limited", "refused"])
def test_a_failed_lookup_after_a_lost_create_does_not_post_again(machine: JobHistories, fault: str) -> None:
    # Given a create that reached Extend but whose answer was lost
    machine.start("job-b", ["lost"])
    # When the lookup for that run is answered 429 (or cannot connect), and the job steps again
    machine.advance("job-b", "none", [fault])
    machine.advance("job-b", "none", [])
    # Then the job still has the one run
    assert [run["id"] for run in machine.api.runs_of("job-b")] == ["workflow_run_1"]


@pytest.mark.parametrize("end", ["deadline", "cancel"])
def test_a_job_ended_after_a_lost_create_cancels_the_run_that_landed(machine: JobHistories, end: str) -> None:
    # Given a create that reached Extend but whose answer was lost (job-a has a deadline of 1 s)
    machine.start("job-a", ["lost"])
    # When its deadline passes, or it is cancelled, before the job learnt of the run
    if end == "deadline":
        machine.tick(3.0)
        machine.advance("job-a", "none", [])
    else:
        machine.cancel("job-a")
    # Then the run it created does not go on (and get billed) with nobody waiting for it; the job ends once:
    # failed by its deadline, or with the cancelled run as its result (as any cancelled run is)
    expected = "failure" if end == "deadline" else "success"
    assert [call[0] for call in machine.publisher.terminal("job-a")] == [expected]
    assert [run["status"] for run in machine.api.runs_of("job-a")] == ["CANCELLED"]
