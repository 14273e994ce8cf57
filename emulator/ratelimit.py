"""Plan rate limits as sliding windows, with an honest `Retry-After`.

A request admitted at time t is counted in the window (t - period, t]; a new one is admitted only
while fewer than `limit` admissions are in that window. So any period-long span of admissions holds
at most `limit`, and the `Retry-After` (seconds until the oldest admission leaves the window,
rounded up) is long enough for the retry to be admitted if nothing else arrives meanwhile.
"""

from __future__ import annotations

import math
from collections import deque

from extendq.emulator.profiles import RateLimit


class SlidingWindow:
    """At most `limit` admissions per `period_s`."""

    def __init__(self, limit: int, period_s: float) -> None:
        self.limit = limit
        self.period_s = period_s
        self._admitted: deque[float] = deque()

    def admit(self, at: float, count: int = 1) -> int | None:
        """Record `count` admissions at `at` and return None, or return the seconds to wait (admitting none)."""
        horizon = at - self.period_s
        admitted = self._admitted
        while admitted and admitted[0] <= horizon:
            admitted.popleft()
        if len(admitted) + count <= self.limit:
            admitted.extend([at] * count)
            return None
        if count > self.limit:
            return math.ceil(self.period_s)
        oldest_needed = admitted[len(admitted) + count - self.limit - 1]
        return max(1, math.ceil(oldest_needed + self.period_s - at))


class RateLimiter:
    """The requests-per-second and runs-per-minute windows of a profile (both optional)."""

    def __init__(self, limits: RateLimit | None) -> None:
        rps = limits.requests_per_second if limits else None
        rpm = limits.runs_per_minute if limits else None
        self.requests = SlidingWindow(rps, 1.0) if rps else None
        self.runs = SlidingWindow(rpm, 60.0) if rpm else None

    def admit_request(self, at: float) -> int | None:
        """None when the request may proceed, else its Retry-After in seconds."""
        return None if self.requests is None else self.requests.admit(at)

    def admit_runs(self, at: float, count: int) -> int | None:
        """None when `count` new runs may be created, else the Retry-After in seconds."""
        return None if self.runs is None else self.runs.admit(at, count)
