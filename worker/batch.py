"""Bulk submission: many files for one workflow go to Extend in batch requests, each still its own job.

`POST /workflow_runs/batch` takes up to 1,000 inputs and answers only a `batchId`; its runs are queued on
Extend's side and carry the batch id and each input's metadata, where extendq put the job id. A job of a
batch therefore has no run id at first: the list sweeper (or the job's own safety check, listing the
batch) finds each run as it ends, and one fetch of the full run — the result, which is fetched anyway —
tells whose run it is. A batch is for one account: the default one, or one tenant's (its key, its limit).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from extendq.errors import ExtendqError, InvalidJobRequest, RetryableError, Throttled
from extendq.worker.batch_lookup import BatchLookup
from extendq.worker.extend import Run
from extendq.worker.jobs import JobRunner
from extendq.worker.models import JOB_ID_KEY, JobRequest, JobState, is_terminal
from extendq.worker.ratelimit import Bucket
from extendq.worker.records import JobRecord
from extendq.worker.secrets import unseal
from extendq.worker.spending import still_held

log = logging.getLogger("extendq.batch")
MAX_BATCH = 1000
_LANDED_SLACK_S = 30.0


@dataclass(frozen=True)
class BatchJob:
    """One member of a batch: its job id, request and sealed secrets."""

    job_id: str
    request: JobRequest
    secrets: str | None = None


@dataclass(kw_only=True)
class BatchRunner:
    """Posts batches and maps their runs back to jobs; the per-job steps stay with `JobRunner`."""

    runner: JobRunner
    clock: Callable[[], float] = time.time

    def start(self, batch_id: str, members: list[BatchJob]) -> str | None:
        """Record every member as a job and post the batch once; the Extend batch id (None if nothing to post).

        Raises `RetryableError` when Extend cannot take the batch now (the task retries, and a redelivery
        finds the jobs already recorded and a batch possibly already created).

        The members are locked while the batch is posted: a member whose own step holds it (its batch was
        late, so it may go on alone) is left out and told so, never posted both in a batch and alone.
        """
        store = self.runner.store
        ours = self._record(batch_id, members)
        token, locked = store.lock_many(ours, ttl_s=self.runner.lock_ttl_s)
        self._let_go(set(ours) - set(locked))
        try:
            fresh = self._still_fresh(batch_id, locked)
            if not fresh:
                return None
            state = {str(k): str(v) for k, v in store.client.hgetall(store.keys.batch(batch_id)).items()}
            extend_batch = state.get("xb") or self._landed(batch_id, state, set(ours), request=fresh[0].request)
            if extend_batch is None:
                extend_batch = self._post(batch_id, fresh)
            self._mark_submitted(batch_id, extend_batch, fresh)
            return extend_batch
        finally:
            store.unlock_many(locked, token)

    def adopt(self, run_id: str, tenant: str | None = None) -> bool:
        """Fetch an ended run of one of our batches (of the account `tenant`, None for the default one) and
        finish the job it belongs to; False if not ours."""
        if self.runner.store.owners([run_id])[0] is not None:
            return False  # adopted already (sweeps overlap a little)
        # A token reserved for later is kept for the task's retry: under a busy limit, asking for one free now
        # failed every time, the task gave up, and the run waited for its job's safety-net check.
        holder = self.runner.store.keys.adoption(run_id)
        self._pace_on(holder, tenant)
        run = self.runner.api_of(tenant).get_run(run_id)
        self.runner.store.client.delete(holder)
        return self.finish_member(run)

    def finish_member(self, run: Run, *, holding: str | None = None) -> bool:
        """Record and (when it ended) publish a batch run for the job named in its metadata.

        `holding` is the job whose lock the caller already holds (a member's own safety check).
        """
        job_id = (run.get("metadata") or {}).get(JOB_ID_KEY)
        if not isinstance(job_id, str):
            return False
        if job_id == holding:
            return self._finish_locked(job_id, run)
        with self.runner.store.lock(job_id, ttl_s=self.runner.lock_ttl_s) as held:
            return held and self._finish_locked(job_id, run)

    def _finish_locked(self, job_id: str, run: Run) -> bool:
        store = self.runner.store
        record = store.load(job_id)
        if record is None or record.finished:
            return False
        now = self.clock()
        if record.run_id is None:
            record.run_id, record.submitted_at = str(run["id"]), record.submitted_at or now
            if not store.record_run(job_id, record.run_id, submitted_at=record.submitted_at):
                return False
        if record.run_id != str(run["id"]):
            log.warning("job %s: run %s is not its run %s; left alone", job_id, run["id"], record.run_id)
            return False
        if is_terminal(run.get("status")):
            self.runner.finish_with_run(record, run, now, via="batch")
        return True

    def check_member(self, record: JobRecord, pace: Callable[[], None]) -> None:
        """A batch job's safety check: list its batch and fetch every ended run nobody has claimed yet.

        The first request goes on the token the job's step took; `pace` takes one before every further request
        (it raises `Throttled` when none is free: the check comes back when its token is due, and goes on where
        it stopped, `worker.batch_lookup`).
        """

        def fetch(run_id: str) -> bool:
            self.finish_member(self.runner.api_for(record).get_run(run_id), holding=record.job_id)
            return False

        self._lookup(record, pace, fetch).run(ended_only=True)

    def find_member(self, record: JobRecord, pace: Callable[[], None]) -> None:
        """A member being cancelled, or past its deadline, before its run is known: fetch its batch's unowned runs
        until its own turns up, so that the run itself is cancelled (each run fetched is recorded for its job).
        Every request takes a token with `pace`, but the first, which goes on the step's."""

        def fetch(run_id: str) -> bool:
            run = self.runner.api_for(record).get_run(run_id)
            self.finish_member(run, holding=record.job_id)
            return (run.get("metadata") or {}).get(JOB_ID_KEY) == record.job_id

        self._lookup(record, pace, fetch).run(ended_only=False)

    def _lookup(self, record: JobRecord, pace: Callable[[], None], fetch: Callable[[str], bool]) -> BatchLookup:
        api = self.runner.api_for(record)
        return BatchLookup(record=record, api=api, store=self.runner.store, pace=pace, fetch=fetch)

    def _record(self, batch_id: str, members: list[BatchJob]) -> list[str]:
        """Record the members as jobs of this batch task; the ids of those it may post (each is locked next)."""
        store, now, ours = self.runner.store, self.clock(), []
        for member in members:
            owner = store.create(
                member.job_id,
                member.request,
                now=now,
                lease_s=self.runner.lease_s,
                secrets=member.secrets,
                batch_task=batch_id,
            )
            if owner != member.job_id:
                self.runner.follow(owner, member.job_id)
                continue
            ours.append(member.job_id)
        return ours

    def _let_go(self, job_ids: set[str]) -> None:
        """Members busy in a step of their own go on alone: this batch will not post them."""
        if job_ids:
            pipe = self.runner.store.client.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.hdel(self.runner.store.keys.job(job_id), "bt")
            pipe.execute()

    def _still_fresh(self, batch_id: str, locked: list[str]) -> list[JobRecord]:
        """The locked members this batch still has to post: unfinished, with no run, not gone on alone."""
        fresh = []
        for job_id in locked:
            record = self.runner.store.load(job_id)
            if record is None or record.finished:
                continue
            self.runner.note_enqueued(record)
            if record.run_id is None and not record.extend_batch_id and record.batch_task == batch_id:
                fresh.append(record)
        return fresh

    def _post(self, batch_id: str, records: list[JobRecord]) -> str:
        store, tenant = self.runner.store, records[0].request.tenant
        self._pace_on(store.keys.batch(batch_id), tenant)
        workflow = records[0].request.workflow.model_dump(exclude_none=True)
        inputs = [self._input(record) for record in records]
        # Written ahead of the post, on the batch and on each member: should its answer be lost, a member's own
        # step then looks for its run (and waits out the landing window) before it ever posts alone.
        posted_at = self.clock()
        # The batch's record expires from the start: a post that fails for good leaves nothing behind for ever.
        pipe = store.client.pipeline(transaction=True)
        pipe.hset(store.keys.batch(batch_id), mapping={"post": repr(posted_at)})
        pipe.expire(store.keys.batch(batch_id), store.result_ttl_s)
        for record in records:
            pipe.hset(store.keys.job(record.job_id), "post", repr(posted_at))
        pipe.execute()
        if self.runner.replica_wait is not None:  # the members and their posting marks on a replica first
            self.runner.replica_wait.confirm(f"the post of batch {batch_id}")
        priority = records[0].request.priority
        return self.runner.api_of(tenant).create_batch({"workflow": workflow, "inputs": inputs, "priority": priority})

    def _pace_on(self, key: str, tenant: str | None) -> None:
        """Take a request token from the account's shared limit before a call of a batch task, or raise
        `RetryableError` with the wait. A token reserved for later is kept in the hash `key` (the batch's record,
        or the run's adoption): the task's retry spends it at its slot instead of throwing it away and reserving
        another."""
        limiter = self.runner.limiter_of(tenant)
        if limiter is None:
            return
        store = self.runner.store
        held = {Bucket.REQUESTS.value: float(slot)} if (slot := store.client.hget(key, "tok")) is not None else {}
        if held:
            try:  # slots are on the Redis server's clock: the retry may run on another host
                spent = still_held(held, Bucket.REQUESTS, limiter.server_time())
            except Throttled as exc:
                raise RetryableError("waiting for the reserved rate-limit token", exc.retry_after_s) from None
            # Taken by one caller only: two adoptions of one run wake at its slot, and only one may spend it.
            if not store.client.hdel(key, "tok"):
                raise RetryableError("another call took the reserved rate-limit token", 0.5)
            if spent:
                return
        grant = limiter.reserve(Bucket.REQUESTS)
        if grant.now:
            return
        if grant.reserved and grant.slot is not None:
            pipe = store.client.pipeline(transaction=True)
            pipe.hset(key, "tok", repr(grant.slot))
            pipe.expire(key, store.result_ttl_s)
            pipe.execute()
        raise RetryableError("waiting for the shared rate limit", grant.wait_s)

    def _input(self, record: JobRecord) -> dict[str, Any]:
        request = record.request
        if request.file is None:
            raise ExtendqError("a batch input needs a single file, not a package")
        item: dict[str, Any] = {
            "file": self.runner.file_wire(request.file),
            "metadata": request.run_metadata(record.job_id),
        }
        if record.secrets:
            item["secrets"] = unseal(record.secrets, self.runner.secrets_key)
        return item

    def _landed(self, batch_id: str, state: dict[str, str], members: set[str], *, request: JobRequest) -> str | None:
        """After a post whose answer was lost: the batch it created, found by one of its runs' metadata (the run
        of any member of this batch task, including one that has gone on alone since)."""
        if "post" not in state:
            return None
        since = float(state["post"]) - _LANDED_SLACK_S
        seen: set[str] = set()
        pace = functools.partial(self._pace_on, self.runner.store.keys.batch(batch_id), request.tenant)
        api = self.runner.api_of(request.tenant)
        for summary in api.recent_runs(request.workflow.id, since, pace):
            extend_batch = summary.get("batchId")
            if not extend_batch or extend_batch in seen:
                continue
            seen.add(str(extend_batch))
            pace()
            run = api.get_run(str(summary["id"]))
            if (run.get("metadata") or {}).get(JOB_ID_KEY) in members:
                log.warning("batch %s adopts Extend batch %s created by an earlier attempt", batch_id, extend_batch)
                return str(extend_batch)
        return None

    def _mark_submitted(self, batch_id: str, extend_batch: str, records: Iterable[JobRecord]) -> None:
        store, now = self.runner.store, self.clock()
        client, keys = store.client, store.keys
        pipe = client.pipeline(transaction=False)
        pipe.hset(keys.batch(batch_id), mapping={"xb": extend_batch})
        pipe.expire(keys.batch(batch_id), store.result_ttl_s)
        pipe.set(keys.extend_batch(extend_batch), batch_id, ex=store.result_ttl_s)
        pipe.execute()
        for record in records:
            store.update(
                record.job_id,
                extend_batch_id=extend_batch,
                submitted_at=now,
                state=JobState.RUNNING.value,
                posting_since=None,
            )
            self.runner.note_submitted(record, via="batch")
            tenant = record.request.tenant
            delay, stretched = self.runner.check_delay_s(0.0, tenant)
            store.schedule(record.job_id, now + delay, stretched=stretched, tenant=tenant)
        log.info("batch %s posted as Extend batch %s with %s", batch_id, extend_batch, _count(records))


def _count(records: Iterable[JobRecord]) -> str:
    return f"{sum(1 for _ in records)} runs"


def members_from(jobs: list[dict[str, Any]], *, tenants: Collection[str] = ()) -> list[BatchJob]:
    """Batch members from a task message: `[{"job_id", "request"}]`, all of one account (a tenant among
    `tenants`, this worker's, or the default one); raises `InvalidJobRequest`."""
    members = []
    for job in jobs:
        request = JobRequest.parse(job["request"])
        members.append(BatchJob(job_id=str(job["job_id"]), request=request, secrets=request.secrets))
    accounts = {member.request.tenant for member in members}
    if len(accounts) > 1:
        raise InvalidJobRequest("a batch is for one account: its jobs name different tenants")
    unknown = sorted(name for name in accounts if name is not None and name not in tenants)
    if unknown:
        known = ", ".join(sorted(tenants)) or "none"
        raise InvalidJobRequest(f"unknown tenant {unknown[0]!r}: this worker's tenants are {known}")
    return members
