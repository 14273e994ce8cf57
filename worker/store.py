"""JobStore: the only writer of job records, the due-check schedule and job events in Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from config.settings import Settings
from worker.keys import Keys
from worker.models import JobRequest, JobState

# Field names in the job hash are short: 100k jobs in flight must fit in a few hundred MB.
_F_REQUEST, _F_SECRETS, _F_STATE = "req", "sec", "st"
_F_RUN, _F_RUN_STATUS, _F_CHECKS, _F_ATTEMPTS = "run", "rst", "chk", "att"
_F_ENQUEUED, _F_SUBMITTED, _F_POSTING, _F_DEADLINE = "enq", "sub", "post", "dl"
_F_CANCEL, _F_CANCEL_SENT, _F_FILE, _F_FINISHED, _F_ERROR = "cxl", "cxs", "fid", "fin", "err"
_F_TOKEN, _F_BATCH = "tok", "xb"
# Redis keeps a small hash as one compact listpack (a third of the memory of a hash table) only while every
# value fits in `hash-max-listpack-value`, 64 bytes by default; the request and sealed secrets (ASCII) are
# longer, so they are stored in pieces of that size: `req`, `req1`, `req2`, ...
_PIECE = 64

# A result written by the step's own script (`EncodedResult`), as Celery's Redis backend writes it: SET with the
# results' expiry, then PUBLISH on the key, which wakes `AsyncResult.get()`.
_WRITE_RESULT = """
local function write_result(key, value, ttl)
  if key == '' then return end
  if tonumber(ttl) > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
  redis.call('PUBLISH', key, value)
end
"""

_CREATE = """
-- KEYS: job hash, job-key index (or ''), due set, lock (or ''), in-flight index (or '').
-- ARGV: job id, job key, ttl, due, lock token, lock ttl (ms), enqueued at, then field/value pairs.
-- Returns {owner id, 1 when this call recorded the job (and took its lock, when asked) else 0}.
if KEYS[2] ~= '' then
  local owner = redis.call('GET', KEYS[2])
  if owner and owner ~= ARGV[1] then return {owner, 0} end
  -- Only a new key is set: an existing one keeps the expiry its finished job gave it.
  if not owner then redis.call('SET', KEYS[2], ARGV[1]) end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {ARGV[1], 0} end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6]) end
if KEYS[5] ~= '' then redis.call('ZADD', KEYS[5], 'NX', ARGV[7], ARGV[1]) end
return {ARGV[1], 1}
"""

_CLAIM_DUE = """
-- KEYS: due set. ARGV: now, limit, lease deadline. Due entries move to the lease deadline as they are claimed.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"""

_FINISH = (
    _WRITE_RESULT
    + """
-- KEYS: job hash, due set, events stream, job-key index (or ''), aliases, run index (or ''), finished index,
--       callback outbox, in-flight index, lock (or ''), result (or ''), pending usage (or '').
-- ARGV: job id, ttl, now, state, error, events maxlen, run status (or ''), callback entry (or ''), checks,
--       lock token, result value, result ttl, usage field, usage note, then event field/value pairs.
-- Returns false when the job had already finished, else its aliases (task ids sharing its result).
if KEYS[10] ~= '' and redis.call('GET', KEYS[10]) == ARGV[10] then redis.call('DEL', KEYS[10]) end
if redis.call('HEXISTS', KEYS[1], 'fin') == 1 then return false end
write_result(KEYS[11], ARGV[11], ARGV[12])
if KEYS[12] ~= '' then redis.call('HSET', KEYS[12], ARGV[13], ARGV[14]) end
redis.call('HSET', KEYS[1], 'fin', ARGV[3], 'st', ARGV[4], 'err', ARGV[5], 'chk', ARGV[9])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'rst', ARGV[7]) end
redis.call('HDEL', KEYS[1], 'sec')
local piece = 1
while redis.call('HDEL', KEYS[1], 'sec' .. piece) == 1 do piece = piece + 1 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[9], ARGV[1])
local event = {}
for i = 15, #ARGV do event[#event + 1] = ARGV[i] end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', unpack(event))
-- Finished jobs by finish time, kept as long as results; the callback is queued in the same step as the finish.
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[2])))
if ARGV[8] ~= '' then redis.call('XADD', KEYS[8], '*', 'callback', ARGV[8]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if KEYS[4] ~= '' then redis.call('EXPIRE', KEYS[4], ARGV[2]) end
redis.call('EXPIRE', KEYS[5], ARGV[2])
if KEYS[6] ~= '' then redis.call('EXPIRE', KEYS[6], ARGV[2]) end
return redis.call('SMEMBERS', KEYS[5])
"""
)

_NOTE_RUN = (
    _WRITE_RESULT
    + """
-- KEYS: job hash, due set, events stream, stretched set (or ''), run index (or ''), lock (or ''), result (or '').
-- ARGV: job id, due, events maxlen, lock token, number of hash field/value pairs (n), result value, result ttl,
--       the n pairs, then event field/value pairs (none: no event).
local n = tonumber(ARGV[5])
write_result(KEYS[7], ARGV[6], ARGV[7])
local fields = {}
for i = 8, 7 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
if KEYS[5] ~= '' then
  redis.call('HDEL', KEYS[1], 'post')
  redis.call('SET', KEYS[5], ARGV[1])
end
if #ARGV > 7 + 2 * n then
  local event = {}
  for i = 8 + 2 * n, #ARGV do event[#event + 1] = ARGV[i] end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(event))
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if KEYS[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1]) end
if KEYS[6] ~= '' and redis.call('GET', KEYS[6]) == ARGV[4] then redis.call('DEL', KEYS[6]) end
return 1
"""
)

_ADOPT = """
-- KEYS: job hash, run index, job-key index (or ''), due set. ARGV: job id, due, then field/value pairs.
-- Returns {1, job id} when recorded, {0, owner} when the job or run is known already, {2, owner} when the
-- job key belongs to another job.
if redis.call('HEXISTS', KEYS[1], 'req') == 1 then return {0, ARGV[1]} end
local run_owner = redis.call('GET', KEYS[2])
if run_owner and run_owner ~= ARGV[1] then return {0, run_owner} end
if KEYS[3] ~= '' then
  local owner = redis.call('GET', KEYS[3])
  if owner and owner ~= ARGV[1] then return {2, owner} end
  redis.call('SET', KEYS[3], ARGV[1])
end
-- A fragment (fields a step under way wrote after the data went) gives way to the whole record.
redis.call('DEL', KEYS[1])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return {1, ARGV[1]}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


Adoption = Literal["adopted", "known", "key_taken"]
_ADOPTIONS: dict[int, Adoption] = {1: "adopted", 0: "known", 2: "key_taken"}


@dataclass(frozen=True)
class EncodedResult:
    """A job's result encoded as the result backend stores it, for a store script to write in its own step."""

    key: str
    value: str
    ttl_s: int


@dataclass
class JobLock:
    """A job's lock as its holder knows it: released by the last write of a step, or on leaving the step."""

    token: str
    released: bool = False


@dataclass
class JobRecord:
    """A job as Redis holds it."""

    job_id: str
    request: JobRequest
    state: JobState
    enqueued_at: float
    secrets: str | None = None
    run_id: str | None = None
    run_status: str | None = None
    checks: int = 0
    attempts: int = 0
    submitted_at: float | None = None
    posting_since: float | None = None
    deadline_at: float | None = None
    cancel_requested: bool = False
    cancel_sent: bool = False
    file_id: str | None = None
    finished_at: float | None = None
    error: str | None = None
    held_tokens: dict[str, float] = field(default_factory=dict)
    extend_batch_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Not stored: what the step holding the job knows (its lock, and the job's aliases when read with it), and
    # `fresh`: recorded by this step as SUBMITTING, posting since its creation, with nothing posted yet.
    lock: JobLock | None = field(default=None, repr=False, compare=False)
    aliases: list[str] | None = field(default=None, repr=False, compare=False)
    fresh: bool = field(default=False, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def progress(self) -> dict[str, Any]:
        """What a producer sees in `AsyncResult.info` while the job is in flight."""
        return {
            "job_id": self.job_id,
            "job_key": self.request.job_key,
            "workflow_id": self.request.workflow.id,
            "run_id": self.run_id,
            "run_status": self.run_status,
            "checks": self.checks,
            "attempts": self.attempts,
            "enqueued_at": self.enqueued_at,
            "submitted_at": self.submitted_at,
        }


def open_store(settings: Settings) -> RedisJobStore:
    """The job store on the settings' Redis (a lazy connection pool: call it after fork)."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True, health_check_interval=30)
    return RedisJobStore(client, keys=Keys(settings.key_prefix), result_ttl_s=settings.result_ttl_s)


class RedisJobStore:
    """Job records, the due schedule, locks and events, in one Redis."""

    def __init__(self, client: redis.Redis, *, keys: Keys, result_ttl_s: int, events_maxlen: int = 100_000) -> None:
        self._redis = client
        self._keys = keys
        self._ttl = result_ttl_s
        self._events_maxlen = events_maxlen
        self._create = client.register_script(_CREATE)
        self._claim = client.register_script(_CLAIM_DUE)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._note_run = client.register_script(_NOTE_RUN)
        self._adopt = client.register_script(_ADOPT)

    @property
    def keys(self) -> Keys:
        return self._keys

    def create(self, job_id: str, request: JobRequest, *, now: float, lease_s: float, secrets: str | None) -> str:
        """Record a new job, scheduled at `now + lease_s` as a safety net; the id that owns its job key."""
        return self._record(job_id, request, now=now, lease_s=lease_s, secrets=secrets)[0]

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
    ) -> tuple[str, bool]:
        fields = _encode_new(request, now=now, secrets=secrets)
        if lock:
            fields.update({_F_STATE: JobState.SUBMITTING.value, _F_POSTING: repr(now)})
        key_index = self._keys.job_key(request.job_key) if request.job_key else ""
        lock_key, in_flight = (self._keys.lock(job_id), self._keys.in_flight) if lock else ("", "")
        token, lock_ms = lock or ("", 0)
        keys = [self._keys.job(job_id), key_index, self._keys.due, lock_key, in_flight]
        args = [job_id, request.job_key or "", self._ttl, now + lease_s, token, lock_ms, now, *_flatten(fields)]
        owner, created = self._create(keys=keys, args=args)
        return str(owner), bool(created)

    def load(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when it is unknown or expired."""
        raw = self._redis.hgetall(self._keys.job(job_id))
        return _decode(job_id, raw) if raw else None

    def update(self, job_id: str, **values: Any) -> None:
        """Set record fields by their `JobRecord` names."""
        mapping: dict[Any, Any] = {
            _FIELDS[name]: _encode_value(value) for name, value in values.items() if value is not None
        }
        cleared = [_FIELDS[name] for name, value in values.items() if value is None]
        pipe = self._redis.pipeline(transaction=True)
        if mapping:
            pipe.hset(self._keys.job(job_id), mapping=mapping)
        if cleared:
            pipe.hdel(self._keys.job(job_id), *cleared)
        pipe.execute()

    def record_run(self, job_id: str, run_id: str, *, submitted_at: float) -> None:
        """Note the job's Extend run, and index the run id back to the job."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            self._keys.job(job_id),
            mapping={_F_RUN: run_id, _F_SUBMITTED: repr(submitted_at), _F_STATE: JobState.RUNNING.value},
        )
        pipe.hdel(self._keys.job(job_id), _F_POSTING)
        pipe.set(self._keys.run(run_id), job_id)
        pipe.execute()

    def note_run(
        self,
        record: JobRecord,
        *,
        due_at: float,
        stretched: bool = False,
        event: dict[str, str] | None = None,
        created: bool = False,
        result: EncodedResult | None = None,
    ) -> None:
        """A look at the job's run, not ended yet, in one atomic step: its status and checks noted, the retry
        count reset, `event` appended, the next check scheduled at `due_at`, and the job's lock (`record.lock`)
        released. `created`: the run was just created, so it is recorded and indexed as `record_run` does.
        `result`: the job's progress result, written first.
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
            self._keys.sweep("stretched") if stretched else "",
            self._keys.run(record.run_id) if created and record.run_id else "",
            self._keys.lock(record.job_id) if lock else "",
            result.key if result else "",
        ]
        head: list[Any] = [record.job_id, due_at, self._events_maxlen, lock.token if lock else "", len(fields)]
        head += [result.value, result.ttl_s] if result else ["", 0]
        self._note_run(keys=keys, args=[*head, *_flatten(fields), *_flatten(event or {})])
        if lock is not None:
            lock.released = True

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
        keys = [self._keys.job(job_id), self._keys.run(run_id), key_index, self._keys.due]
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

    def schedule(self, job_id: str, due_at: float, *, stretched: bool = False, posted: bool = True) -> None:
        """Make the job's next step due at `due_at` (unix seconds); `stretched`: only because sweeps run;
        `posted=False`: clear the job's posting mark too (no create went out).
        """
        if not stretched and posted:
            self._redis.zadd(self._keys.due, {job_id: due_at})
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._keys.due, {job_id: due_at})
        if stretched:
            pipe.zadd(self._keys.sweep("stretched"), {job_id: due_at})
        if not posted:
            pipe.hdel(self._keys.job(job_id), _F_POSTING)
        pipe.execute()

    def make_due(self, job_ids: list[str], due_at: float) -> None:
        """Bring these unfinished jobs' next steps forward to `due_at`, in one command; jobs no longer scheduled
        (finished meanwhile) are left alone.
        """
        if job_ids:
            self._redis.zadd(self._keys.due, dict.fromkeys(job_ids, due_at), xx=True)

    def unstretch(self, job_ids: list[str]) -> None:
        """Forget that these jobs' checks were stretched for sweeps."""
        if job_ids:
            self._redis.zrem(self._keys.sweep("stretched"), *job_ids)

    def stretched(self, limit: int = 10_000) -> list[str]:
        """Jobs whose next check was pushed out because sweeps were running."""
        return [str(job_id) for job_id in self._redis.zrange(self._keys.sweep("stretched"), 0, limit - 1)]

    def claim_due(self, *, now: float, limit: int, lease_s: float) -> list[tuple[str, float]]:
        """Atomically claim up to `limit` due jobs; each is re-due at its lease end unless rescheduled first."""
        lease_end = now + lease_s
        ids = self._claim(keys=[self._keys.due], args=[now, limit, lease_end])
        return [(str(job_id), lease_end) for job_id in ids]

    def due_at(self, job_id: str) -> float | None:
        """When the job is next due, or None when it is not scheduled."""
        score = self._redis.zscore(self._keys.due, job_id)
        return None if score is None else float(score)

    def in_flight(self) -> int:
        """How many jobs are scheduled (every unfinished job is)."""
        return int(self._redis.zcard(self._keys.due))

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
    def locked(self, job_id: str, *, ttl_s: float) -> Iterator[tuple[JobRecord | None, float | None] | None]:
        """Lock the job and read it (record, with its aliases, and next due time) in one round trip; None when
        another task holds the lock. The lock is released on leaving, unless a write released it already.
        """
        lock = JobLock(uuid.uuid4().hex)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._keys.lock(job_id), lock.token, nx=True, px=int(ttl_s * 1000))
        pipe.hgetall(self._keys.job(job_id))
        pipe.zscore(self._keys.due, job_id)
        pipe.smembers(self._keys.aliases(job_id))
        held, raw, due, aliases = pipe.execute()
        if not held:
            yield None
            return
        record = _decode(job_id, raw) if raw else None
        if record is not None:
            record.lock, record.aliases = lock, sorted(str(alias) for alias in aliases)
        try:
            yield record, (None if due is None else float(due))
        finally:
            if not lock.released:
                self.unlock(job_id, lock.token)

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
        ]
        head = [record.job_id, self._ttl, now, state.value, error, self._events_maxlen]
        token = record.lock.token if record.lock else ""
        written = [*((result.value, result.ttl_s) if result else ("", 0)), *(usage or ("", ""))]
        args = [*head, record.run_status or "", callback or "", record.checks, token, *written, *_flatten(event)]
        aliases = self._finish(keys=keys, args=args)
        if record.lock is not None:
            record.lock.released = True
        return None if aliases is None else sorted(str(alias) for alias in aliases)

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

    def first_sighting(self, event_id: str, *, ttl_s: int) -> bool:
        """True the first time an event id is seen within `ttl_s`; False for a re-delivery."""
        return bool(self._redis.set(self._keys.event_seen(event_id), "1", nx=True, ex=ttl_s))

    def forget_sighting(self, event_id: str) -> None:
        """Undo `first_sighting` (the event could not be handed on, so its re-delivery must be taken)."""
        self._redis.delete(self._keys.event_seen(event_id))

    def emit(self, event: dict[str, str]) -> None:
        """Append a non-terminal event to the events stream."""
        self._redis.xadd(self._keys.events, event, maxlen=self._events_maxlen, approximate=True)  # type: ignore[arg-type]


_FIELDS = {
    "state": _F_STATE,
    "run_id": _F_RUN,
    "run_status": _F_RUN_STATUS,
    "checks": _F_CHECKS,
    "attempts": _F_ATTEMPTS,
    "submitted_at": _F_SUBMITTED,
    "posting_since": _F_POSTING,
    "deadline_at": _F_DEADLINE,
    "cancel_requested": _F_CANCEL,
    "cancel_sent": _F_CANCEL_SENT,
    "file_id": _F_FILE,
    "secrets": _F_SECRETS,
    "error": _F_ERROR,
    "held_tokens": _F_TOKEN,
    "extend_batch_id": _F_BATCH,
}


def _encode_new(request: JobRequest, *, now: float, secrets: str | None) -> dict[str, str]:
    wire = request.wire()
    wire.pop("secrets", None)  # kept sealed, in their own field, and dropped when the job ends
    fields = pieces(_F_REQUEST, json.dumps(wire, separators=(",", ":")))  # ASCII: one byte per character
    fields.update({_F_STATE: JobState.QUEUED.value, _F_ENQUEUED: repr(now)})
    if request.deadline_s is not None:
        fields[_F_DEADLINE] = repr(now + request.deadline_s)
    if secrets:
        fields.update(pieces(_F_SECRETS, secrets))
    return fields


def pieces(name: str, value: str) -> dict[str, str]:
    """An ASCII value as hash fields of at most `_PIECE` characters: `name`, `name1`, `name2`, ..."""
    count = max(1, -(-len(value) // _PIECE))
    return {f"{name}{index or ''}": value[index * _PIECE : (index + 1) * _PIECE] for index in range(count)}


def joined(raw: dict[Any, Any], name: str) -> str | None:
    """A value stored by `pieces`, from the job hash's fields; None when absent."""
    first = raw.get(name)
    if first is None:
        return None
    parts, index = [first], 1
    while (part := raw.get(f"{name}{index}")) is not None:
        parts.append(part)
        index += 1
    return "".join(parts)


def _encode_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _flatten(mapping: dict[str, Any]) -> list[Any]:
    return [item for pair in mapping.items() for item in pair]


def _decode(job_id: str, raw: dict[Any, Any]) -> JobRecord:
    get = raw.get
    number = _optional_float
    return JobRecord(
        job_id=job_id,
        request=JobRequest.model_validate(json.loads(joined(raw, _F_REQUEST) or "{}")),
        state=JobState(get(_F_STATE) or JobState.QUEUED.value),
        enqueued_at=float(get(_F_ENQUEUED) or 0),
        secrets=joined(raw, _F_SECRETS),
        run_id=get(_F_RUN),
        run_status=get(_F_RUN_STATUS),
        checks=int(get(_F_CHECKS) or 0),
        attempts=int(get(_F_ATTEMPTS) or 0),
        submitted_at=number(get(_F_SUBMITTED)),
        posting_since=number(get(_F_POSTING)),
        deadline_at=number(get(_F_DEADLINE)),
        cancel_requested=get(_F_CANCEL) == "1",
        cancel_sent=get(_F_CANCEL_SENT) == "1",
        file_id=get(_F_FILE),
        finished_at=number(get(_F_FINISHED)),
        error=get(_F_ERROR) or None,
        held_tokens=json.loads(get(_F_TOKEN) or "{}"),
        extend_batch_id=get(_F_BATCH),
    )


def _optional_float(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)
