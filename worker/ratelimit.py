"""One rate limit for every worker process on every machine: GCRA buckets in Redis, paused together on a 429.

Extend's plans limit requests per second (every endpoint) and runs per minute. Celery's own `rate_limit`
is per process, so a pool of N processes would overshoot N-fold; these buckets live in Redis and are
shared. A call that finds no token is not made: the job is rescheduled for when the token is due.

Runs per minute are held by default by a log of the creates themselves (`RunsWindow.LOG`): a sorted set of
create times on Redis time, where a create may go as soon as no window (plus its margin) would then hold
more than the limit, the same sliding window Extend counts in. The older pacing (`RunsWindow.GCRA`), one
create every 60.6 s / limit, never lets a create go in a burst and loses every slot a late step misses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from extendq.worker import metrics
from extendq.worker.keys import Keys

# GCRA (the generic cell rate algorithm): one key per bucket holds the theoretical arrival time (TAT).
# Time comes from the Redis server, so workers with skewed clocks share one timeline.
# A runs log (optional, last key) is a sorted set of create times (score and member, unique): a create fits at x
# when no `limit + 1` consecutive times, x among them, lie within `span` (the window plus its margin; a microsecond
# less, so that float rounding never pushes a time that fits exactly to the next candidate), and, for a new
# reservation, no other time lies within `gap` of x (a burst of creates leaves request tokens for other calls).
_ACQUIRE = """
-- KEYS: pause key, then one TAT key per GCRA bucket, then the runs log when ARGV[2] is '1', then (optional) the
-- hash of requests granted per second (the dashboard's chart; the last five minutes kept).
-- ARGV: max_reserve_s, has_log, log_span_s, log_limit, log_gap_s, release (a log time given back first, or ''),
-- keep_s (a release at most this late is kept as it was when no time near now fits), then (interval_s, burst)
-- per GCRA bucket.
-- Reserves the earliest moment every bucket (and the pause) allows, when it is at most max_reserve_s away:
-- returns {1, wait_s, slot}; the caller calls after wait_s (0: now), at `slot` on the server's clock. Further
-- away: {0, wait_s, slot}, nothing reserved. A release is taken again at once when the window allows it then.
local function fits(times, x, span, limit, gap)
  -- `times` sorted; x goes after the c times at or before it (binary search), and is checked against its neighbours
  local lo, hi = 0, #times
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if times[mid] <= x then lo = mid else hi = mid - 1 end
  end
  local c, n = lo, #times + 1
  local function at_(k)
    if k <= c then return times[k] elseif k == c + 1 then return x else return times[k - 1] end
  end
  local p, close = c + 1, gap - 0.000001
  if gap > 0 and ((p > 1 and x - at_(p - 1) < close) or (p < n and at_(p + 1) - x < close)) then
    return false
  end
  for i = math.max(1, p - limit), p do
    local j = i + limit
    if j <= n and at_(j) - at_(i) < span - 0.000001 then return false end
  end
  return true
end
local function earliest(times, at, span, limit, gap)
  if fits(times, at, span, limit, gap) then return at end
  local candidates = {}
  for _, v in ipairs(times) do
    if v + span > at then candidates[#candidates + 1] = v + span end
    if gap > 0 and v + gap > at then candidates[#candidates + 1] = v + gap end
  end
  table.sort(candidates)
  for _, x in ipairs(candidates) do
    if fits(times, x, span, limit, gap) then return x end
  end
  return math.max(at, times[#times] + span)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local gcra_keys = (#ARGV - 7) / 2
local log_key = nil
if ARGV[2] == '1' then log_key = KEYS[gcra_keys + 2] end
local count_key = KEYS[gcra_keys + 2 + (log_key and 1 or 0)]
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local tats = {}
for i = 1, gcra_keys do
  local interval, burst = tonumber(ARGV[6 + 2 * i]), tonumber(ARGV[7 + 2 * i])
  tats[i] = math.max(tonumber(redis.call('GET', KEYS[i + 1]) or '0'), now)
  at = math.max(at, tats[i] - interval * (burst - 1))
end
if log_key then
  local span, limit, gap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local released = ARGV[6] ~= '' and redis.call('ZREMRANGEBYSCORE', log_key, ARGV[6], ARGV[6]) == 1
  redis.call('ZREMRANGEBYSCORE', log_key, '-inf', '(' .. string.format('%.17g', now - span))
  local entries = redis.call('ZRANGEBYSCORE', log_key, string.format('%.17g', at - span), '+inf', 'WITHSCORES')
  local times = {}
  for i = 2, #entries, 2 do times[#times + 1] = tonumber(entries[i]) end
  if not (released and fits(times, at, span, limit, 0)) then at = earliest(times, at, span, limit, gap) end
  while redis.call('ZSCORE', log_key, string.format('%.17g', at)) do
    at = earliest(times, at + 0.000001, span, limit, gap)
  end
  if released and at > now + 0.001 and now - tonumber(ARGV[6]) <= tonumber(ARGV[7]) then
    -- The slot given back fits nowhere near now (later slots are reserved a window after it): spent as it was
    redis.call('ZADD', log_key, ARGV[6], ARGV[6])
    return {1, '0', ARGV[6]}
  end
end
if at - now > tonumber(ARGV[1]) then return {0, tostring(at - now), string.format('%.17g', at)} end
for i = 1, gcra_keys do
  local interval = tonumber(ARGV[6 + 2 * i])
  local tat = math.max(tats[i], at) + interval
  redis.call('SET', KEYS[i + 1], tostring(tat), 'PX', math.ceil((tat - now + 1) * 1000))
end
if log_key then
  local member = string.format('%.17g', at)
  redis.call('ZADD', log_key, member, member)
  local last = tonumber(redis.call('ZRANGE', log_key, -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIRE', log_key, math.ceil((last - now + tonumber(ARGV[3]) + 1) * 1000))
end
if count_key then
  redis.call('HINCRBY', count_key, math.floor(at), 1)
  if redis.call('HLEN', count_key) > 360 then
    for _, second in ipairs(redis.call('HKEYS', count_key)) do
      if tonumber(second) < now - 300 then redis.call('HDEL', count_key, second) end
    end
  end
  redis.call('EXPIRE', count_key, 600)
end
return {1, tostring(at - now), string.format('%.17g', at)}
"""

# How late a reserved request token may still be spent. `limit` requests span the window plus 150 ms (see
# `_interval_s`): half of that for a call that comes a little late to its slot (a step's dispatch), the rest for its
# way from here to Extend's gateway (a pool process or Extend's own front slowed down for a moment).
REQUEST_GRACE_S = 0.075
_REQUEST_SPAN_S = 1.15

_PAUSE = """
-- KEYS: pause key, pauses hash. ARGV: seconds. Pushes the pause end later, never earlier; counts the pause in
-- its minute (the hash keeps the last hour's minutes: `extendq info` reads them).
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
local minute = math.floor(tonumber(t[1]) / 60)
redis.call('HINCRBY', KEYS[2], minute, 1)
redis.call('EXPIRE', KEYS[2], 3660)
if redis.call('HLEN', KEYS[2]) > 61 then
  for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
    if tonumber(field) <= minute - 60 then redis.call('HDEL', KEYS[2], field) end
  end
end
return tostring(math.max(until_, current))
"""


# With no budget to share, a call only needs to know of a 429's pause: that is read at most this often.
_PAUSE_READ_EVERY_S = 0.1


class RunsWindow(StrEnum):
    """How runs per minute are held: a log of the creates (as Extend counts them), or one create per interval."""

    LOG = "log"
    GCRA = "gcra"


class Bucket(StrEnum):
    """What a call spends: every call a request; a create also runs."""

    REQUESTS = "requests"
    RUNS = "runs"


@dataclass(frozen=True)
class Limits:
    """A plan's limits; None means no limit of that kind."""

    requests_per_second: float | None = None
    runs_per_minute: float | None = None
    burst: int = 1
    runs_window: RunsWindow = RunsWindow.LOG

    @property
    def active(self) -> bool:
        return self.requests_per_second is not None or self.runs_per_minute is not None


PLANS = {
    "payg": Limits(requests_per_second=10, runs_per_minute=80),
    "scale": Limits(requests_per_second=25, runs_per_minute=120),
    "enterprise": Limits(requests_per_second=75, runs_per_minute=300),
}


@dataclass(frozen=True)
class Grant:
    """The answer to a reservation."""

    reserved: bool
    wait_s: float
    # When the call may go, on the Redis server's clock: the one clock every host of the pool shares.
    slot: float | None = None

    @property
    def now(self) -> bool:
        """The call may go at once."""
        return self.reserved and self.wait_s <= 0.001


class RateLimiter:
    """Shared GCRA buckets; `acquire` answers how long to wait (0 when the call may go now)."""

    def __init__(self, client: redis.Redis, *, keys: Keys, limits: Limits, scope: str = "default") -> None:
        self._limits = limits
        self._client = client
        # The account of its calls, for metrics: scope `tenant:<name>`, or the default one.
        self._tenant = scope.removeprefix("tenant:") if scope.startswith("tenant:") else None
        self._pause_key = keys.limit(scope, "pause")
        self._pauses_key = keys.limit(scope, "pauses")
        self._tat_keys = {bucket: keys.limit(scope, bucket.value) for bucket in Bucket}
        self._log_key = keys.limit(scope, "runs_log")
        self._granted_key = keys.limit(scope, "granted")
        self._acquire = client.register_script(_ACQUIRE)
        self._pause = client.register_script(_PAUSE)
        self._pause_read: tuple[float, float] = (0.0, 0.0)  # (read until, pause ends), on the monotonic clock

    @property
    def limits(self) -> Limits:
        return self._limits

    def reserve(
        self, *buckets: Bucket, max_wait_s: float = 60.0, release: float | None = None, keep_late_s: float = 0.0
    ) -> Grant:
        """Reserve one token from each bucket (all or none) at the earliest moment they allow.

        A grant with `wait_s == 0` means call now; a reserved grant with a wait means call at that moment
        (the token is held, so jobs waiting for tokens line up instead of stampeding); an unreserved grant
        means nothing is held within `max_wait_s` (a long pause): come back after `wait_s`.

        `release`: a runs-log slot this caller reserved and no longer spends at its moment (its step came late):
        given back first, in the same script, so the create takes it again now if the window still allows; if no
        moment near now fits and the slot is at most `keep_late_s` old, the slot itself is granted (spent late).
        """
        logged = Bucket.RUNS in buckets and self.logs_runs
        chosen = [
            (bucket, interval)
            for bucket in buckets
            if (interval := self._interval_s(bucket)) is not None and not (logged and bucket is Bucket.RUNS)
        ]
        if not chosen and not logged:
            return self._paused(max_wait_s)
        keys = [self._pause_key, *(self._tat_keys[bucket] for bucket, _ in chosen)]
        args: list[float | int | str] = [max_wait_s, 0, 0, 0, 0, "", 0]
        if logged:
            keys.append(self._log_key)
            given_back = repr(release) if release is not None else ""
            args[1:7] = [1, self._log_span_s(), self._log_limit(), self._log_gap_s(), given_back, keep_late_s]
        for _, interval in chosen:
            args += [interval, self._limits.burst]
        if Bucket.REQUESTS in buckets:
            keys.append(self._granted_key)
        reserved, wait, slot = self._acquire(keys=keys, args=args)
        grant = Grant(reserved=int(reserved) == 1, wait_s=max(float(wait), 0.0), slot=float(slot))
        if grant.reserved:
            metrics.rate_limit_wait("+".join(bucket.value for bucket in buckets), grant.wait_s, tenant=self._tenant)
        return grant

    @property
    def logs_runs(self) -> bool:
        """Whether runs per minute are held by the log of creates (else by one create per interval)."""
        return self._limits.runs_per_minute is not None and self._limits.runs_window is RunsWindow.LOG

    def wait_turn(
        self,
        sleep: Callable[[float], object],
        *,
        max_wait_s: float = 60.0,
        on_wait: Callable[[float], object] | None = None,
    ) -> float | None:
        """Reserve a request token and sleep until its slot. None: the call may go now. Else it must not go: the
        seconds after which to ask again (no token within `max_wait_s`, a long pause), or 0 when `sleep` returned
        true (stop).

        A sleep that ends more than `REQUEST_GRACE_S` after the slot (a busy host) takes another token: spent that
        late, the call would bunch with those of the slots after it and could tip Extend's window over.
        """
        while True:
            grant = self.reserve(Bucket.REQUESTS, max_wait_s=max_wait_s)
            if not grant.reserved:
                return grant.wait_s
            if grant.now:
                return None
            if on_wait is not None:
                on_wait(grant.wait_s)
            if sleep(grant.wait_s):
                return 0.0
            if grant.slot is None or self.server_time() <= grant.slot + REQUEST_GRACE_S:
                return None

    def server_time(self) -> float:
        """Now, on the Redis server's clock (the one reserved slots are judged by, whichever host asks)."""
        seconds, micros = self._client.time()
        return float(seconds) + float(micros) / 1_000_000

    def limited(self, bucket: Bucket) -> bool:
        """Whether a call spends from `bucket`: the requests bucket always (it carries the pauses), the others when
        the plan limits them."""
        return bucket is Bucket.REQUESTS or self._interval_s(bucket) is not None

    def pause(self, seconds: float) -> None:
        """Stop every process's calls for `seconds` (Extend answered 429 with this Retry-After)."""
        self._pause(keys=[self._pause_key, self._pauses_key], args=[max(seconds, 0.001)])
        self._pause_read = (0.0, 0.0)
        metrics.rate_limit_pause(seconds, tenant=self._tenant)

    def usage(self) -> dict[str, Any]:
        """The shared budget as it stands (read only): per limited bucket its rate and the tokens already reserved
        beyond now; how long the current 429 pause lasts; the 429 pauses of the last hour."""
        pipe = self._client.pipeline(transaction=False)
        pipe.time()
        pipe.get(self._pause_key)
        pipe.hgetall(self._pauses_key)
        for bucket in Bucket:
            pipe.get(self._tat_keys[bucket])
        (seconds, micros), pause_end, pauses, *tats = pipe.execute()
        now = float(seconds) + float(micros) / 1_000_000
        buckets: dict[str, Any] = {}
        for bucket, tat in zip(Bucket, tats, strict=True):
            if bucket is Bucket.RUNS and self.logs_runs:
                ahead = int(self._client.zcount(self._log_key, f"({now!r}", "+inf"))
                buckets[bucket.value] = {"limit": self._limit_of(bucket), "reserved": float(ahead)}
            elif (interval := self._interval_s(bucket)) is not None:
                ahead_s = max(float(tat or 0) - now, 0.0)
                buckets[bucket.value] = {"limit": self._limit_of(bucket), "reserved": round(ahead_s / interval, 2)}
        minute = int(now // 60)
        recent = sum(int(count) for field, count in pauses.items() if int(field) > minute - 60)
        return {
            "buckets": buckets,
            "paused_for_s": round(max(float(pause_end or 0) - now, 0.0), 3),
            "pauses_last_hour": recent,
        }

    def granted_per_second(self, seconds: int = 300) -> dict[int, int]:
        """Request tokens granted in each of the last `seconds` (unix second -> count; at most five minutes)."""
        since = self.server_time() - seconds
        counts = self._client.hgetall(self._granted_key)
        return {int(at): int(n) for at, n in counts.items() if int(at) >= since}

    def _limit_of(self, bucket: Bucket) -> str:
        if bucket is Bucket.REQUESTS:
            return f"{self._limits.requests_per_second:g}/s"
        return f"{self._limits.runs_per_minute:g}/min"

    def _paused(self, max_wait_s: float) -> Grant:
        # No bucket to take from: only a pause can hold the call. Another process's pause is seen within
        # `_PAUSE_READ_EVERY_S`; a pause of this process's own at once.
        now = time.monotonic()
        read_until, ends = self._pause_read
        if now >= read_until:
            _, wait, _ = self._acquire(keys=[self._pause_key], args=[max_wait_s, 0, 0, 0, 0, "", 0])
            ends = now + max(float(wait), 0.0)
            self._pause_read = (now + _PAUSE_READ_EVERY_S, ends)
        wait_s = max(ends - now, 0.0)
        return Grant(reserved=wait_s <= max_wait_s, wait_s=wait_s)

    def _log_span_s(self) -> float:
        # The same headroom as the interval's: any `limit + 1` creates of the log span a minute plus 600 ms, so a
        # create that reaches Extend up to that much after its time in the log never tips Extend's window over.
        return 60.6

    def _log_gap_s(self) -> float:
        # New creates are spread two request intervals apart at least: a minute's creates that may all go at once
        # would take every request token for seconds, and the checks (and those creates' own request tokens,
        # lost when a step is a little late) would queue behind them. Half the request budget at most, in a burst.
        rps = self._limits.requests_per_second
        return 2 * _REQUEST_SPAN_S / rps if rps else 0.0

    def _log_limit(self) -> int:
        return max(int(self._limits.runs_per_minute or 1), 1)

    def _interval_s(self, bucket: Bucket) -> float | None:
        # Headroom keeps the jitter between a token here and the request's arrival at Extend (a call a little
        # late for its slot, a process slowed down for a moment) from ever tipping a window over: `limit` calls
        # always span the window plus 150 ms (one second), or plus 600 ms (one minute).
        if bucket is Bucket.REQUESTS and self._limits.requests_per_second:
            return _REQUEST_SPAN_S / self._limits.requests_per_second
        if bucket is Bucket.RUNS and self._limits.runs_per_minute:
            return 60.6 / self._limits.runs_per_minute
        return None
