"""Submit and check one job, given an Extend API, a store and a publisher: the job's state machine."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from worker import metrics
from worker.callbacks import failure_callback, success_callback
from worker.errors import (
    DeadlineExceeded,
    InputNotFound,
    InvalidJobRequest,
    JobCancelled,
    RateLimited,
    RetryableError,
    RetryBudgetExhausted,
    RunRejected,
    Throttled,
    WorkerError,
)
from worker.extend import ExtendApi, Run
from worker.followups import after_run
from worker.models import JOB_ID_KEY, TERMINAL_RUN_STATUSES, FileInput, JobRequest, JobState, PathFile
from worker.ratelimit import Bucket, RateLimiter
from worker.records import EncodedResult, JobLock, JobRecord
from worker.schedule import CheckSchedule, RetryPolicy
from worker.secrets import unseal
from worker.store import RedisJobStore
from worker.tenants import TenantAccounts
from worker.usage import usage_note

log = logging.getLogger("extendq.jobs")
# The job's state after each logged change (`_log`).
_STATE_AFTER = {
    "enqueued": JobState.QUEUED,
    "submitted": JobState.RUNNING,
    "progress": JobState.RUNNING,
    "finished": JobState.SUCCESS,
    "failed": JobState.FAILURE,
}
_LANDED_SLACK_S = 30.0
# How late a reserved token may still be spent: within the margin the limiter keeps per window.
_LATE_GRACE_S = {Bucket.REQUESTS: 0.08, Bucket.RUNS: 0.5}
_OWNER_BATCH = 50


class ResultPublisher(Protocol):
    """Where producers read a job's outcome (Celery's result backend, in production)."""

    def progress(self, job_id: str, state: JobState, info: dict[str, Any]) -> None: ...

    def success(self, job_id: str, run: Run) -> None: ...

    def failure(self, job_id: str, error: WorkerError) -> None: ...

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
    batch_checker: Callable[[JobRecord], None] | None = None
    sweep_check_interval_s: float | None = None
    sweep_min_in_flight: int = 0
    # While sweeping, safety-net checks are spread so the pool makes at most this many a second in all.
    sweep_safety_checks_per_s: float | None = None
    default_deadline_s: float | None = None
    lease_s: float = 120.0
    lock_ttl_s: float = 90.0
    clock: Callable[[], float] = time.time
    # Set when results live in the store's Redis: a step then writes its result in its own store script.
    encode_result: Callable[[str, Any, str], EncodedResult] | None = None
    # Other Extend accounts, for jobs naming a tenant (worker/tenants.py); `api` and `limiter` serve the rest.
    tenants: TenantAccounts | None = None
    _sweep_seen: tuple[bool, float, int] = (False, 0.0, 0)  # sweeping, known until (monotonic), jobs in flight

    def api_for(self, record: JobRecord) -> ExtendApi:
        """The Extend API of the job's account: its tenant's, or the default one."""
        tenant = record.request.tenant
        return self.api if tenant is None else self._tenants(tenant).api(tenant)

    def limiter_for(self, record: JobRecord) -> RateLimiter | None:
        """The rate limiter of the job's account: each tenant has a budget of its own."""
        tenant = record.request.tenant
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
        owner, token = self.store.create_locked(
            job_id, request, now=now, lease_s=self.lease_s, secrets=secrets, lock_ttl_s=self.lock_ttl_s
        )
        if owner != job_id:
            self._follow(owner, job_id)
        elif token is None:  # recorded before: a redelivered message, or a job its producer recorded
            self.advance(job_id)
        else:  # recorded (and locked) just now: its record is known without reading it back
            record = new_record(job_id, request, now=now, secrets=secrets)
            record.lock, record.aliases = JobLock(token), []
            try:
                self._step(record, noted=False)
            finally:
                if not record.lock.released:
                    self.store.unlock(job_id, token)
        return owner

    def advance(self, job_id: str, lease: float | None = None) -> None:
        """Take the job's next step (submit, check, cancel or expire), then schedule the one after it.

        `lease` is the due time the dispatcher claimed the job with; a message whose lease is no longer
        current (the job moved on since) is stale and does nothing.
        """
        with self.store.locked(job_id, ttl_s=self.lock_ttl_s) as read:
            if read is None:
                return  # another task holds the job
            record, due = read
            if lease is not None and (due is None or abs(due - lease) >= 1e-3):
                return  # stale: the job moved on since this message was sent
            if record is not None and not record.finished:
                self._step(record)

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

    def _step(self, record: JobRecord, *, noted: bool | None = None) -> None:
        """One step; `noted`: whether the job is among the jobs in flight already (None: ask, if not tried yet)."""
        now = self.clock()
        if noted is False:
            metrics.job_recorded(record)
            self._log(record, "", "enqueued")
        elif record.state is JobState.QUEUED:  # not tried yet (a producer may have recorded it)
            self.note_enqueued(record)
        try:
            self._act(record, now)
        except RetryableError as exc:
            self._retry_later(record, exc, now)
        except WorkerError as exc:
            self._fail(record, exc, now)

    def _act(self, record: JobRecord, now: float) -> None:
        ending = record.cancel_requested or (record.deadline_at is not None and now >= record.deadline_at)
        if ending and record.run_id is None and record.posting_since is not None:
            self._adopt_before_ending(record, now)
        if record.cancel_requested and record.run_id is None:
            raise JobCancelled("the job was cancelled before its run was submitted")
        if record.deadline_at is not None and now >= record.deadline_at:
            self._expire(record)
        if record.run_id is None and record.extend_batch_id is not None:
            self._check_batch_member(record, now)
        elif record.run_id is None:
            self._submit(record, now)
        else:
            self._check(record, now)

    def _submit(self, record: JobRecord, now: float) -> None:
        run = self._landed_run(record) if record.posting_since is not None else None
        if run is None and record.posting_since is not None:
            # The earlier POST did not land: a create that now waits for its token must not look again when its
            # token is due (that lookup would spend the token, and the create wait for the next one, forever).
            record.posting_since = None
            self.store.update(record.job_id, posting_since=None)
        if run is None:
            body = self._create_body(record)
            self._spend(record, self.clock(), Bucket.REQUESTS, Bucket.RUNS)  # not `now`: a lookup may have taken long
            if not record.fresh:  # a fresh record was written posting already
                self.store.update(record.job_id, posting_since=now, state=JobState.SUBMITTING.value)
            record.fresh = False
            run = self.api_for(record).create_run(body)
        record.run_id, record.submitted_at, record.state = str(run["id"]), now, JobState.RUNNING
        self._log(record, run["status"], "submitted")
        metrics.job_submitted(record)
        self._after_run(record, run, now, created=True)

    def _check_batch_member(self, record: JobRecord, now: float) -> None:
        # The job's run came from a batch and is not known yet: list the batch (safety net of the sweeps).
        self._spend(record, now, Bucket.REQUESTS)
        if self.batch_checker is not None:
            self.batch_checker(record)
        latest = self.store.load(record.job_id)
        if latest is not None and not latest.finished and latest.run_id is None:
            delay, stretched = self._check_delay_s(now - (record.submitted_at or now))
            self.store.schedule(record.job_id, now + delay, stretched=stretched)

    def _adopt_before_ending(self, record: JobRecord, now: float) -> None:
        # A job cancelled or out of time after a create whose answer was lost: a run that did land must be
        # found (and then cancelled), not left running unseen.
        run = self._landed_run(record)
        if run is not None:
            record.run_id, record.submitted_at = str(run["id"]), now
            self.store.record_run(record.job_id, record.run_id, submitted_at=now)

    def _landed_run(self, record: JobRecord) -> Run | None:
        """The run an earlier POST may have created before its answer was lost, found before posting again."""
        try:
            return self._find_landed_run(record)
        except RetryableError as exc:
            # The lookup failed, not the create: the earlier POST may still have landed, keep looking later.
            exc.may_have_landed = True
            raise

    def _find_landed_run(self, record: JobRecord) -> Run | None:
        # Runs other jobs already own are skipped without a request; the few others are fetched and matched.
        since = (record.posting_since or 0) - _LANDED_SLACK_S
        batch: list[str] = []

        def pace() -> None:  # every page of the listing is a request of its own
            self._spend(record, self.clock(), Bucket.REQUESTS)

        for summary in self.api_for(record).recent_runs(record.request.workflow.id, since, pace):
            batch.append(str(summary["id"]))
            if len(batch) >= _OWNER_BATCH:
                if (run := self._match_unowned(record, batch)) is not None:
                    return run
                batch = []
        return self._match_unowned(record, batch)

    def _match_unowned(self, record: JobRecord, run_ids: list[str]) -> Run | None:
        for run_id, owner in zip(run_ids, self.store.owners(run_ids), strict=True):
            if owner is not None:
                continue
            self._spend(record, self.clock(), Bucket.REQUESTS)
            run = self.api_for(record).get_run(run_id)
            if (run.get("metadata") or {}).get(JOB_ID_KEY) == record.job_id:
                log.warning("job %s adopts run %s created by an earlier attempt", record.job_id, run_id)
                return run
        return None

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
        status = str(run.get("status"))
        if status in TERMINAL_RUN_STATUSES:
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
        # List sweeps read the default account only: a tenant's runs keep their own checks.
        delay, stretched = self._check_delay_s(now - (record.submitted_at or now), swept=record.request.tenant is None)
        due = now + delay if record.deadline_at is None else min(now + delay, record.deadline_at)
        result = self._encoded(record.job_id, record.progress(), JobState.RUNNING.value)
        if result is None:
            self.publisher.progress(record.job_id, JobState.RUNNING, record.progress())
        self.store.note_run(record, due_at=due, stretched=stretched, event=event, created=created, result=result)

    def check_delay_s(self, elapsed_s: float) -> tuple[float, bool]:
        """The delay to a run's next check `elapsed_s` after submission, and whether sweeps stretched it."""
        return self._check_delay_s(elapsed_s)

    def _check_delay_s(self, elapsed_s: float, *, swept: bool = True) -> tuple[float, bool]:
        """The delay to the next check, and whether it was stretched because list sweeps are running."""
        delay = self.checks.delay_s(elapsed_s)
        if swept and self.sweep_check_interval_s is not None and self._sweeping():
            # List sweeps notice the run's end; this check is only the safety net, and with many runs in flight
            # it is spread further, so that the safety net never spends more than its share of the API.
            safety = self.sweep_check_interval_s
            if self.sweep_safety_checks_per_s:
                safety = max(safety, self._sweep_seen[2] / self.sweep_safety_checks_per_s)
            return max(delay, safety * (0.75 + 0.5 * self.retry.rand())), True
        return delay, False

    def _sweeping(self) -> bool:
        """Sweeps are running, or will be within one interval (enough jobs in flight); a yes is kept a second."""
        now = time.monotonic()
        if now >= self._sweep_seen[1]:
            pipe = self.store.client.pipeline(transaction=False)
            pipe.exists(self.store.keys.sweep("active"))
            pipe.zcard(self.store.keys.due)
            active, in_flight = pipe.execute()
            sweeping = bool(active) or in_flight >= self.sweep_min_in_flight
            self._sweep_seen = (sweeping, now + 1.0 if sweeping else now, int(in_flight))
        return self._sweep_seen[0]

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
            self._wait_for_token(record, exc, now)
            return
        # A 429 is Extend pacing us, not a failure: the whole pool pauses for its Retry-After, and waiting
        # it out does not spend the retry budget.
        paced = isinstance(exc, RateLimited)
        if paced and (limiter := self.limiter_for(record)) is not None:
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
        """Take a token from each bucket for one API call, or raise `Throttled` with the wait for the next one.

        Buckets are reserved one at a time, slowest first, and a reservation is kept in the job's record
        until the call goes out: a create waiting a few seconds for a runs-per-minute token does not hold a
        request token (which would stall every check meanwhile), it takes one when its run token is due.
        """
        limiter = self.limiter_for(record)
        if limiter is None:
            return
        if not limiter.limits.active:
            buckets = buckets[:1]  # no budgets: one look at a 429's pause is enough
        held = dict(record.held_tokens)
        # A bucket without a limit holds no token: its reservation would only repeat the requests bucket's pause,
        # and a create held up by it would find its request token gone stale meanwhile.
        limited = [bucket for bucket in buckets if limiter.limited(bucket)]
        for bucket in sorted(limited, key=lambda b: b is Bucket.REQUESTS):
            if bucket.value in held:
                # Never early: a token spent before its slot bunches with the calls of the slot before it.
                if now < held[bucket.value]:
                    raise Throttled(
                        "a reserved token is not due yet", held[bucket.value] - now, due_at=held[bucket.value]
                    )
                if now <= held[bucket.value] + _LATE_GRACE_S[bucket]:
                    continue
                # Far too late for its slot (beyond the limiter's margin): spent now, it would bunch with the
                # calls of the slots after it. A little late is normal: dispatch and a free slot take time.
                del held[bucket.value]
            grant = limiter.reserve(bucket)
            # The wait counts from the reservation (Redis time), not from the step's start a moment earlier:
            # counted from `now`, the call would go out before its slot.
            slot = self.clock() + grant.wait_s
            if grant.now:
                held[bucket.value] = slot
                continue
            if grant.reserved:
                held[bucket.value] = slot
            self._hold(record, held)
            raise Throttled(
                f"waiting {grant.wait_s:.2f}s for the shared rate limit",
                slot - now,
                reserved=grant.reserved,
                due_at=slot,
            )
        if record.held_tokens:
            self._hold(record, {})

    def _hold(self, record: JobRecord, held: dict[str, float]) -> None:
        record.held_tokens = held
        self.store.update(record.job_id, held_tokens=json.dumps(held) if held else None)

    def _wait_for_token(self, record: JobRecord, exc: Throttled, now: float) -> None:
        # A reserved token is due at an exact moment; an unreserved wait (a long pause) gets spread out.
        wait = exc.retry_after_s or 0.0
        if not exc.reserved:
            wait += self.retry.rand() * min(wait, 5.0)
        # A reserved token is due at its slot; else the wait counts from now (after any calls of this step).
        at = exc.due_at if exc.reserved and exc.due_at is not None else max(now, self.clock()) + wait
        # A fresh record says it is posting: nothing went out, so the next try must not look for a landed run.
        self.store.schedule(record.job_id, at, posted=not record.fresh)

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
        if result is None:
            for job_id in targets:
                self.publisher.success(job_id, run)
        record.run_status = str(run["status"])
        event = job_event(record, state=JobState.SUCCESS, status=record.run_status)
        callback = success_callback(record, run)
        usage = usage_note(run, workflow_id=record.request.workflow.id, now=now)
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
            metrics.job_finished(record, run, now, via=via)
            after_run(self.store, record, run, now, usage_noted=True)

    def _fail(self, record: JobRecord, error: WorkerError, now: float) -> None:
        targets = [record.job_id, *self._aliases(record)]
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

    def _create_body(self, record: JobRecord) -> dict[str, Any]:
        request = record.request
        body: dict[str, Any] = {
            "workflow": request.workflow.model_dump(exclude_none=True),
            "metadata": request.run_metadata(record.job_id),
        }
        if request.file is not None:
            body["file"] = self._file_wire(request.file, self.api_for(record))
        elif request.package is not None:
            body["package"] = {"files": [self._file_wire(item, self.api_for(record)) for item in request.package.files]}
        if request.priority is not None:
            body["priority"] = request.priority
        if record.secrets:
            body["secrets"] = unseal(record.secrets, self.secrets_key)
        return body

    def file_wire(self, item: FileInput) -> dict[str, Any]:
        """A file input in the API's wire form; a local `path` is uploaded first."""
        return self._file_wire(item)

    def _file_wire(self, item: FileInput, api: ExtendApi | None = None) -> dict[str, Any]:
        if not isinstance(item, PathFile):
            return item.model_dump(exclude_none=True)
        path = self._checked_path(item.path)
        return {"id": (api or self.api).upload(str(path), item.name)}

    def _checked_path(self, raw: str) -> Path:
        path = Path(raw).expanduser()
        if self.files_root is not None:
            path = (self.files_root / path).resolve()
            if not path.is_relative_to(self.files_root.resolve()):
                raise InputNotFound(f"input path {raw!r} is outside the shared files root")
        if not path.is_file():
            raise InputNotFound(f"input path {raw!r} does not exist or is not a file")
        return path

    def _log(
        self, record: JobRecord, status: str, what: str, *, via: str = "", error: str = "", detail: str = ""
    ) -> None:
        """The one line of a job's state change; its fields are JSON keys with EXTENDQ_LOG_FORMAT=json."""
        elapsed = round(self.clock() - record.enqueued_at, 3)
        fields: dict[str, Any] = {
            "event": what,
            "job_id": record.job_id,
            "run_id": record.run_id or "",
            "workflow_id": record.request.workflow.id,
            "state": _STATE_AFTER.get(what, record.state).value,
            "status": status,
            "elapsed_s": elapsed,
            "checks": record.checks,
        }
        fields.update({name: value for name, value in (("via", via), ("error", error)) if value})
        tail = (f" via={via}" if via else "") + (f" error={error}: {detail}" if error else "")
        log.info(
            "job %s %s run=%s workflow=%s status=%s elapsed=%.2fs%s",
            record.job_id,
            what,
            record.run_id,
            record.request.workflow.id,
            status,
            elapsed,
            tail,
            extra=fields,
        )

    @staticmethod
    def _key_of(record: JobRecord | None) -> str | None:
        return record.request.job_key if record is not None else None


def new_record(job_id: str, request: JobRequest, *, now: float, secrets: str | None) -> JobRecord:
    """The record `RedisJobStore.create_locked` writes for a new job, as `load` would read it back (but for its
    posting mark: nothing was posted yet, so the create need not look for a run that landed)."""
    deadline_at = None if request.deadline_s is None else now + request.deadline_s
    stored = request.model_copy(update={"secrets": None})  # kept sealed in the record, not in its request
    record = JobRecord(job_id, stored, JobState.SUBMITTING, now, secrets=secrets, deadline_at=deadline_at)
    record.fresh = True
    return record


def _publish_late(aliases: list[str], done: list[str], publish: Callable[[str], None]) -> None:
    """Publish to aliases added after the result was first published (`done`), as the job finished."""
    for alias in aliases:
        if alias not in done:
            publish(alias)


def job_event(record: JobRecord, *, state: JobState, status: str, error: str = "") -> dict[str, str]:
    """The events-stream entry for a job's state change."""
    return {
        "job_id": record.job_id,
        "run_id": record.run_id or "",
        "workflow_id": record.request.workflow.id,
        "state": state.value,
        "status": status,
        "error": error,
    }
