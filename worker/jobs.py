"""Submit and check one job, given an Extend API, a store and a publisher: the job's state machine."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis

from extendq.errors import (
    DeadlineExceeded,
    ExtendqError,
    InvalidJobRequest,
    JobCancelled,
    NotReplicated,
    RateLimited,
    RetryableError,
    RetryBudgetExhausted,
    RunRejected,
    StepOverran,
    Throttled,
)
from extendq.worker import metrics, submission
from extendq.worker.callbacks import failure_callback, success_callback
from extendq.worker.extend import ExtendApi, Run
from extendq.worker.followups import after_run
from extendq.worker.hand import StepHand
from extendq.worker.joblog import job_event, log_change, time_to_result
from extendq.worker.landed import landed_run
from extendq.worker.models import FileInput, JobRequest, JobState, is_terminal
from extendq.worker.ratelimit import Bucket, RateLimiter
from extendq.worker.records import EncodedResult, JobLock, JobRecord, new_record
from extendq.worker.replication import ReplicaWait
from extendq.worker.schedule import CheckSchedule, RetryPolicy
from extendq.worker.spending import spend, wait_for_token
from extendq.worker.store import NEW_CLAIM, RedisJobStore
from extendq.worker.sweep import SweepWatch
from extendq.worker.tenants import TenantAccounts
from extendq.worker.unforeseen import Redactor, internal_failure
from extendq.worker.usage import usage_note

log = logging.getLogger("extendq.jobs")


class ResultPublisher(Protocol):
    """Where producers read a job's outcome (Celery's result backend, in production)."""

    def progress(self, job_id: str, state: JobState, info: dict[str, Any]) -> None: ...

    def success(self, job_id: str, run: Run) -> None: ...

    def failure(self, job_id: str, error: ExtendqError) -> None: ...

    def copy(self, source_id: str, target_id: str) -> bool: ...


@dataclass(kw_only=True)
class JobRunner:
    """Moves jobs forward one step at a time; no step ever waits for Extend to finish a run."""

    api: ExtendApi
    store: RedisJobStore
    publisher: ResultPublisher
    checks: CheckSchedule = field(default_factory=CheckSchedule)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    secrets_key: str | None = None
    files_root: Path | None = None
    limiter: RateLimiter | None = None
    # Lists a batch member's batch; the callable it is given takes a token before each further request.
    batch_checker: Callable[[JobRecord, Callable[[], None]], None] | None = None
    # Finds a batch member's run in its batch (when the job is cancelled or out of time before it is known).
    batch_finder: Callable[[JobRecord, Callable[[], None]], None] | None = None
    sweep_check_interval_s: float | None = None
    sweep_min_in_flight: int = 0
    # While sweeping, safety-net checks are spread so the pool makes at most this many a second in all.
    sweep_safety_checks_per_s: float | None = None
    default_deadline_s: float | None = None
    lease_s: float = 120.0
    lock_ttl_s: float = 90.0
    # The short lease of a step under way (worker/hand.py): its lock is taken for this long and renewed while
    # the step runs, so a step whose worker died is taken up again within it. None: locks last `lock_ttl_s`.
    step_lease_s: float | None = None
    # How long after it was sent a create whose answer never came may still land on Extend (a gateway that gave
    # up while Extend went on): no second create before a lookup made after that long finds nothing.
    landing_window_s: float = 120.0
    clock: Callable[[], float] = time.time
    # Before each create, what the job wrote ahead of it reaches a replica, when the primary has any
    # (worker/replication.py): no failover orphans the run.
    replica_wait: ReplicaWait | None = None
    # Set when results live in the store's Redis: a step then writes its result in its own store script.
    encode_result: Callable[[str, Any, str], EncodedResult] | None = None
    # Other Extend accounts, for jobs naming a tenant (worker/tenants.py); `api` and `limiter` serve the rest.
    tenants: TenantAccounts | None = None
    # What the host raises to stop a step that ran too long (Celery's `SoftTimeLimitExceeded`): retried, and
    # counted against the job's retry budget like any transient failure.
    overrun_errors: tuple[type[BaseException], ...] = ()
    # Cuts the secrets the worker knows out of the message of an error nobody foresaw (worker/unforeseen.py).
    redact: Redactor = field(default_factory=Redactor)
    # Set in the webhook receiver: the metrics of a job it finishes go to the workers' endpoints (`metrics.HandedOver`).
    hand_over_metrics: bool = False
    _sweeps: SweepWatch = field(default_factory=SweepWatch)  # what this runner last saw of list sweeps
    _hand: StepHand | None = None  # the steps this process has under way, their leases renewed

    def api_for(self, record: JobRecord) -> ExtendApi:
        """The Extend API of the job's account: its tenant's, or the default one."""
        return self.api_of(record.request.tenant)

    def limiter_for(self, record: JobRecord) -> RateLimiter | None:
        """The rate limiter of the job's account: each tenant has a budget of its own."""
        return self.limiter_of(record.request.tenant)

    def api_of(self, tenant: str | None) -> ExtendApi:
        """The Extend API of an account: a tenant's, or (None) the default one; `InvalidJobRequest` for a tenant
        this worker does not know."""
        return self.api if tenant is None else self._tenants(tenant).api(tenant)

    def limiter_of(self, tenant: str | None) -> RateLimiter | None:
        """The rate limiter of an account: a tenant's own, or (None) the default one."""
        return self.limiter if tenant is None else self._tenants(tenant).limiter(tenant)

    def _tenants(self, tenant: str) -> TenantAccounts:
        if self.tenants is None:
            raise InvalidJobRequest(f"unknown tenant {tenant!r}: this worker has no tenants configured")
        return self.tenants

    def start_message(self, job_id: str, kwargs: dict[str, Any]) -> str | None:
        """Start a job from a task message's kwargs; a malformed message fails the job at once, without retries."""
        try:
            request = JobRequest.parse(kwargs)
        except InvalidJobRequest as exc:
            self.publisher.failure(job_id, exc)
            fields = {"event": "refused", "job_id": job_id, "state": JobState.FAILURE.value, "error": "invalid_request"}
            log.info("job %s refused: %s", job_id, exc, extra=fields)
            return None
        return self.start(job_id, request, secrets=request.secrets)

    def start(self, job_id: str, request: JobRequest, *, secrets: str | None = None) -> str:
        """Record a new job and submit it; the id of the job that owns its job key (itself, or an earlier one)."""
        if request.deadline_s is None and self.default_deadline_s is not None:
            request = request.model_copy(update={"deadline_s": self.default_deadline_s})
        now = self.clock()
        first_due_s = self.lease_s if self.step_lease_s is None else self.step_lease_s  # renewed while held
        owner, token = self.store.create_locked(
            job_id, request, now=now, lease_s=first_due_s, secrets=secrets, lock_ttl_s=self._lock_s()
        )
        if owner != job_id:
            self._follow(owner, job_id)
        elif token is None:  # recorded before: a job its producer recorded (its claim is its start message's)
            self.advance(job_id, NEW_CLAIM)  # ... or a redelivered message, which finds the job moved on
        else:  # recorded (and locked) just now: its record is known without reading it back
            record = new_record(job_id, request, now=now, secrets=secrets)
            record.lock, record.aliases = JobLock(token), []
            try:
                with self._holding(record, now + first_due_s):
                    self._step(record)
            finally:
                if not record.lock.released:
                    self.store.unlock(job_id, token)
        return owner

    def advance(self, job_id: str, lease: float | str | None = None) -> None:
        """Take the job's next step (submit, check, cancel or expire), then schedule the one after it.

        `lease` is the claim the message carries: the lease end the dispatcher claimed the job with, or
        `NEW_CLAIM` for a start its producer recorded; a message whose claim is no longer the job's (the job
        moved on since, or another worker took it over) is stale and does nothing.
        """
        with self.store.locked(job_id, ttl_s=self._lock_s(), claim=lease) as read:
            if read is None:
                return  # another task holds the job, or the message is stale
            record, due = read
            if record is not None and not record.finished:
                with self._holding(record, due):
                    self._step(record)

    def _lock_s(self) -> float:
        """How long a step's lock is taken for: its short lease when steps are held by a heartbeat."""
        return self.lock_ttl_s if self.step_lease_s is None else min(self.step_lease_s, self.lock_ttl_s)

    def _holding(self, record: JobRecord, due: float | None) -> AbstractContextManager[object]:
        """Keep the step's lease (its lock, and the job's due entry `due`) renewed while it runs."""
        if self.step_lease_s is None or record.lock is None:
            return nullcontext()
        if self._hand is None:
            self._hand = StepHand(store=self.store, lease_s=self.step_lease_s)
        return self._hand.holding(record.job_id, record.lock.token, seen_due=due, hold_s=self.lock_ttl_s)

    def request_cancel(self, job_id: str) -> bool:
        """Ask for the job to be cancelled at its next step; False when it is unknown or already finished."""
        record = self.store.load(job_id)
        if record is None or record.finished:
            return False
        self.store.update(job_id, cancel_requested=True)
        return True

    def follow(self, owner: str, alias: str) -> None:
        """Make `alias` (a task enqueued with an existing job key) get the result of job `owner`."""
        self._follow(owner, alias)

    def _follow(self, owner: str, alias: str) -> None:
        self.store.add_alias(owner, alias)
        record = self.store.load(owner)
        if record is not None and record.finished:
            self.publisher.copy(owner, alias)
        log.info("job %s shares job key %r with job %s", alias, self._key_of(record), owner)

    def _step(self, record: JobRecord) -> None:
        now = self.clock()
        if record.fresh:  # recorded, and counted in flight, by this very step
            metrics.job_recorded(record)
            self._log(record, "", "enqueued")
        elif record.state is JobState.QUEUED:  # not tried yet (a producer may have recorded it)
            self.note_enqueued(record)
        try:
            self._act(record, now)
        except RetryableError as exc:
            self._retry_later(record, exc, now)
        except ExtendqError as exc:
            self._fail(record, exc, now)
        except self.overrun_errors as exc:
            overran = StepOverran(f"the step was stopped at its time limit ({type(exc).__name__})")
            self._retry_later(record, overran, self.clock())
        except redis.RedisError:
            raise  # Redis failing: nothing can be recorded; the job's claim lapses and it comes due again
        except Exception as exc:  # not one of ours: a bug, or an answer nobody foresaw; the job must still end
            redact = self.redact.job(record.secrets, self.secrets_key)
            self._fail(record, internal_failure(exc, job_id=record.job_id, run_id=record.run_id, redact=redact), now)

    def _act(self, record: JobRecord, now: float) -> None:
        ending = record.cancel_requested or (record.deadline_at is not None and now >= record.deadline_at)
        if ending and record.run_id is None and self._found_before_ending(record, now):
            return
        if record.cancel_requested and record.run_id is None:
            raise JobCancelled("the job was cancelled before its run was submitted")
        if record.deadline_at is not None and now >= record.deadline_at:
            self._expire(record)
        if record.run_id is None and record.extend_batch_id is None and record.batch_task is not None:
            if self._waits_for_its_batch(record, now):
                return
        if record.run_id is None and record.extend_batch_id is not None:
            self._check_batch_member(record, now)
        elif record.run_id is None:
            self._submit(record, now)
        else:
            self._check(record, now)

    def _submit(self, record: JobRecord, now: float) -> None:
        run = self._landed_run(record) if record.posting_since is not None else None
        if run is None and record.posting_since is not None and now < record.posting_since + self.landing_window_s:
            # The earlier create may still land: look once more when it no longer can, and never post meanwhile
            # (a webhook or that look adopts the run if it does land).
            self.store.schedule(record.job_id, record.posting_since + self.landing_window_s)
            log.info(
                "job %s: an earlier create may still land; looking again in %.0fs",
                record.job_id,
                record.posting_since + self.landing_window_s - now,
            )
            return
        if run is None and record.posting_since is not None:
            # The earlier POST did not land: a create that now waits for its token must not look again when its
            # token is due (that lookup would spend the token, and the create wait for the next one, forever).
            record.posting_since = None
            self.store.update(record.job_id, posting_since=None)
        if run is None:
            body = submission.create_body(
                record, api_for=self.api_for, files_root=self.files_root, secrets_key=self.secrets_key
            )
            self._spend(record, self.clock(), Bucket.REQUESTS, Bucket.RUNS)  # not `now`: a lookup may have taken long
            if not record.fresh:  # a fresh record was written posting already
                self.store.update(record.job_id, posting_since=now, state=JobState.SUBMITTING.value)
            record.fresh = False
            if self.replica_wait is not None:  # the record and its posting mark on a replica first
                self.replica_wait.confirm(f"the create of job {record.job_id}")
            run = self.api_for(record).create_run(body)
        record.run_id, record.submitted_at, record.state = str(run["id"]), now, JobState.RUNNING
        self._log(record, run["status"], "submitted")
        metrics.job_submitted(record)
        self._after_run(record, run, now, created=True)

    def _check_batch_member(self, record: JobRecord, now: float) -> None:
        # The job's run came from a batch and is not known yet: list the batch (safety net of the sweeps).
        self._spend(record, now, Bucket.REQUESTS)
        if self.batch_checker is not None:
            self.batch_checker(record, lambda: self._spend(record, self.clock(), Bucket.REQUESTS))
        latest = self.store.load(record.job_id)
        if latest is not None and not latest.finished and latest.run_id is None:
            tenant = record.request.tenant
            delay, stretched = self._check_delay_s(now - (record.submitted_at or now), tenant=tenant)
            self.store.schedule(record.job_id, now + delay, stretched=stretched, tenant=tenant)

    def _waits_for_its_batch(self, record: JobRecord, now: float) -> bool:
        """A member whose batch task has not marked it posted: it joins the Extend batch the task created, waits
        two leases for the task (which retries through an outage), or else goes on alone (True: it waits). The
        task reads the member under its lock, so a member is never posted both in its batch and alone; one whose
        batch post may have landed looks for its run first (`_submit`, with the landing window).
        """
        assert record.batch_task is not None
        extend_batch = self.store.extend_batch_of(record.batch_task)
        if extend_batch is not None:
            record.extend_batch_id = extend_batch
            self.store.update(
                record.job_id, extend_batch_id=extend_batch, state=JobState.RUNNING.value, posting_since=None
            )
            return False
        if now < record.enqueued_at + 2 * self.lease_s:  # the batch task retries meanwhile (an outage, say)
            self.store.schedule(record.job_id, now + self.lease_s)
            return True
        record.batch_task = None
        self.store.update(record.job_id, batch_task=None)
        log.info("job %s: its batch was not posted in time; it goes on alone", record.job_id)
        return False

    def _found_before_ending(self, record: JobRecord, now: float) -> bool:
        """A job cancelled or out of time before its run is known: a run that exists is found first, so that it is
        cancelled rather than left going unseen (True: that run had ended, and so has the job)."""
        if record.posting_since is not None:
            self._adopt_before_ending(record, now)
            return False
        return record.extend_batch_id is not None and self._ended_in_batch(record, now)

    def _ended_in_batch(self, record: JobRecord, now: float) -> bool:
        """A batch member cancelled or out of time before its run is known: find the run in the batch, so that
        the run itself is cancelled, not left going with nobody waiting (True: its run had ended, and so has
        the job)."""
        if self.batch_finder is None:
            return False
        self._spend(record, now, Bucket.REQUESTS)
        self.batch_finder(record, lambda: self._spend(record, self.clock(), Bucket.REQUESTS))
        latest = self.store.load(record.job_id)
        if latest is None or latest.finished:
            return True
        record.run_id, record.submitted_at = latest.run_id, latest.submitted_at
        return False

    def _adopt_before_ending(self, record: JobRecord, now: float) -> None:
        # A job cancelled or out of time after a create whose answer was lost: a run that did land must be
        # found (and then cancelled), not left running unseen.
        run = self._landed_run(record)
        if run is not None:
            record.run_id, record.submitted_at = str(run["id"]), now
            self.store.record_run(record.job_id, record.run_id, submitted_at=now)

    def _landed_run(self, record: JobRecord) -> Run | None:
        """The run an earlier POST may have created before its answer was lost, found before posting again."""
        return landed_run(
            record,
            api=self.api_for(record),
            store=self.store,
            spend=self._spend,
            clock=self.clock,
            conclusive_from=(record.posting_since or 0.0) + self.landing_window_s,
        )

    def _check(self, record: JobRecord, now: float) -> None:
        assert record.run_id is not None
        if record.cancel_requested and not record.cancel_sent:
            self._cancel_run(record)
        self._spend(record, now, Bucket.REQUESTS)
        run = self.api_for(record).get_run(record.run_id)
        record.checks += 1  # written with the step's outcome (`note_run`, `finish`): the job is locked
        self._after_run(record, run, now)

    def _after_run(self, record: JobRecord, run: Run, now: float, *, created: bool = False) -> None:
        """Publish a terminal run, or note the run's status and schedule the next check; `created`: a new run."""
        status = str(run.get("status") or "")
        if is_terminal(status):
            if created:
                self.store.record_run(record.job_id, str(record.run_id), submitted_at=now)
            self._succeed(record, run, now, via="check" if record.checks else "submit")
            return
        event = None
        if status != record.run_status:
            if record.checks:  # else this is the submission, whose line already named the first status
                self._log(record, status, "progress")
            event = job_event(record, state=JobState.RUNNING, status=status)
        record.run_status, record.attempts = status, 0
        delay, stretched = self._check_delay_s(now - (record.submitted_at or now), tenant=record.request.tenant)
        due = now + delay if record.deadline_at is None else min(now + delay, record.deadline_at)
        info = record.progress()
        result = self._encoded(record.job_id, info, JobState.RUNNING.value)
        written = self.store.note_run(
            record, due_at=due, stretched=stretched, event=event, created=created, result=result
        )
        if not written:
            self._outlived(record, created=created, now=now)
        elif result is None:  # results in another Redis: written after the step's own (fenced) writes
            self.publisher.progress(record.job_id, JobState.RUNNING, info)

    def _outlived(self, record: JobRecord, *, created: bool, now: float) -> None:
        """The step lost its lock (or the job finished) before its outcome was written: only a run it created is
        recorded, so that no second create follows; the lock's holder, or the next step, takes it from there."""
        if created and record.run_id is not None:
            self.store.record_run(record.job_id, record.run_id, submitted_at=record.submitted_at or now)
        log.warning("job %s: a step outlived its lock; its outcome was not written", record.job_id)

    def check_delay_s(self, elapsed_s: float, tenant: str | None = None) -> tuple[float, bool]:
        """The delay to a run's next check `elapsed_s` after submission, and whether the sweeps of its account
        (`tenant`, None for the default one) stretched it."""
        return self._check_delay_s(elapsed_s, tenant=tenant)

    def _check_delay_s(self, elapsed_s: float, *, tenant: str | None = None) -> tuple[float, bool]:
        """The delay to the next check, and whether it was stretched because its account's list sweeps run."""
        delay = self.checks.delay_s(elapsed_s)
        interval_s = self.sweep_check_interval_s
        tenants = self.tenants.names if self.tenants is not None else ()
        if interval_s is not None and self._sweeps.sweeping(self.store, self.sweep_min_in_flight, tenant, tenants):
            # List sweeps notice the run's end; this check is only the safety net (worker/sweep.py).
            safety = self._sweeps.safety_interval_s(interval_s, self._safety_checks_per_s(tenant), tenant)
            return max(delay, safety * (0.75 + 0.5 * self.retry.rand())), True
        return delay, False

    def _safety_checks_per_s(self, tenant: str | None) -> float | None:
        """How many safety-net checks a second the account's jobs may make while its sweeps run."""
        if tenant is None or self.tenants is None:
            return self.sweep_safety_checks_per_s
        return self.tenants.safety_checks_per_s(tenant)

    def _expire(self, record: JobRecord) -> None:
        if record.run_id is not None:
            self._cancel_run(record)
        raise DeadlineExceeded(f"the job's deadline of {record.request.deadline_s} s passed", record.run_id)

    def _cancel_run(self, record: JobRecord) -> None:
        assert record.run_id is not None
        self._spend(record, self.clock(), Bucket.REQUESTS)
        try:
            self.api_for(record).cancel_run(record.run_id)
        except RunRejected:
            pass  # the run had already ended: the next check publishes it
        record.cancel_sent = True
        self.store.update(record.job_id, cancel_sent=True)

    def _retry_later(self, record: JobRecord, exc: RetryableError, now: float) -> None:
        if isinstance(exc, Throttled):
            wait_for_token(self.store, record, exc, now, rand=self.retry.rand, clock=self.clock)
            return
        # A 429 is Extend pacing us, not a failure: the whole pool pauses for its Retry-After, and waiting
        # it out does not spend the retry budget; nor does waiting for a replica.
        paced = isinstance(exc, RateLimited | NotReplicated)
        if isinstance(exc, RateLimited) and (limiter := self.limiter_for(record)) is not None:
            limiter.pause(exc.retry_after_s or 1.0)
        attempts = max(record.attempts, 1) if paced else self.store.bump(record.job_id, "attempts")
        if not paced and self.retry.exhausted(attempts):
            message = f"gave up after {attempts} transient failures; last: {exc}"
            self._fail(record, RetryBudgetExhausted(message, record.run_id), now)
            return
        if record.run_id is None and not exc.may_have_landed:
            self.store.update(record.job_id, posting_since=None)
            record.fresh = False
        # A 429 waits its Retry-After (and a little spread), not the growing backoff of real failures.
        delay = self.retry.delay_s(1 if paced else attempts, exc.retry_after_s)
        self.store.schedule(record.job_id, now + delay)
        log.warning("job %s retry %d in %.1fs: %s", record.job_id, attempts, delay, exc)

    def _spend(self, record: JobRecord, now: float, *buckets: Bucket) -> None:
        """Take a token from each bucket for one API call, or raise `Throttled` (worker/spending.py)."""
        spend(self.limiter_for(record), self.store, record, now, buckets, clock=self.clock)

    def finish_with_run(self, record: JobRecord, run: Run, now: float, *, via: str = "check") -> None:
        """Publish a terminal run as the job's result (the caller holds the job's lock); `via`: what found it."""
        self._succeed(record, run, now, via=via)

    def note_enqueued(self, record: JobRecord) -> None:
        """Log and count a recorded job the first time this is asked for it (so once per job)."""
        if metrics.job_enqueued(self.store, record):
            self._log(record, "", "enqueued")

    def note_submitted(self, record: JobRecord, *, via: str) -> None:
        """Log and count a job whose run was requested other than by `_submit` (a batch)."""
        self._log(record, "", "submitted", via=via)
        metrics.job_submitted(record)

    def _succeed(self, record: JobRecord, run: Run, now: float, *, via: str) -> None:
        targets = [record.job_id, *self._aliases(record)]
        # Without aliases the result is written by the finishing script itself; else published first, to all.
        result = self._encoded(record.job_id, run, JobState.SUCCESS.value) if len(targets) == 1 else None
        if result is None and not self.store.holds(record):
            self._outlived(record, created=False, now=now)
            return
        if result is None:
            for job_id in targets:
                self.publisher.success(job_id, run)
        record.run_status = str(run["status"])
        event = job_event(record, state=JobState.SUCCESS, status=record.run_status)
        if (to_result := time_to_result(run, now)) is not None:
            event["to_result_s"] = f"{to_result:.3f}"  # the dashboard's endTime -> result percentiles
        callback = success_callback(record, run)
        usage = usage_note(run, workflow_id=record.request.workflow.id, now=now, tenant=record.request.tenant)
        aliases = self.store.finish(
            record,
            now=now,
            state=JobState.SUCCESS,
            error="",
            event=event,
            callback=callback,
            result=result,
            usage=usage,
        )
        if aliases is not None:
            _publish_late(aliases, targets, lambda job_id: self.publisher.success(job_id, run))
            self._log(record, record.run_status, "finished", via=via)
            if self.hand_over_metrics:
                metrics.hand_over_finished(self.store, record, run, now, via=via)
            else:
                metrics.job_finished(record, run, now, via=via)
            after_run(self.store, record, run, now, usage_noted=True)

    def _fail(self, record: JobRecord, error: ExtendqError, now: float) -> None:
        targets = [record.job_id, *self._aliases(record)]
        if not self.store.holds(record):
            self._outlived(record, created=False, now=now)
            return
        for job_id in targets:
            self.publisher.failure(job_id, error)
        kind = getattr(error, "kind", "invalid_request")
        event = job_event(record, state=JobState.FAILURE, status=record.run_status or "", error=kind)
        callback = failure_callback(record, error)
        aliases = self.store.finish(record, now=now, state=JobState.FAILURE, error=kind, event=event, callback=callback)
        if aliases is not None:
            _publish_late(aliases, targets, lambda job_id: self.publisher.failure(job_id, error))
            self._log(record, record.run_status or "", "failed", error=kind, detail=str(error))
            metrics.job_failed(record, kind, now)

    def _encoded(self, job_id: str, result: Any, state: str) -> EncodedResult | None:
        return None if self.encode_result is None else self.encode_result(job_id, result, state)

    def _aliases(self, record: JobRecord) -> list[str]:
        return record.aliases if record.aliases is not None else self.store.aliases(record.job_id)

    def file_wire(self, item: FileInput) -> dict[str, Any]:
        """A file input in the API's wire form; a local `path` is uploaded first."""
        return submission.file_wire(item, self.api, self.files_root)

    def _log(self, record: JobRecord, status: str, what: str, **told: str) -> None:
        log_change(record, status, what, now=self.clock(), **told)

    @staticmethod
    def _key_of(record: JobRecord | None) -> str | None:
        return record.request.job_key if record is not None else None


def _publish_late(aliases: list[str], done: list[str], publish: Callable[[str], None]) -> None:
    """Publish to aliases added after the result was first published (`done`), as the job finished."""
    for alias in aliases:
        if alias not in done:
            publish(alias)
