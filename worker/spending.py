"""Spending a job's shared rate-limit tokens: one per bucket for each API call, reserved until the call goes out."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from extendq.errors import Throttled
from extendq.worker.ratelimit import REQUEST_GRACE_S, Bucket, RateLimiter
from extendq.worker.records import JobRecord
from extendq.worker.store import RedisJobStore

# How late a reserved token may still be spent: within the margin the limiter keeps per window.
_LATE_GRACE_S = {Bucket.REQUESTS: REQUEST_GRACE_S, Bucket.RUNS: 0.5}
# A slot of the runs log is spent this late at most, at its own time in the log: the next minute's creates line up
# a window after it, not after the moment the step came (which would shift every later minute on by the delay).
# Later, it is given back and taken again at the moment of the create, if the window allows. The log's 600 ms of
# headroom covers this, and a create's way from its token to Extend on top of it.
_LOG_GRACE_S = 0.3


def spend(
    limiter: RateLimiter | None,
    store: RedisJobStore,
    record: JobRecord,
    now: float,
    buckets: Sequence[Bucket],
    *,
    clock: Callable[[], float],
) -> None:
    """Take a token from each bucket for one API call, or raise `Throttled` with the wait for the next one.

    Buckets are reserved one at a time, slowest first, and a reservation is kept in the job's record
    until the call goes out: a create waiting a few seconds for a runs-per-minute token does not hold a
    request token (which would stall every check meanwhile), it takes one when its run token is due.
    """
    if limiter is None:
        return
    if not limiter.limits.active:
        buckets = buckets[:1]  # no budgets: one look at a 429's pause is enough
    held = dict(record.held_tokens)
    # Reserved slots are on the Redis server's clock, and judged by it: the next step may run on another host.
    server_now = limiter.server_time() if held else 0.0
    # A bucket without a limit holds no token: its reservation would only repeat the requests bucket's pause,
    # and a create held up by it would find its request token gone stale meanwhile.
    limited = [bucket for bucket in buckets if limiter.limited(bucket)]
    for bucket in sorted(limited, key=lambda b: b is Bucket.REQUESTS):
        logged = bucket is Bucket.RUNS and limiter.logs_runs
        grace = _LOG_GRACE_S if logged else _LATE_GRACE_S[bucket]
        late = held.get(bucket.value) if logged else None
        if bucket.value in held and _spent(held, bucket, server_now, clock, grace):
            continue
        # A runs-log slot held too late is given back as the next one is reserved: the window may still allow
        # the create now (a step delayed by a busy worker or a request token loses no run of the minute).
        grant = limiter.reserve(bucket, release=late, keep_late_s=grace)
        held[bucket.value] = grant.slot if grant.slot is not None else clock() + grant.wait_s
        if grant.now:
            continue
        if not grant.reserved:
            del held[bucket.value]
        hold(store, record, held)
        # The wait counts from the reservation, not from the step's start a moment earlier: counted from `now`,
        # the call would go out before its slot. The due time is on this host's clock, as the schedule is.
        due = clock() + grant.wait_s
        raise Throttled(
            f"waiting {grant.wait_s:.2f}s for the shared rate limit", due - now, reserved=grant.reserved, due_at=due
        )
    if record.held_tokens:
        hold(store, record, {})


def _spent(
    held: dict[str, float], bucket: Bucket, server_now: float, clock: Callable[[], float], grace_s: float
) -> bool:
    """`still_held` on the server's clock; a `Throttled` it raises is due on this host's clock."""
    try:
        return still_held(held, bucket, server_now, grace_s=grace_s)
    except Throttled as exc:
        wait = exc.retry_after_s or 0.0
        raise Throttled(str(exc), wait, due_at=clock() + wait) from None


def still_held(held: dict[str, float], bucket: Bucket, now: float, *, grace_s: float | None = None) -> bool:
    """Whether the token held for `bucket` is spent now; `Throttled` when it is not due yet, False (and dropped)
    when it is more than `grace_s` (the bucket's own by default) too late for its slot. `now` is on the clock the
    slot was taken on."""
    # Never early: a token spent before its slot bunches with the calls of the slot before it.
    if now < held[bucket.value]:
        wait = held[bucket.value] - now
        raise Throttled("a reserved token is not due yet", wait, due_at=now + wait)
    if now <= held[bucket.value] + (_LATE_GRACE_S[bucket] if grace_s is None else grace_s):
        return True
    # Far too late for its slot (beyond the limiter's margin): spent now, it would bunch with the
    # calls of the slots after it. A little late is normal: dispatch and a free slot take time.
    del held[bucket.value]
    return False


def hold(store: RedisJobStore, record: JobRecord, held: dict[str, float]) -> None:
    """Keep the job's reserved tokens (bucket: due time) in its record, or drop them (empty `held`)."""
    record.held_tokens = held
    store.update(record.job_id, held_tokens=json.dumps(held) if held else None)


def wait_for_token(
    store: RedisJobStore,
    record: JobRecord,
    exc: Throttled,
    now: float,
    *,
    rand: Callable[[], float],
    clock: Callable[[], float],
) -> None:
    """Schedule the job's next step for when its token is due."""
    # A reserved token is due at an exact moment; an unreserved wait (a long pause) gets spread out.
    wait = exc.retry_after_s or 0.0
    if not exc.reserved:
        wait += rand() * min(wait, 5.0)
    # A reserved token is due at its slot; else the wait counts from now (after any calls of this step).
    at = exc.due_at if exc.reserved and exc.due_at is not None else max(now, clock()) + wait
    # A fresh record says it is posting: nothing went out, so the next try must not look for a landed run.
    store.schedule(record.job_id, at, posted=not record.fresh)
