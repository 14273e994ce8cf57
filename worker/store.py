"""JobStore: the only writer of job records, the due-check schedule and job events in Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import redis

from extendq.config.redis_connection import redis_client
from extendq.config.settings import Settings
from extendq.worker import store_scripts as scripts
from extendq.worker.keys import Keys
from extendq.worker.models import JobRequest, JobState, job_outcome
from extendq.worker.records import (
    _F_ATTEMPTS,
    _F_CHECKS,
    _F_FINISHED,
    _F_POSTING,
    _F_REQUEST,
    _F_RUN,
    _F_RUN_STATUS,
    _F_STATE,
    _F_SUBMITTED,
    _FIELDS,
    EncodedResult,
    JobLock,
    JobRecord,
    _decode,
    _encode_new,
    _encode_value,
    _flatten,
)

Adoption = Literal["adopted", "known", "key_taken"]
# The claim of a job its producer recorded: its start message's (`RedisJobStore.create`).
NEW_CLAIM = "new"


@dataclass(frozen=True)
class EventLook:
    """What a webhook event finds in one look (`RedisJobStore.event_look`)."""

    seen: bool  # its id was handed on already: a re-delivery
    owner: str | None  # the job owning its run, None when the run is not recorded yet
    record: JobRecord | None  # its job, locked for this look; None when unknown or another step holds it


_ADOPTIONS: dict[int, Adoption] = {1: "adopted", 0: "known", 2: "key_taken"}


def open_store(settings: Settings) -> RedisJobStore:
    """The job store on the settings' Redis (a lazy connection pool: call it after fork)."""
    client = redis_client(settings, decode_responses=True, health_check_interval=30)
    return RedisJobStore(client, keys=Keys(settings.key_prefix), result_ttl_s=settings.result_ttl_s)


class RedisJobStore:
    """Job records, the due schedule, locks and events, in one Redis."""

    def __init__(self, client: redis.Redis, *, keys: Keys, result_ttl_s: int, events_maxlen: int = 100_000) -> None:
        self._redis = client
        self._keys = keys
        self._ttl = result_ttl_s
        self._events_maxlen = events_maxlen
        self._create = client.register_script(scripts.CREATE)
        self._claim = client.register_script(scripts.CLAIM_DUE)
        self._finish = client.register_script(scripts.FINISH)
        self._release = client.register_script(scripts.RELEASE)
        self._note_run = client.register_script(scripts.NOTE_RUN)
        self._adopt = client.register_script(scripts.ADOPT)
        self._schedule = client.register_script(scripts.SCHEDULE)
        self._record_run = client.register_script(scripts.RECORD_RUN)
        self._update = client.register_script(scripts.UPDATE)
        self._take_claim = client.register_script(scripts.TAKE_CLAIM)
        self._renew_claims = client.register_script(scripts.RENEW_CLAIMS)
        self._extend_claims = client.register_script(scripts.EXTEND_CLAIMS)
        self._renew_step = client.register_script(scripts.RENEW_STEP)

    @property
    def keys(self) -> Keys:
        return self._keys

    def create(
        self,
        job_id: str,
        request: JobRequest,
        *,
        now: float,
        lease_s: float,
        secrets: str | None,
        batch_task: str | None = None,
    ) -> str:
        """Record a new job, scheduled at `now + lease_s` as a safety net; the id that owns its job key.
        `batch_task`: the batch task that posts it (a job recorded before keeps what it had).

        Unless a batch posts it, the job is claimed by its start message (claim `NEW_CLAIM`): a worker holding
        that message renews the claim with a short lease, so a start lost with its worker comes due soon, not at
        the safety net.
        """
        return self._record(job_id, request, now=now, lease_s=lease_s, secrets=secrets, batch_task=batch_task)[0]

    def create_locked(
        self, job_id: str, request: JobRequest, *, now: float, lease_s: float, secrets: str | None, lock_ttl_s: float
    ) -> tuple[str, str | None]:
        """`create`, and when this call recorded the job, its lock taken and its place among the jobs in flight,
        in the same step: (owner id, lock token for `unlock`, or None when the job was recorded before).

        The job is recorded as SUBMITTING, posting since `now` (the write-ahead of its create): its creator
        submits it at once, or clears that mark (`schedule(..., posted=False)`) when it must wait.
        """
        token = uuid.uuid4().hex
        owner, created = self._record(
            job_id, request, now=now, lease_s=lease_s, secrets=secrets, lock=(token, int(lock_ttl_s * 1000))
        )
        return owner, token if created else None

    def _record(
        self,
        job_id: str,
        request: JobRequest,
        *,
        now: float,
        lease_s: float,
        secrets: str | None,
        lock: tuple[str, int] | None = None,
        batch_task: str | None = None,
    ) -> tuple[str, bool]:
        fields = _encode_new(request, now=now, secrets=secrets, batch_task=batch_task)
        if lock:
            fields.update({_F_STATE: JobState.SUBMITTING.value, _F_POSTING: repr(now)})
        key_index = self._keys.job_key(request.job_key) if request.job_key else ""
        lock_key, in_flight = (self._keys.lock(job_id), self._keys.in_flight) if lock else ("", "")
        token, lock_ms = lock or ("", 0)
        claims = "" if lock or batch_task else self._keys.claims  # a batch member has no start message
        keys = [
            self._keys.job(job_id),
            key_index,
            self._keys.due,
            lock_key,
            in_flight,
            claims,
            self._tenant_set(request),
        ]
        args = [job_id, request.job_key or "", self._ttl, now + lease_s, token, lock_ms, now, *_flatten(fields)]
        owner, created = self._create(keys=keys, args=args)
        return str(owner), bool(created)

    def load(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when it is unknown or expired."""
        raw = self._redis.hgetall(self._keys.job(job_id))
        return _decode(job_id, raw) if raw else None

    def update(self, job_id: str, **values: Any) -> bool:
        """Set record fields by their `JobRecord` names (None clears one); False, writing nothing, when the
        record does not exist (expired or deleted since it was read)."""
        pairs = [
            part
            for name, value in values.items()
            if value is not None
            for part in (_FIELDS[name], _encode_value(value))
        ]
        cleared = [_FIELDS[name] for name, value in values.items() if value is None]
        return bool(self._update(keys=[self._keys.job(job_id)], args=[len(pairs) // 2, *pairs, *cleared]))

    def record_run(self, job_id: str, run_id: str, *, submitted_at: float) -> bool:
        """Note the job's Extend run, and index the run id back to the job; False (nothing written) when the job
        is unknown or has another run. A finished job keeps its state.
        """
        keys = [self._keys.job(job_id), self._keys.run(run_id)]
        return bool(self._record_run(keys=keys, args=[job_id, run_id, repr(submitted_at), JobState.RUNNING.value]))

    def note_run(
        self,
        record: JobRecord,
        *,
        due_at: float,
        stretched: bool = False,
        event: dict[str, str] | None = None,
        created: bool = False,
        result: EncodedResult | None = None,
    ) -> bool:
        """A look at the job's run, not ended yet, in one atomic step: its status and checks noted, the retry
        count reset, `event` appended, the next check scheduled at `due_at`, and the job's lock (`record.lock`)
        released. `created`: the run was just created, so it is recorded and indexed as `record_run` does.
        `result`: the job's progress result, written first.

        Fenced: False, and nothing written, when the step no longer holds the job's lock (it outlived it) or
        the job finished meanwhile.
        """
        fields: dict[str, Any] = {_F_RUN_STATUS: record.run_status or "", _F_ATTEMPTS: 0, _F_CHECKS: record.checks}
        if created:
            assert record.run_id is not None
            submitted = record.submitted_at or 0.0
            fields.update({_F_RUN: record.run_id, _F_SUBMITTED: repr(submitted), _F_STATE: JobState.RUNNING.value})
        lock = record.lock
        keys = [
            self._keys.job(record.job_id),
            self._keys.due,
            self._keys.events,
            self._keys.sweep("stretched", record.request.tenant) if stretched else "",
            self._keys.run(record.run_id) if created and record.run_id else "",
            self._keys.lock(record.job_id) if lock else "",
            result.key if result else "",
        ]
        head: list[Any] = [record.job_id, due_at, self._events_maxlen, lock.token if lock else "", len(fields)]
        head += [result.value, result.ttl_s] if result else ["", 0]
        head.append(self._ttl)
        written = self._note_run(keys=keys, args=[*head, *_flatten(fields), *_flatten(event or {})])
        if lock is not None:
            lock.released = True
        return bool(written)

    def owners(self, run_ids: list[str]) -> list[str | None]:
        """The job owning each run id, or None for runs extendq does not know."""
        if not run_ids:
            return []
        return [None if owner is None else str(owner) for owner in self._redis.mget(self._keys.run(r) for r in run_ids)]

    def adopt(
        self, job_id: str, request: JobRequest, run_id: str, *, submitted_at: float, due_at: float
    ) -> tuple[Adoption, str]:
        """Record a job whose record was lost as RUNNING on its existing run, due at `due_at`, in one atomic step.

        Returns what happened and the job that owns the run (or the job key) now; a job or run recorded
        already is left as it is, so concurrent adoptions of one run record it once.
        """
        fields = _encode_new(request, now=submitted_at, secrets=None)
        fields.update({_F_STATE: JobState.RUNNING.value, _F_RUN: run_id, _F_SUBMITTED: repr(submitted_at)})
        key_index = self._keys.job_key(request.job_key) if request.job_key else ""
        keys = [self._keys.job(job_id), self._keys.run(run_id), key_index, self._keys.due, self._tenant_set(request)]
        code, owner = self._adopt(keys=keys, args=[job_id, due_at, *_flatten(fields)])
        return _ADOPTIONS[int(code)], str(owner)

    def known_runs(self, run_ids: list[str]) -> list[bool]:
        """For each run id, whether a job with a whole record owns it (not a fragment left by a data loss)."""
        owners = self.owners(run_ids)
        pipe = self._redis.pipeline(transaction=False)
        for owner in filter(None, owners):
            pipe.hexists(self._keys.job(owner), _F_REQUEST)
        whole = iter(pipe.execute() if any(owners) else [])
        return [owner is not None and bool(next(whole)) for owner in owners]

    def finished_flags(self, job_ids: list[str]) -> list[bool]:
        """For each job id, whether its record says it finished (unknown jobs count as finished)."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hexists(self._keys.job(job_id), _F_FINISHED)
            pipe.exists(self._keys.job(job_id))
        flags = pipe.execute()
        return [bool(done) or not bool(exists) for done, exists in zip(flags[::2], flags[1::2], strict=True)]

    def holds(self, record: JobRecord) -> bool:
        """Whether the step that read `record` still holds the job's lock and the job has not finished (before a
        write outside the store's own fenced scripts: a result published to another Redis)."""
        if record.lock is None:
            return True
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._keys.lock(record.job_id))
        pipe.hexists(self._keys.job(record.job_id), _F_FINISHED)
        token, finished = pipe.execute()
        return token in (record.lock.token, record.lock.token.encode()) and not finished

    def raw_records(self, job_ids: Sequence[str]) -> list[dict[Any, Any]]:
        """The hash fields of each job, in one round trip ({} for a job whose record is gone); read them with
        `records.summary`."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self._keys.job(job_id))
        return list(pipe.execute()) if job_ids else []

    def unfinished(self, job_ids: list[str]) -> list[str]:
        """Those of these jobs that are known and not finished, in order."""
        flags = self.finished_flags(job_ids) if job_ids else []
        return [job_id for job_id, done in zip(job_ids, flags, strict=True) if not done]

    @property
    def result_ttl_s(self) -> int:
        """How long finished jobs and their results are kept."""
        return self._ttl

    def batches_known(self, extend_batch_ids: list[str]) -> list[bool]:
        """For each Extend batch id, whether it is one of ours."""
        pipe = self._redis.pipeline(transaction=False)
        for extend_batch in extend_batch_ids:
            pipe.exists(self._keys.extend_batch(extend_batch))
        return [bool(found) for found in pipe.execute()]

    @property
    def client(self) -> redis.Redis:
        """The Redis client under this store (for modules keeping state of their own next to it)."""
        return self._redis

    def bump(self, job_id: str, name: str) -> int:
        """Add one to a counter field; its new value."""
        return int(self._redis.hincrby(self._keys.job(job_id), _FIELDS[name], 1))

    def schedule(
        self, job_id: str, due_at: float, *, stretched: bool = False, posted: bool = True, tenant: str | None = None
    ) -> None:
        """Make the job's next step due at `due_at` (unix seconds); `stretched`: only because the sweeps of the
        job's account (`tenant`, None for the default one) run; `posted=False`: clear the job's posting mark too
        (no create went out). A finished job is never scheduled again (its entry goes instead), whoever asks.
        """
        keys = [self._keys.job(job_id), self._keys.due, self._keys.sweep("stretched", tenant) if stretched else ""]
        self._schedule(keys=keys, args=[job_id, due_at, "" if posted else "1", self._ttl])

    def make_due(self, job_ids: list[str], due_at: float) -> None:
        """Bring these unfinished jobs' next steps forward to `due_at`, in one command; jobs no longer scheduled
        (finished meanwhile) are left alone.
        """
        if job_ids:
            self._redis.zadd(self._keys.due, dict.fromkeys(job_ids, due_at), xx=True)

    def bring_forward(self, due: Mapping[str, float]) -> None:
        """Bring each of these jobs' next step forward to its time, never later than it was; jobs no longer
        scheduled (finished meanwhile) are left alone."""
        if due:
            self._redis.zadd(self._keys.due, dict(due), xx=True, lt=True)

    def unstretch(self, job_ids: list[str], tenant: str | None = None) -> None:
        """Forget that these jobs' checks were stretched for the sweeps of their account."""
        if job_ids:
            self._redis.zrem(self._keys.sweep("stretched", tenant), *job_ids)

    def stretched(self, limit: int = 10_000, tenant: str | None = None) -> list[str]:
        """Jobs of one account whose next check was pushed out because its sweeps were running."""
        return [str(job_id) for job_id in self._redis.zrange(self._keys.sweep("stretched", tenant), 0, limit - 1)]

    def claim_due(self, *, now: float, limit: int, lease_s: float) -> list[tuple[str, float]]:
        """Atomically claim up to `limit` due jobs; each is re-due at its lease end unless rescheduled first
        (or its claim renewed), and claimed with that lease end: the claim its step message carries."""
        lease_end = now + lease_s
        ids = self._claim(keys=[self._keys.due, self._keys.claims], args=[now, limit, lease_end, repr(lease_end)])
        return [(str(job_id), lease_end) for job_id in ids]

    def extend_claims(self, sent: Sequence[tuple[str, float]], *, due_at: float) -> None:
        """Make jobs a dispatcher claimed on a short lease and sent due at `due_at` (the claim lease: their
        messages may wait in the queue), unless their claim was used, replaced or renewed meanwhile."""
        if sent:
            pairs = [part for job_id, claim in sent for part in (job_id, claim_text(claim))]
            self._extend_claims(keys=[self._keys.claims, self._keys.due], args=[due_at, *pairs])

    def renew_claims(self, held: Sequence[tuple[str, float | str]], *, due_at: float) -> int:
        """Make the jobs still claimed by these messages (job id, claim) due at `due_at`: the short lease of
        messages a live worker holds, renewed. Jobs whose claim was used or replaced are left alone; how many
        were renewed."""
        if not held:
            return 0
        pairs = [part for job_id, claim in held for part in (job_id, claim_text(claim))]
        return int(self._renew_claims(keys=[self._keys.claims, self._keys.due], args=[due_at, *pairs]))

    def renew_step(self, job_id: str, token: str, *, ttl_s: float, seen_due: float | None, due_at: float) -> int:
        """Renew a step's lease: its lock's expiry to `ttl_s` from now while `token` holds it, and the job's due
        entry to `due_at` while it is still `seen_due`. -1: the lock is gone; 1: the due entry moved; else 0."""
        seen = "" if seen_due is None else repr(seen_due)
        keys = [self._keys.lock(job_id), self._keys.due]
        return int(self._renew_step(keys=keys, args=[job_id, token, max(1, int(ttl_s * 1000)), seen, due_at]))

    def due_at(self, job_id: str) -> float | None:
        """When the job is next due, or None when it is not scheduled."""
        score = self._redis.zscore(self._keys.due, job_id)
        return None if score is None else float(score)

    def in_flight(self) -> int:
        """How many jobs are scheduled (every unfinished job is)."""
        return int(self._redis.zcard(self._keys.due))

    def in_flight_of(self, tenant: str | None, *, tenants: Collection[str] = ()) -> int:
        """How many of one account's jobs are in flight: a tenant's, or the default account's (every job
        scheduled but those of `tenants`, the tenants configured)."""
        if tenant is not None:
            return int(self._redis.zcard(self._keys.tenant_in_flight(tenant)))
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(self._keys.due)
        for name in tenants:
            pipe.zcard(self._keys.tenant_in_flight(name))
        total, *theirs = pipe.execute()
        return max(0, int(total) - sum(int(count) for count in theirs))

    def _tenant_set(self, request: JobRequest) -> str:
        """The in-flight set of the request's tenant, or '' (no key) for the default account."""
        return self._keys.tenant_in_flight(request.tenant) if request.tenant is not None else ""

    @contextmanager
    def lock(self, job_id: str, *, ttl_s: float) -> Iterator[bool]:
        """Hold the job's lock while advancing it; yields False when another task holds it."""
        token = uuid.uuid4().hex
        held = bool(self._redis.set(self._keys.lock(job_id), token, nx=True, px=int(ttl_s * 1000)))
        try:
            yield held
        finally:
            if held:
                self.unlock(job_id, token)

    @contextmanager
    def locked(
        self, job_id: str, *, ttl_s: float, claim: float | str | None = None
    ) -> Iterator[tuple[JobRecord | None, float | None] | None]:
        """Lock the job and read it (record, with its aliases, and next due time) in one round trip; None when
        another task holds the lock, or when `claim` (the message's) is not the job's current claim. A current
        claim is used up, and the job made due as the lock lapses (the step's lease, renewed while it runs). The
        lock is released on leaving, unless a write released it already.
        """
        lock = JobLock(uuid.uuid4().hex)
        pipe = self._redis.pipeline(transaction=False)
        self._lock_and_read(pipe, job_id, lock, ttl_s)
        if claim is not None:
            keys = [self._keys.lock(job_id), self._keys.claims, self._keys.due]
            args: list[str | float | int] = [
                job_id,
                lock.token,
                claim_text(claim),
                time.time(),
                max(1, int(ttl_s * 1000)),
            ]
            self._take_claim(keys=keys, args=args, client=pipe)
        held, raw, due, aliases, *taken = pipe.execute()
        stale = bool(taken) and not int(taken[0][0])
        if held and stale:
            self.unlock(job_id, lock.token)  # a stale message: the job moved on since it was sent
        if not held or stale:
            yield None
            return
        if taken:  # the due entry as the claim was taken (a worker holding the message may have renewed it)
            due = taken[0][1] or None
        record = _decode(job_id, raw) if raw else None
        if record is not None:
            record.lock, record.aliases = lock, sorted(str(alias) for alias in aliases)
        try:
            yield record, (None if due is None else float(due))
        finally:
            if not lock.released:
                self.unlock(job_id, lock.token)

    def _lock_and_read(self, pipe: Any, job_id: str, lock: JobLock, ttl_s: float) -> None:
        """Queue on `pipe`: take the job's lock, read its record, next due time and aliases (four answers)."""
        pipe.set(self._keys.lock(job_id), lock.token, nx=True, px=max(1, int(ttl_s * 1000)))
        pipe.hgetall(self._keys.job(job_id))
        pipe.zscore(self._keys.due, job_id)
        pipe.smembers(self._keys.aliases(job_id))

    def lock_many(self, job_ids: list[str], *, ttl_s: float) -> tuple[str, list[str]]:
        """Take the locks of these jobs that are free, with one token, in one round trip: (token, ids locked)."""
        token = uuid.uuid4().hex
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.set(self._keys.lock(job_id), token, nx=True, px=int(ttl_s * 1000))
        held = pipe.execute() if job_ids else []
        return token, [job_id for job_id, got in zip(job_ids, held, strict=True) if got]

    def unlock_many(self, job_ids: list[str], token: str) -> None:
        """Release the locks `lock_many` took (those `token` still holds)."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            self._release(keys=[self._keys.lock(job_id)], args=[token], client=pipe)
        pipe.execute()

    def extend_batch_of(self, batch_task: str) -> str | None:
        """The Extend batch a batch task created, once it is known."""
        found = self._redis.hget(self._keys.batch(batch_task), "xb")
        return None if found is None else str(found)

    def unlock(self, job_id: str, token: str) -> None:
        """Release the job's lock if `token` still holds it."""
        self._release(keys=[self._keys.lock(job_id)], args=[token])

    def finish(
        self,
        record: JobRecord,
        *,
        now: float,
        state: JobState,
        error: str,
        event: dict[str, str],
        callback: str | None = None,
        result: EncodedResult | None = None,
        usage: tuple[str, str] | None = None,
    ) -> list[str] | None:
        """Mark the job finished and append its event, once; its aliases then, or None when it had finished.
        The job's lock (`record.lock`) is released in the same step; `result`, the job's own, is written in it,
        and `usage`, the run's entry in the pending-usage hash.

        `callback` (an encoded `worker.callbacks.Callback`) goes to the outbox in the same atomic step.
        """
        keys = [
            self._keys.job(record.job_id),
            self._keys.due,
            self._keys.events,
            self._keys.job_key(record.request.job_key) if record.request.job_key else "",
            self._keys.aliases(record.job_id),
            self._keys.run(record.run_id) if record.run_id else "",
            self._keys.finished,
            self._keys.outbox,
            self._keys.in_flight,
            self._keys.lock(record.job_id) if record.lock else "",
            result.key if result else "",
            self._keys.usage_pending if usage else "",
            self._keys.sweep("stretched", record.request.tenant),
            self._keys.claims,
            self._tenant_set(record.request),
            *self._facets(record, state),
        ]
        head = [record.job_id, self._ttl, now, state.value, error, self._events_maxlen]
        token = record.lock.token if record.lock else ""
        written = [*((result.value, result.ttl_s) if result else ("", 0)), *(usage or ("", ""))]
        args = [*head, record.run_status or "", callback or "", record.checks, token, *written, *_flatten(event)]
        aliases = self._finish(keys=keys, args=args)
        if record.lock is not None:
            record.lock.released = True
        return None if aliases is None else sorted(str(alias) for alias in aliases)

    def _facets(self, record: JobRecord, state: JobState) -> list[str]:
        """The finished indexes of the job's outcome, workflow and tenant (the dashboard filters by them)."""
        return [
            self._keys.finished_by("outcome", job_outcome(state.value, record.run_status)),
            self._keys.finished_by("workflow", record.request.workflow.id),
            self._keys.finished_by("tenant", record.request.tenant or ""),
        ]

    def add_alias(self, owner_id: str, alias_id: str) -> None:
        """Record that `alias_id` was enqueued with the same job key as `owner_id`."""
        self._redis.sadd(self._keys.aliases(owner_id), alias_id)

    def aliases(self, job_id: str) -> list[str]:
        """Task ids that share the job's result."""
        return sorted(str(alias) for alias in self._redis.smembers(self._keys.aliases(job_id)))

    def count(self, name: str, amount: int = 1) -> None:
        """Add to one of the watched counters (best effort, never raises on a counter name)."""
        self._redis.hincrby(self._keys.counters, name, amount)

    def counters(self) -> dict[str, int]:
        """Every watched counter."""
        return {str(k): int(v) for k, v in self._redis.hgetall(self._keys.counters).items()}

    def event_seen(self, event_id: str) -> bool:
        """Whether an event id was handed on already (within the de-duplication TTL): a re-delivery."""
        return bool(self._redis.exists(self._keys.event_seen(event_id)))

    @contextmanager
    def event_look(self, event_id: str, run_id: str, job_id: str, *, ttl_s: float) -> Iterator[EventLook]:
        """For a webhook event naming job `job_id`: whether its id was handed on already, the job owning `run_id`,
        and the job locked and read, in one round trip. The lock is released on leaving, unless a write did.
        """
        lock = JobLock(uuid.uuid4().hex)
        pipe = self._redis.pipeline(transaction=False)
        pipe.exists(self._keys.event_seen(event_id))
        pipe.get(self._keys.run(run_id))
        self._lock_and_read(pipe, job_id, lock, ttl_s)
        seen, owner, held, raw, _, aliases = pipe.execute()
        record = _decode(job_id, raw) if held and raw else None
        if record is not None:
            record.lock, record.aliases = lock, sorted(str(alias) for alias in aliases)
        try:
            yield EventLook(seen=bool(seen), owner=None if owner is None else str(owner), record=record)
        finally:
            if held and not lock.released:
                self.unlock(job_id, lock.token)

    def note_event_seen(self, event_id: str, *, ttl_s: int) -> None:
        """Remember for `ttl_s` that an event id was handed on; called once the event is durably queued, so a
        hand-off lost before that (a broker error, a crash) leaves nothing that would swallow its re-delivery.
        """
        self._redis.set(self._keys.event_seen(event_id), "1", ex=ttl_s)

    def emit(self, event: dict[str, str]) -> None:
        """Append a non-terminal event to the events stream."""
        self._redis.xadd(self._keys.events, event, maxlen=self._events_maxlen, approximate=True)  # type: ignore[arg-type]


def claim_text(claim: float | str) -> str:
    """A claim as the claims hash holds it: a dispatcher's lease end as `repr` writes it, or a name."""
    return repr(float(claim)) if isinstance(claim, int | float) else claim
