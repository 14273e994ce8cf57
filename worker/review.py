"""Review follow-up: a NEEDS_REVIEW run whose job asked for it (`needs_review: "watch"`) is looked at again,
slowly, until a reviewer approved it (PROCESSED) or rejected it (REJECTED).

The job's result stays the NEEDS_REVIEW run it was published with: a result is published once. The later
outcome is an event on the events stream (`state` REVIEWED, `status` PROCESSED or REJECTED, with the
job and run ids), and the job's review status (`review_status`: WATCHING, then the outcome) is readable
next to its record for as long as results are kept. Followed jobs wait in their own sorted set
(`Keys.review`), never in the due set of checks; the periodic `follow_due` looks at the ones due.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extendq.errors import ExtendqError, InvalidJobRequest, RateLimited, RetryableError
from extendq.worker.extend import ExtendApi, Run
from extendq.worker.ratelimit import Bucket, RateLimiter
from extendq.worker.records import JobRecord, summary
from extendq.worker.store import RedisJobStore
from extendq.worker.tenants import TenantAccounts

log = logging.getLogger("extendq.review")

NEEDS_REVIEW = "NEEDS_REVIEW"
REVIEWED = "REVIEWED"
WATCHING = "WATCHING"

_CLAIM = """
-- KEYS: review set. ARGV: now, limit, next look. Due entries move to their next look as they are claimed.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"""

_SETTLE = """
-- KEYS: review set, outcome key. ARGV: job id, outcome JSON, ttl. 1 for the one pass that ends the follow-up.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""


def watch(store: RedisJobStore, record: JobRecord, run: Run, now: float) -> bool:
    """Start following the job's run if it ended NEEDS_REVIEW and its request asked for it; whether it did."""
    if run.get("status") != NEEDS_REVIEW or record.request.needs_review != "watch":
        return False
    # Due at once: the next pass of the follower takes its first look.
    store.client.zadd(store.keys.review, {record.job_id: now}, nx=True)
    return True


def review_status(store: RedisJobStore, job_id: str) -> str | None:
    """WATCHING while followed, then PROCESSED or REJECTED (or an error kind); None for jobs not followed."""
    raw = store.client.get(store.keys.reviewed(job_id))
    if raw is not None:
        return str(json.loads(raw)["status"])
    return WATCHING if store.client.zscore(store.keys.review, job_id) is not None else None


@dataclass(kw_only=True)
class ReviewFollower:
    """Looks again at followed runs that are due, and publishes each one's outcome once it is reviewed.

    Each run is looked at through its job's account (`api` and `limiter` for the default one, `tenants` for the
    others); an account without a token, or paused by a 429, postpones only its own runs.
    """

    api: ExtendApi
    store: RedisJobStore
    limiter: RateLimiter | None = None
    tenants: TenantAccounts | None = None
    interval_s: float = 300.0
    outcome_ttl_s: int = 7 * 24 * 3600
    batch: int = 100
    clock: Callable[[], float] = time.time

    def follow_due(self) -> dict[str, int]:
        """One pass over the followed runs due now; counts by what happened (`reviewed`, `waiting`, ...)."""
        now = self.clock()
        counts: Counter[str] = Counter()
        held_back: dict[str | None, float] = {}  # account -> when its runs may be looked at again
        for job_id in self._claim(now):
            record = self.store.load(job_id)
            if record is None or record.run_id is None:
                counts[self._expired(job_id)] += 1
                continue
            tenant = record.request.tenant
            if tenant not in held_back and (wait_s := self._look_or_wait(record, now, counts)) is not None:
                held_back[tenant] = now + wait_s
            if tenant in held_back:
                # No token in the account's shared rate limit, or Extend said 429: its runs wait that long.
                self.store.client.zadd(self.store.keys.review, {job_id: held_back[tenant]}, xx=True)
                counts["throttled"] += 1
        return dict(counts)

    def _look_or_wait(self, record: JobRecord, now: float, counts: Counter[str]) -> float | None:
        """Look at the job's run (its outcome counted), or how long its account must wait for a token."""
        tenant = record.request.tenant
        try:
            api, limiter = self._account(tenant)
        except InvalidJobRequest as exc:
            # A process without the tenant's key (its configuration is behind): the run is looked at again later.
            log.warning("job %s review check skipped: %s", record.job_id, exc)
            counts["unknown_tenant"] += 1
            return None
        wait_s = _token_wait_s(limiter)
        if wait_s is not None:
            return wait_s
        try:
            counts[self._look(api, record, now)] += 1
            return None
        except RateLimited as exc:
            if limiter is not None:
                limiter.pause(exc.retry_after_s or 1.0)
            return exc.retry_after_s or 1.0

    def _account(self, tenant: str | None) -> tuple[ExtendApi, RateLimiter | None]:
        if tenant is None:
            return self.api, self.limiter
        if self.tenants is None:
            raise InvalidJobRequest(f"unknown tenant {tenant!r}: this worker has no tenants configured")
        return self.tenants.api(tenant), self.tenants.limiter(tenant)

    def _claim(self, now: float) -> list[str]:
        keys = [self.store.keys.review]
        ids = self.store.client.eval(_CLAIM, 1, *keys, now, self.batch, now + self.interval_s)
        return [str(job_id) for job_id in ids]

    def _expired(self, job_id: str) -> str:
        # Its record expired (results are kept EXTENDQ_RESULT_TTL_S): nothing left to publish to.
        self.store.client.zrem(self.store.keys.review, job_id)
        log.info("job %s no longer followed: its record expired before the review ended", job_id)
        return "expired"

    def _look(self, api: ExtendApi, record: JobRecord, now: float) -> str:
        assert record.run_id is not None
        try:
            run = api.get_run(record.run_id)
        except RateLimited:
            raise
        except RetryableError as exc:
            log.warning("job %s review check failed, trying again in %.0fs: %s", record.job_id, self.interval_s, exc)
            return "retry"
        except ExtendqError as exc:
            self._publish(record, "", getattr(exc, "kind", type(exc).__name__), now)
            return "error"
        status = str(run.get("status"))
        if status == NEEDS_REVIEW:
            return "waiting"
        self._publish(record, status, "", now)
        return "reviewed"

    def _publish(self, record: JobRecord, status: str, error: str, now: float) -> None:
        keys = self.store.keys
        outcome = json.dumps({"status": status or error, "run_id": record.run_id, "at": now})
        args = (record.job_id, outcome, self.outcome_ttl_s)
        if not self.store.client.eval(_SETTLE, 2, keys.review, keys.reviewed(record.job_id), *args):
            return  # another pass published it already
        event = {
            "job_id": record.job_id,
            "run_id": record.run_id or "",
            "workflow_id": record.request.workflow.id,
            "state": REVIEWED,
            "status": status,
            "error": error,
        }
        self.store.emit(event)
        fields = {"event": "reviewed", **{k: v for k, v in event.items() if v}}
        log.info("job %s reviewed run=%s status=%s", record.job_id, record.run_id, status or error, extra=fields)


def _token_wait_s(limiter: RateLimiter | None) -> float | None:
    """None when a request may go now (its token taken), else how long until one may."""
    if limiter is None:
        return None
    grant = limiter.reserve(Bucket.REQUESTS, max_wait_s=0.0)
    return None if grant.now else max(grant.wait_s, 0.05)


def waiting(store: RedisJobStore, *, limit: int = 500, now: float | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Followed jobs whose run still waits in NEEDS_REVIEW: how many, and up to `limit` of them (those looked at
    next), longest waiting first; waiting since the job's NEEDS_REVIEW result was published."""
    client, keys = store.client, store.keys
    now = time.time() if now is None else now
    total = int(client.zcard(keys.review))
    entries: list[Any] = list(client.zrange(keys.review, 0, limit - 1, withscores=True))
    job_ids = [str(job_id) for job_id, _ in entries]
    rows = [
        _waiting_row(job_id, float(look), fields, now)
        for job_id, (_, look), fields in zip(job_ids, entries, store.raw_records(job_ids), strict=True)
    ]
    return total, sorted(rows, key=lambda row: -row["waiting_s"])


def _waiting_row(job_id: str, next_look: float, fields: dict[Any, Any], now: float) -> dict[str, Any]:
    row = summary(job_id, fields) or {"run_id": None, "workflow_id": None, "tenant": None, "finished_at": None}
    finished = row["finished_at"]
    return {
        "job_id": job_id,
        "run_id": row["run_id"],
        "workflow_id": row["workflow_id"],
        "tenant": row["tenant"],
        "next_look": next_look,
        "waiting_s": max(now - finished, 0.0) if finished else 0.0,
    }
